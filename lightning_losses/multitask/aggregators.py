r"""Gradient aggregators: combine per-task gradients (a Jacobian) into one update direction.

Every aggregator here is a *Gramian weighting*: it reads only the Gramian $G = J J^\top$
(`[m, m]`) of the Jacobian $J$ (`[m, n]`, one row per objective) and returns weights
$w \in \mathbb{R}^m$; the update is $d = J^\top w$. So the cost beyond the per-task gradients is
one `[m, m]` matrix product, and `aggregate(jacobian, method)` is `jacobian.T @ weights(gram)`.
The small problems (QPs over `m` variables) run in float64 on the CPU-side `[m, m]` matrix.

| method | weights from $G$ | paper |
|---|---|---|
| `"mean"` | $1/m$ | - |
| `"upgrad"` | $\sum_i v_i$, $v_i = \arg\min_{v \ge u_i e_i} v^\top G v$ | arXiv:2406.16232 |
| `"mgda"` | $\arg\min_{w \in \Delta} w^\top G w$ (Frank-Wolfe) | arXiv:1810.04650 |
| `"pcgrad"` | sequential projections on the conflicting rows | arXiv:2001.06782 |
| `"cagrad"` | $1/m + c\lVert g_0\rVert\,\omega / \lVert J^\top \omega\rVert$ | arXiv:2110.14048 |
| `"config"` | $\hat J^{+} 1$, rescaled by the projection length | arXiv:2408.11104 |
| `"nash_mtl"` | $\alpha > 0$ with $G\alpha = 1/\alpha$, norm-capped | arXiv:2202.01017 |

Parity (tests, float64): `upgrad`, `mgda`, `pcgrad`, `mean`, `config` equal
`torchjd.aggregation.{UPGrad, MGDA, PCGrad, Mean, ConFIG}` (torchjd 0.18), and `config` equals
`conflictfree.grad_operator.ConFIG_update`; `cagrad` equals a float64 transcription of the
authors' reference (`Cranial-XIX/CAGrad`, scipy SLSQP on the same objective); `nash_mtl` is
checked on its defining equation (torchjd's `NashMTL` needs cvxpy, not a dependency here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_losses.validation import check_int, check_number, check_tensor

__all__ = [
    "AGGREGATORS",
    "aggregate",
    "aggregator_weights",
    "cagrad_weights",
    "config_weights",
    "dual_cone_weights",
    "gramian",
    "mean_weights",
    "mgda_weights",
    "nash_mtl_weights",
    "pcgrad_weights",
    "per_sample_jacobian",
    "upgrad_weights",
]


def _check_gramian(gram: Any) -> Tensor:
    gram = check_tensor("gramian", gram, floating=True)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] == 0:
        raise ValueError(
            f"gramian must be a non-empty square [m, m] matrix, got {tuple(gram.shape)}"
        )
    if not bool(torch.isfinite(gram).all()):
        raise ValueError("gramian must be finite (a per-task gradient holds NaN or inf)")
    return gram


def _check_jacobian(jacobian: Any) -> Tensor:
    jacobian = check_tensor("jacobian", jacobian, floating=True)
    if jacobian.ndim != 2 or jacobian.shape[0] == 0:
        raise ValueError(
            f"jacobian must be a [m, n] matrix with one row per objective, got "
            f"{tuple(jacobian.shape)}"
        )
    return jacobian


def _check_pref(pref_vector: Tensor | None, m: int, like: Tensor) -> Tensor:
    if pref_vector is None:
        return torch.full((m,), 1.0 / m, dtype=like.dtype, device=like.device)
    pref = check_tensor("pref_vector", pref_vector, floating=True)
    if pref.shape != (m,):
        raise ValueError(f"pref_vector must have shape ({m},), got {tuple(pref.shape)}")
    if bool((pref < 0).any()) or not bool(torch.isfinite(pref).all()):
        raise ValueError("pref_vector must be finite and non-negative")
    return pref.to(like)


def gramian(jacobian: Tensor) -> Tensor:
    r"""The Gramian $G = J J^\top$ of a Jacobian `[m, n]`, as `[m, m]`.

    Args:
        jacobian: `[m, n]` per-objective gradients (rows).

    Returns:
        `[m, m]` symmetric positive semi-definite matrix, in `jacobian`'s dtype.

    Example:
        >>> import torch
        >>> gramian(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        tensor([[1., 1.],
                [1., 2.]])
    """
    jacobian = _check_jacobian(jacobian)
    return jacobian @ jacobian.T


def _normalize_regularize(gram: Tensor, norm_eps: float, reg_eps: float) -> Tensor:
    # torchjd's conditioning: divide by trace(G) = ||J||_F^2 (0 if tiny), add reg_eps * I.
    trace = gram.diagonal().sum()
    gram = torch.zeros_like(gram) if float(trace) < norm_eps else gram / trace
    return gram + reg_eps * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)


def dual_cone_weights(u: Tensor, gram: Tensor, *, tol: float = 1e-12) -> Tensor:
    r"""Exact solution of $\min_v v^\top G v$ subject to $v \ge u$ (elementwise), for small `m`.

    By Proposition 1 of *Jacobian Descent for Multi-Objective Optimization* (Quinton & Rey,
    arXiv:2406.16232), $J^\top v$ is the projection of $J^\top u$ onto the dual cone
    $\{x : Jx \ge 0\}$ of the rows of $J$. With $v = u + x$ it is the non-negative QP
    $\min_{x \ge 0} x^\top G x + 2 (G u)^\top x$, solved here by a primal active-set method
    (Lawson-Hanson style, finite for positive-definite $G$) in float64.

    Args:
        u: `[m]` lower bounds.
        gram: `[m, m]` symmetric positive-definite matrix (regularise a semi-definite one).
        tol: tolerance of the optimality (KKT) check, relative to the largest $|G_{ij}|$.

    Returns:
        `[m]` float64 minimiser $v$.

    Raises:
        ValueError: shapes that do not match.

    Example:
        >>> import torch
        >>> g = torch.tensor([[1.0, -1.0], [-1.0, 2.0]], dtype=torch.float64)
        >>> dual_cone_weights(torch.tensor([1.0, 0.0], dtype=torch.float64), g)
        tensor([1.0000, 0.5000], dtype=torch.float64)
    """
    gram = _check_gramian(gram).detach().to("cpu", torch.float64)
    u = check_tensor("u", u, floating=True).detach().to("cpu", torch.float64)
    m = gram.shape[0]
    if u.shape != (m,):
        raise ValueError(f"u must have shape ({m},) to match gramian, got {tuple(u.shape)}")
    return torch.from_numpy(_dual_cone_np(u.numpy(), gram.numpy(), tol))


def _dual_cone_np(u: np.ndarray, gram: np.ndarray, tol: float) -> np.ndarray:
    # numpy: the [m, m] problems are tiny, where torch's per-op overhead would dominate.
    m = gram.shape[0]
    c = gram @ u
    x = np.zeros(m)
    free = np.zeros(m, dtype=bool)
    scale = max(float(np.abs(gram).max()), 1e-300)
    for _ in range(10 * m + 10):
        grad = gram @ x + c  # half the gradient of the QP objective
        candidates = (~free) & (grad < -tol * scale)
        if not candidates.any():
            break
        free[int(np.argmin(np.where(candidates, grad, np.inf)))] = True
        for _ in range(m + 1):
            idx = np.flatnonzero(free)
            z = np.zeros(m)
            z[idx] = np.linalg.solve(gram[np.ix_(idx, idx)], -c[idx])
            if (z[idx] > 0).all():
                x = z
                break
            # Step towards z until the first free variable hits its bound, then release it.
            bad = idx[z[idx] <= 0]
            ratios = x[bad] / (x[bad] - z[bad])
            alpha = float(np.clip(ratios.min(), 0.0, 1.0))
            x = x + alpha * (z - x)
            x[bad[ratios <= alpha + 1e-15]] = 0.0
            free &= x > 0
            if not free.any():
                break
    return u + x


def mean_weights(gram: Tensor) -> Tensor:
    r"""Weights $1/m$: the update is the mean gradient $\frac1m \sum_i g_i$.

    Args:
        gram: `[m, m]` Gramian (only its size is used).

    Returns:
        `[m]` weights in `gram`'s dtype.

    Example:
        >>> import torch
        >>> mean_weights(torch.eye(4))
        tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    gram = _check_gramian(gram)
    m = gram.shape[0]
    return torch.full((m,), 1.0 / m, dtype=gram.dtype, device=gram.device)


def upgrad_weights(
    gram: Tensor,
    pref_vector: Tensor | None = None,
    *,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
) -> Tensor:
    r"""UPGrad: project each gradient onto the dual cone of all of them, then average.

    *Jacobian Descent for Multi-Objective Optimization* (Quinton & Rey, arXiv:2406.16232),
    Algorithm / Eq. 4: with preference weights $u$ (default $1/m$),

    $$
    \mathcal{A}_{\mathrm{UPGrad}}(J) = J^\top \sum_{i=1}^m v_i,\qquad
    v_i = \arg\min_{v \ge u_i e_i} v^\top G v,
    $$

    where $J^\top v_i = \pi_J(u_i g_i)$ is the projection of $u_i g_i$ onto the dual cone
    $\{x : Jx \ge 0\}$ (Proposition 1). The result is non-conflicting ($J d \ge 0$), equals the
    mean when no two gradients conflict, and is linear under scaling. As in torchjd,
    $G$ is first divided by its trace (set to 0 when the trace is below `norm_eps`) and
    regularised by `reg_eps`·I; the QPs are solved exactly by `dual_cone_weights` (float64, no
    quadprog). Verified: equals `torchjd.aggregation.UPGrad()` (quadprog) to 1e-7 in float64.

    Args:
        gram: `[m, m]` Gramian $J J^\top$.
        pref_vector: `[m]` non-negative preference weights $u$; `None` = $1/m$.
        norm_eps: trace below which the Gramian counts as zero (torchjd default `1e-4`).
        reg_eps: diagonal regularisation of the normalised Gramian (torchjd default `1e-4`).

    Returns:
        `[m]` weights, in `gram`'s dtype and device.

    Raises:
        TypeError: `gram` is not a floating tensor.
        ValueError: non-square or non-finite `gram`, a bad `pref_vector`, negative eps.

    Example:
        >>> import torch
        >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
        >>> d = J.T @ upgrad_weights(J @ J.T)
        >>> bool(((J @ d) >= 0).all())  # conflicts with neither objective
        True
    """
    gram = _check_gramian(gram)
    norm_eps = check_number("norm_eps", norm_eps, low=0.0)
    reg_eps = check_number("reg_eps", reg_eps, low=0.0)
    m = gram.shape[0]
    pref = _check_pref(pref_vector, m, gram).detach().to("cpu", torch.float64)
    g = _normalize_regularize(gram.detach().to("cpu", torch.float64), norm_eps, reg_eps).numpy()
    total = np.zeros(m)
    for i in range(m):
        u = np.zeros(m)
        u[i] = float(pref[i])
        total += _dual_cone_np(u, g, 1e-12)
    return torch.from_numpy(total).to(gram)


def mgda_weights(gram: Tensor, *, epsilon: float = 1e-3, max_iters: int = 100) -> Tensor:
    r"""MGDA: the minimum-norm point of the convex hull of the gradients (Frank-Wolfe).

    *Multi-Task Learning as Multi-Objective Optimization* (Sener & Koltun, NeurIPS 2018,
    arXiv:1810.04650), Algorithm 2: $w = \arg\min_{w \in \Delta_m} w^\top G w$ by Frank-Wolfe
    with the exact line search, from $w = 1/m$, stopping when the step $\hat\gamma$ is below
    `epsilon` or after `max_iters`. Verified against `torchjd.aggregation.MGDA` (same solver,
    same defaults): equal in float64.

    Args:
        gram: `[m, m]` Gramian.
        epsilon: step size below which the iteration stops.
        max_iters: iteration budget.

    Returns:
        `[m]` weights on the simplex.

    Raises:
        ValueError: bad `gram`, `epsilon <= 0`, `max_iters < 1`.

    Example:
        >>> import torch
        >>> mgda_weights(torch.tensor([[1.0, 0.0], [0.0, 4.0]]))  # min-norm: ∝ 1/|g_i|^2
        tensor([0.8000, 0.2000])
    """
    gram = _check_gramian(gram)
    epsilon = check_number("epsilon", epsilon, low=0.0, low_inclusive=False)
    max_iters = check_int("max_iters", max_iters, low=1)
    g = gram.detach().to("cpu", torch.float64)
    m = g.shape[0]
    alpha = torch.full((m,), 1.0 / m, dtype=torch.float64)
    for _ in range(max_iters):
        t = int(torch.argmin(g @ alpha))
        a = float(alpha @ g[:, t])
        b = float(alpha @ g @ alpha)
        c = float(g[t, t])
        if c <= a:
            gamma = 1.0
        elif b <= a:
            gamma = 0.0
        else:
            gamma = (b - a) / (b + c - 2 * a)
        alpha = (1 - gamma) * alpha
        alpha[t] += gamma
        if gamma < epsilon:
            break
    return alpha.to(gram)


def pcgrad_weights(gram: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    r"""PCGrad: project each gradient off the normals of the ones it conflicts with, then sum.

    *Gradient Surgery for Multi-Task Learning* (Yu et al., NeurIPS 2020, arXiv:2001.06782),
    Algorithm 1: for each task $i$, $g_i^{pc} = g_i$; for $j$ in a random order ($j \ne i$), if
    $\langle g_i^{pc}, g_j\rangle < 0$ then $g_i^{pc} \mathrel{-}= \frac{\langle g_i^{pc},
    g_j\rangle}{\lVert g_j\rVert^2} g_j$; the update is $\sum_i g_i^{pc}$ (a **sum**, as in the
    paper and torchjd). In Gramian form every $g_i^{pc} = J^\top c_i$. One random order per task
    is drawn with `torch.randperm(m, generator=generator)`: with the same seed, the weights equal
    `torchjd.aggregation.PCGrad`'s (tested in float64).

    Args:
        gram: `[m, m]` Gramian.
        generator: the random order's generator (`None`: the global one).

    Returns:
        `[m]` weights.

    Example:
        >>> import torch
        >>> pcgrad_weights(torch.tensor([[1.0, -1.0], [-1.0, 2.0]]))
        tensor([2.0000, 1.5000])
    """
    gram = _check_gramian(gram)
    g = gram.detach().to("cpu", torch.float64)
    m = g.shape[0]
    weights = torch.zeros(m, dtype=torch.float64)
    for i in range(m):
        order = torch.randperm(m, generator=generator)
        current = torch.zeros(m, dtype=torch.float64)
        current[i] = 1.0
        for j in order.tolist():
            if j == i:
                continue
            inner = float(g[j] @ current)
            if inner < 0.0 and float(g[j, j]) > 0.0:
                current[j] -= inner / float(g[j, j])
        weights += current
    return weights.to(gram)


def cagrad_weights(
    gram: Tensor,
    c: float = 0.4,
    *,
    rescale: int = 1,
    iters: int = 500,
) -> Tensor:
    r"""CAGrad: the best worst-case improvement within a ball around the mean gradient.

    *Conflict-Averse Gradient Descent for Multi-task Learning* (Liu et al., NeurIPS 2021,
    arXiv:2110.14048), Algorithm 1 as in the authors' code (`Cranial-XIX/CAGrad`,
    `cagrad_exact`): with $g_0 = \frac1m\sum_i g_i$ and $\phi = c^2 \lVert g_0\rVert^2$,

    $$
    \omega = \arg\min_{\omega \in \Delta_m} \omega^\top G\,\tfrac{1}{m}\mathbf 1
        + \sqrt{\phi}\,\sqrt{\omega^\top G \omega + 10^{-8}},\qquad
    d = g_0 + \frac{\sqrt\phi}{\lVert J^\top\omega\rVert + 10^{-8}} J^\top\omega,
    $$

    divided by $1 + c^2$ (`rescale=1`, the reference default), $1 + c$ (`rescale=2`) or not
    (`rescale=0`, torchjd's `CAGrad`). The reference uses $\sqrt{\phi} = c\sqrt{\bar G + 10^{-8}}$
    with $\bar G$ the mean entry of $G$ ($= \lVert g_0\rVert^2$); kept here. The convex problem
    over the simplex is solved by accelerated projected gradient (float64, `iters` steps) instead
    of scipy's SLSQP; the test compares both on random Jacobians.

    Args:
        gram: `[m, m]` Gramian.
        c: the radius factor $c \ge 0$ (0 = the mean gradient; the reference default 0.4 on
            Multi-Fashion+MNIST, 0.5 elsewhere).
        rescale: 0, 1 or 2, see above.
        iters: projected-gradient iterations.

    Returns:
        `[m]` weights.

    Example:
        >>> import torch
        >>> cagrad_weights(torch.eye(2), c=0.0, rescale=0)  # c = 0: the mean
        tensor([0.5000, 0.5000])
    """
    gram = _check_gramian(gram)
    c = check_number("c", c, low=0.0)
    rescale = check_int("rescale", rescale, low=0, high=2)
    iters = check_int("iters", iters, low=1)
    g = gram.detach().to("cpu", torch.float64)
    m = g.shape[0]
    ones = torch.full((m,), 1.0 / m, dtype=torch.float64)
    sqrt_phi = c * float((g.mean() + 1e-8).sqrt()) + 1e-8
    b = g @ ones

    def f(w: Tensor) -> float:
        return float(b @ w + sqrt_phi * (w @ g @ w + 1e-8).sqrt())

    def grad_f(w: Tensor) -> Tensor:
        gw = g @ w
        return b + sqrt_phi * gw / (w @ gw + 1e-8).sqrt()

    # Projected gradient with a backtracking (Armijo) step: the sqrt term is not uniformly
    # smooth near J^T w = 0, so no fixed step is safe.
    w = ones.clone()
    step = 1.0 / max(float(torch.linalg.matrix_norm(g, ord=2)), 1e-12)
    fw = f(w)
    for _ in range(iters):
        grad = grad_f(w)
        while True:
            cand = _project_simplex(w - step * grad)
            fc = f(cand)
            diff = cand - w
            if fc <= fw + float(grad @ diff) + float(diff @ diff) / (2 * step) or step < 1e-30:
                break
            step *= 0.5
        done = float(diff.abs().max()) < 1e-13
        w, fw, step = cand, fc, step * 1.5
        if done:
            break
    gw_norm = float((w @ g @ w).clamp_min(0.0).sqrt())
    weights = ones + (sqrt_phi / (gw_norm + 1e-8)) * w
    if rescale == 1:
        weights = weights / (1.0 + c * c)
    elif rescale == 2:
        weights = weights / (1.0 + c)
    return weights.to(gram)


def _project_simplex(y: Tensor) -> Tensor:
    # Euclidean projection onto the probability simplex (sort-based, Duchi et al. 2008).
    u, _ = torch.sort(y, descending=True)
    css = u.cumsum(0) - 1.0
    k = torch.arange(1, y.numel() + 1, dtype=y.dtype)
    rho = int((u - css / k > 0).nonzero().max())
    theta = css[rho] / (rho + 1)
    return (y - theta).clamp_min(0.0)


def config_weights(gram: Tensor, pref_vector: Tensor | None = None) -> Tensor:
    r"""ConFIG: the direction with equal cosine to every gradient, scaled by their projections.

    *ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks* (Liu, Chu,
    Thuerey; ICLR 2025, arXiv:2408.11104), Eq. 2: with unit rows $\hat g_i = g_i/\lVert
    g_i\rVert$ and $\hat J = [\hat g_1; \dots; \hat g_m]$,

    $$
    g_u = \hat J^{+} p,\qquad \hat g_u = g_u/\lVert g_u\rVert,\qquad
    d = \Big(\sum_i g_i^\top \hat g_u\Big)\,\hat g_u
    $$

    with $p = \mathbf 1$ by default (equal weights). In Gramian form $\hat J^{+} p = \hat J^\top
    \hat G^{+} p$ (the minimum-norm solution of $\hat J x = p$) with $\hat G = D^{-1} G D^{-1}$,
    $D = \mathrm{diag}(\lVert g_i\rVert)$, so $d = J^\top w$ with
    $w = D^{-1}\hat G^{+}p \cdot (\mathbf 1^\top G w_0)/(w_0^\top G w_0)$. Verified: equals
    `conflictfree.grad_operator.ConFIG_update` (least squares and pinv) and
    `torchjd.aggregation.ConFIG` on full-row-rank random Jacobians (float64, 1e-9). For
    rank-deficient $J$ the pseudo-inverse of $\hat G$ truncates at a relative $\sqrt{}$ of
    the threshold `pinv` uses on $\hat J$. A zero gradient gets weight 0 (the reference's
    `nan_to_num`).

    Args:
        gram: `[m, m]` Gramian.
        pref_vector: `[m]` non-negative direction weights $p$; `None` = ones.

    Returns:
        `[m]` weights.

    Example:
        >>> import torch
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> J.T @ config_weights(J @ J.T)  # equal angle to both, length = sum of projections
        tensor([1.5000, 1.5000], dtype=torch.float64)
    """
    gram = _check_gramian(gram)
    m = gram.shape[0]
    g = gram.detach().to("cpu", torch.float64)
    pref = (
        torch.ones(m, dtype=torch.float64)
        if pref_vector is None
        else _check_pref(pref_vector, m, g)
    )
    norms = g.diagonal().clamp_min(0.0).sqrt()
    inv = torch.where(norms > 0, 1.0 / norms.clamp_min(1e-300), torch.zeros_like(norms))
    g_hat = inv[:, None] * g * inv[None, :]
    w0 = inv * (torch.linalg.pinv(g_hat, hermitian=True) @ pref)
    sq = float(w0 @ g @ w0)
    if sq <= 0.0:
        return torch.zeros(m, dtype=gram.dtype, device=gram.device)
    length = float((g @ w0).sum()) / sq**0.5
    return (w0 * (length / sq**0.5)).to(gram)


def nash_mtl_weights(
    gram: Tensor,
    bargaining_powers: Tensor | None = None,
    *,
    max_norm: float = 1.0,
    reg_eps: float = 1e-8,
    tol: float = 1e-12,
    max_iters: int = 100,
) -> Tensor:
    r"""Nash-MTL: the Nash bargaining solution, weights $\alpha > 0$ with $G\alpha = 1/\alpha$.

    *Multi-Task Learning as a Bargaining Game* (Navon et al., ICML 2022, arXiv:2202.01017),
    Theorem 5.1: the bargaining direction is $d = J^\top\alpha$ with $\alpha$ the positive
    solution of $(G\alpha)_i = 1/\alpha_i$ for every task $i$, so that every task gets
    $g_i^\top d = 1/\alpha_i > 0$. The authors approximate it by a sequence of convex programs
    (cvxpy, 20 iterations, stopped at $\lVert G\alpha - 1/\alpha\rVert < 10^{-3}$); here the
    equation is solved exactly: it is the stationarity condition of the strictly convex
    $f(\alpha) = \tfrac12\alpha^\top G\alpha - \sum_i \log\alpha_i$, minimised by damped Newton
    steps (float64) on $G/\lVert G\rVert_F + \varepsilon I$, then rescaled back to $G$. A task
    with a zero gradient gets weight 0. Per-task scale invariance: scaling $g_i$ by $c > 0$
    divides $\alpha_i$ by $c$ and leaves $d$ unchanged. As in the authors' code and torchjd's
    `NashMTL` (default `max_norm=1.0`), $d$ is rescaled to norm `max_norm` when it is longer
    (`0` disables this); their `update_weights_every` (reuse of old weights) is not offered.

    With `bargaining_powers` $p$ it is the asymmetric bargaining solution of *Auxiliary Learning
    as an Asymmetric Bargaining Game* (Shamsian et al., ICML 2023, arXiv:2301.13501):
    $(G\alpha)_i = p_i/\alpha_i$, i.e. the minimiser of $\tfrac12\alpha^\top G\alpha -
    \sum_i p_i\log\alpha_i$. As in the authors' code (`AvivSham/auxinash`, `AuxiNash.set_p`),
    $p$ is clamped below at $10^{-4}$ and rescaled to sum to $m$ ($p = \mathbf 1$: Nash-MTL).
    Learning $p$ from the main task's validation loss (their implicit-differentiation
    hypergradient) is not part of this function.

    Args:
        gram: `[m, m]` Gramian.
        bargaining_powers: `[m]` positive bargaining powers $p$; `None` = ones (Nash-MTL).
        max_norm: cap on $\lVert J^\top\alpha\rVert = \sqrt{\alpha^\top G\alpha}$; `0` = none.
        reg_eps: diagonal regularisation of the normalised Gramian (keeps $\alpha$ finite when
            gradients cancel exactly, where no bargaining solution exists).
        tol: stop when $\max_i |\alpha_i (G\alpha)_i / p_i - 1| <$ `tol` (scale-free).
        max_iters: Newton iteration budget.

    Returns:
        `[m]` non-negative weights.

    Raises:
        ValueError: bad `gram`, negative `max_norm` or `reg_eps`, `tol <= 0`, `max_iters < 1`.

    Example:
        >>> import torch
        >>> g = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> nash_mtl_weights(g, max_norm=0.0, reg_eps=0.0)  # orthogonal: 1 / |g_i|
        tensor([1.0000, 0.5000], dtype=torch.float64)
    """
    gram = _check_gramian(gram)
    max_norm = check_number("max_norm", max_norm, low=0.0)
    reg_eps = check_number("reg_eps", reg_eps, low=0.0)
    tol = check_number("tol", tol, low=0.0, low_inclusive=False)
    max_iters = check_int("max_iters", max_iters, low=1)
    g_full = gram.detach().to("cpu", torch.float64).numpy()
    m = g_full.shape[0]
    if bargaining_powers is None:
        powers = np.ones(m)
    else:
        p = check_tensor("bargaining_powers", bargaining_powers, floating=True)
        if p.shape != (m,) or not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
            raise ValueError(
                f"bargaining_powers must be {m} finite non-negative values, got {p.tolist()}"
            )
        powers = np.clip(p.detach().to("cpu", torch.float64).numpy(), 1e-4, None)
        powers = powers / powers.sum() * m
    alpha = np.zeros(m)
    live = np.flatnonzero(np.diag(g_full) > 0)  # a zero gradient: weight 0
    if live.size:
        g = g_full[np.ix_(live, live)]
        scale = float(np.linalg.norm(g))  # Frobenius, as the authors normalise
        alpha[live] = _nash_newton(
            g / scale + reg_eps * np.eye(live.size), powers[live], tol, max_iters
        )
        alpha /= np.sqrt(scale)  # G a = 1/a  <=>  (G/s)(a sqrt(s)) = 1/(a sqrt(s))
    if max_norm > 0:
        norm = float(np.sqrt(max(alpha @ g_full @ alpha, 0.0)))
        if norm > max_norm:
            alpha *= max_norm / norm
    return torch.from_numpy(alpha).to(gram)


def _nash_newton(g: np.ndarray, p: np.ndarray, tol: float, max_iters: int) -> np.ndarray:
    # Minimise f(a) = a'Ga/2 - p.log(a) over a > 0: grad = Ga - p/a, Hessian G + diag(p/a^2).
    def f(a: np.ndarray) -> float:
        return float(0.5 * a @ g @ a - p @ np.log(a))

    a = np.sqrt(p / np.diag(g))  # exact when the gradients are orthogonal
    fa = f(a)
    for _ in range(max_iters):
        ga = g @ a
        if float(np.abs(a * ga / p - 1.0).max()) < tol:
            break
        grad = ga - p / a
        try:
            step = np.linalg.solve(g + np.diag(p / a**2), grad)
        except np.linalg.LinAlgError:  # reg_eps=0 and no solution (a diverges): stop
            break
        decrement = float(grad @ step)
        # Stay inside a > 0, then backtrack (Armijo) on the convex objective.
        t = 1.0
        shrinking = step > 0
        if shrinking.any():
            t = min(1.0, 0.99 * float(np.min(a[shrinking] / step[shrinking])))
        while True:
            cand = a - t * step
            fc = f(cand)
            # Near the optimum f's change is below its rounding: take the (quadratically
            # convergent) Newton step as is.
            if decrement < 1e-8 or fc <= fa - 0.25 * t * decrement or t < 1e-12:
                break
            t *= 0.5
        a, fa = cand, fc
    return a


AGGREGATORS: dict[str, Callable[..., Tensor]] = {
    "cagrad": cagrad_weights,
    "config": config_weights,
    "mean": mean_weights,
    "mgda": mgda_weights,
    "nash_mtl": nash_mtl_weights,
    "pcgrad": pcgrad_weights,
    "upgrad": upgrad_weights,
}
"""The Gramian weightings by name (what `aggregate` and the callback accept)."""


def aggregator_weights(gram: Tensor, method: str = "upgrad", **kwargs: Any) -> Tensor:
    """The weights of aggregator `method` (a key of `AGGREGATORS`) for Gramian `gram`.

    Args:
        gram: `[m, m]` Gramian.
        method: `"upgrad"`, `"mean"`, `"mgda"`, `"pcgrad"`, `"cagrad"`, `"config"` or
            `"nash_mtl"`.
        **kwargs: the weighting's keyword arguments.

    Returns:
        `[m]` weights.

    Raises:
        ValueError: an unknown `method`.

    Example:
        >>> import torch
        >>> aggregator_weights(torch.eye(2), "mean")
        tensor([0.5000, 0.5000])
    """
    if method not in AGGREGATORS:
        raise ValueError(f"method must be one of {tuple(sorted(AGGREGATORS))}, got {method!r}")
    return AGGREGATORS[method](gram, **kwargs)


def aggregate(jacobian: Tensor, method: str = "upgrad", **kwargs: Any) -> Tensor:
    r"""Aggregate a Jacobian `[m, n]` into one update direction $J^\top w$ (`[n]`).

    Args:
        jacobian: `[m, n]` per-objective gradients, one row per objective.
        method: the aggregator (see `aggregator_weights`).
        **kwargs: the weighting's keyword arguments.

    Returns:
        `[n]` direction in `jacobian`'s dtype; the weights are computed in float64 from the
        Gramian.

    Raises:
        TypeError: `jacobian` is not a floating tensor.
        ValueError: `jacobian` is not 2-D or not finite, or `method` is unknown.

    Example:
        >>> import torch
        >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> aggregate(J, "mean")
        tensor([0.0000, 0.5000])
    """
    jacobian = _check_jacobian(jacobian)
    weights = aggregator_weights(gramian(jacobian.double()), method, **kwargs)
    return jacobian.T @ weights.to(jacobian)


def per_sample_jacobian(
    module: torch.nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
) -> Tensor:
    r"""The `[B, n]` Jacobian of the per-sample losses w.r.t. the trainable parameters.

    Row $i$ is $\nabla_\theta\, \ell(f_\theta(x_i), y_i)$, all trainable parameters flattened in
    `module.parameters()` order, computed with `torch.func.vmap(torch.func.grad(...))` (one
    vectorised backward). With it, instance-wise risk minimisation (IWRM, *Jacobian Descent for
    Multi-Objective Optimization*, Quinton & Rey, arXiv:2406.16232, Section 5: every sample's
    loss is an objective) is `aggregate(per_sample_jacobian(...), "upgrad")`. Each sample runs
    through the module alone (a batch of 1), so layers that use batch statistics in training
    (BatchNorm) are not supported; put them in eval mode or use a per-sample normalisation.

    Args:
        module: the model; its buffers are read, not updated.
        loss_fn: `loss_fn(output, target)` on a batch of one sample, returning a scalar.
        inputs: `[B, ...]` inputs.
        targets: `[B, ...]` targets.

    Returns:
        `[B, n]` per-sample gradients (detached), in the parameters' dtype.

    Raises:
        ValueError: `inputs` and `targets` of different batch sizes, or no trainable parameter.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1.0)
        >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1)
        >>> per_sample_jacobian(net, torch.nn.functional.mse_loss, x, y)  # 2 (w.x - y) x
        tensor([[2., 0.],
                [0., 8.]])
    """
    inputs = check_tensor("inputs", inputs)
    targets = check_tensor("targets", targets)
    if inputs.ndim == 0 or targets.ndim == 0 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            "inputs and targets must share their first (batch) dimension, got "
            f"{tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("module has no trainable parameter")
    buffers = {k: v.detach() for k, v in module.named_buffers()}

    def one(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        out = torch.func.functional_call(module, (p, buffers), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(params, inputs, targets)
    batch = inputs.shape[0]
    return torch.cat([grads[k].reshape(batch, -1) for k in params], dim=1)
