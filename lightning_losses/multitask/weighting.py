r"""Loss weighting: combine per-task scalar losses into one objective.

- [UncertaintyWeighting][lightning_losses.multitask.UncertaintyWeighting]: learnable homoscedastic
  uncertainty per task, an `nn.Module` whose parameters the LightningModule's optimizer trains.
- `dwa_weights`: Dynamic Weight Average from the epoch-averaged loss history.
- [GradNorm][lightning_losses.multitask.GradNorm]: learnable task weights trained to balance the
  tasks' gradient norms on a shared layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from lightning_losses.validation import check_choice, check_int, check_number, check_tensor

__all__ = ["TASK_TYPES", "GradNorm", "UncertaintyWeighting", "dwa_weights", "gradnorm_update"]

TASK_TYPES = ("regression", "classification")


def _stack_losses(losses: Tensor | Sequence[Tensor], num_tasks: int) -> Tensor:
    if isinstance(losses, Tensor):
        stacked = losses
    elif isinstance(losses, (list, tuple)) and all(isinstance(v, Tensor) for v in losses):
        if any(v.ndim != 0 for v in losses):
            raise ValueError("losses must be scalar tensors, one per task")
        stacked = torch.stack(list(losses)) if losses else torch.empty(0)
    else:
        raise TypeError(
            f"losses must be a [T] tensor or a sequence of scalar tensors, got "
            f"{type(losses).__name__}"
        )
    if not stacked.is_floating_point():
        raise TypeError(f"losses must be floating point, got dtype {stacked.dtype}")
    if stacked.shape != (num_tasks,):
        raise ValueError(
            f"losses must hold {num_tasks} task losses, got shape {tuple(stacked.shape)}"
        )
    return stacked


class UncertaintyWeighting(nn.Module):
    r"""Homoscedastic uncertainty weighting of task losses, with learnable $s_i = \log\sigma_i^2$.

    *Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics*
    (Kendall, Gal, Cipolla; CVPR 2018, arXiv:1705.07115), Eq. 7 and 10 with $s = \log\sigma^2$:

    $$
    \mathcal L = \sum_i c_i\, e^{-s_i} L_i + \tfrac{1}{2} s_i,\qquad
    c_i = \tfrac12 \text{ (regression, Gaussian likelihood)},\quad
    c_i = 1 \text{ (classification, softmax likelihood)}.
    $$

    With $L_i$ fixed, $\partial\mathcal L/\partial s_i = 0$ at $e^{s_i} = 2c_i L_i$: at
    $e^{s_i} = L_i$ for regression. `task_types=None` gives every task the regression form, which
    is LibMTL's `UW` weighting (`(losses / (2 * s.exp()) + s / 2).sum()`, init $s = -0.5$;
    checked against LibMTL's source). The weights $c_i e^{-s_i}$ are returned by `weights()` for
    logging. Register it as a submodule of the LightningModule so that `configure_optimizers`'s
    `self.parameters()` trains $s$ (the paper uses the same optimizer as the network).

    Args:
        num_tasks: number of task losses $T \ge 1$.
        init: initial $s_i$ (LibMTL: `-0.5`).
        task_types: per-task `"regression"` or `"classification"`; `None` = all regression.

    Shapes:
        losses: `[T]` tensor, or a sequence of `T` scalar tensors. Output: scalar.

    Raises:
        TypeError / ValueError: bad arguments, or losses of the wrong number or shape.

    Example:
        >>> import torch
        >>> uw = UncertaintyWeighting(2, init=0.0)
        >>> uw(torch.tensor([1.0, 3.0]))  # (1 + 3) / 2 + 0
        tensor(2., grad_fn=<SumBackward0>)
    """

    def __init__(
        self,
        num_tasks: int,
        init: float = -0.5,
        task_types: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        init = check_number("init", init)
        if task_types is None:
            task_types = ["regression"] * self.num_tasks
        task_types = list(task_types)
        if len(task_types) != self.num_tasks:
            raise ValueError(f"task_types must name {self.num_tasks} tasks, got {len(task_types)}")
        for kind in task_types:
            check_choice("task_types", kind, TASK_TYPES)
        self.task_types = tuple(task_types)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), init))
        factors = [0.5 if kind == "regression" else 1.0 for kind in self.task_types]
        self.factors: Tensor
        self.register_buffer("factors", torch.tensor(factors), persistent=False)

    def weights(self) -> Tensor:
        r"""The detached effective weights $c_i e^{-s_i}$, `[T]` (log them per task)."""
        return (self.factors * torch.exp(-self.log_vars)).detach()

    def forward(self, losses: Tensor | Sequence[Tensor]) -> Tensor:
        """The weighted total $\\sum_i c_i e^{-s_i} L_i + s_i / 2$ (scalar).

        Args:
            losses: `[T]` task losses (or a sequence of scalars).

        Returns:
            Scalar objective, differentiable in the losses and in `log_vars`.
        """
        stacked = _stack_losses(losses, self.num_tasks)
        s = self.log_vars.to(stacked.dtype)
        return (self.factors.to(stacked.dtype) * torch.exp(-s) * stacked + 0.5 * s).sum()


def dwa_weights(history: Tensor, temperature: float = 2.0) -> Tensor:
    r"""Dynamic Weight Average: task weights from the rate of change of each task's loss.

    *End-to-End Multi-Task Learning with Attention* (Liu, Johns, Davison; CVPR 2019,
    arXiv:1803.10704), Eq. 7:

    $$
    r_k = \frac{L_k(t-1)}{L_k(t-2)},\qquad
    \lambda_k(t) = \frac{K \exp(r_k / T)}{\sum_i \exp(r_i / T)},
    $$

    with $L_k$ the epoch-average loss of task $k$; $\lambda_k = 1$ while fewer than two epochs
    are recorded (the paper and LibMTL's `DWA`, `T = 2`).

    Args:
        history: `[E, K]` epoch-average losses so far (row `e` = epoch `e`); `E` may be 0.
        temperature: $T > 0$.

    Returns:
        `[K]` weights summing to $K$ (detached).

    Raises:
        ValueError: `history` not 2-D, a non-positive loss in the ratio, bad `temperature`.

    Example:
        >>> import torch
        >>> dwa_weights(torch.tensor([[1.0, 1.0], [1.0, 0.5]]))  # task 2 falls faster
        tensor([1.1244, 0.8756])
    """
    history = check_tensor("history", history, floating=True)
    temperature = check_number("temperature", temperature, low=0.0, low_inclusive=False)
    if history.ndim != 2 or history.shape[1] == 0:
        raise ValueError(f"history must be [epochs, tasks], got shape {tuple(history.shape)}")
    k = history.shape[1]
    if history.shape[0] < 2:
        return torch.ones(k, dtype=history.dtype, device=history.device)
    prev, prev2 = history[-1].detach(), history[-2].detach()
    if bool((prev2 <= 0).any()) or not bool(torch.isfinite(history[-2:]).all()):
        raise ValueError("history must hold finite positive losses for the last two epochs")
    return k * torch.softmax(prev / prev2 / temperature, dim=0)


class GradNorm(nn.Module):
    r"""GradNorm: learnable task weights that balance the tasks' gradient norms on shared weights.

    *GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks*
    (Chen, Badrinarayanan, Lee, Rabinovich; ICML 2018, arXiv:1711.02257), Algorithm 1. With
    weights $w_i$ (initialised to 1), $W$ the chosen shared weights (usually the last shared
    layer), $G_i = \lVert\nabla_W\, w_i L_i\rVert_2 = w_i\lVert\nabla_W L_i\rVert_2$,
    $\bar G = \frac1T\sum_i G_i$, $\tilde L_i = L_i(t)/L_i(0)$ and
    $r_i = \tilde L_i / \frac1T\sum_j\tilde L_j$:

    $$
    \mathcal L = \sum_i w_i L_i,\qquad
    L_{\mathrm{grad}} = \sum_i \big|G_i - \bar G\, r_i^{\alpha}\big|,
    $$

    the network is trained on $\mathcal L$ with the weights held fixed, the $w_i$ are trained on
    $L_{\mathrm{grad}}$ with the targets $\bar G r_i^\alpha$ held fixed, and the weights are
    renormalised to $\sum_i w_i = T$ after each update. `forward` returns one objective that
    does both in a single backward: its value is $\sum_i w_i L_i$, its gradient is
    $\nabla_\theta\sum_i w_i L_i$ for the network and $\nabla_w L_{\mathrm{grad}}$ for the
    weights (the term $L_{\mathrm{grad}} - \mathrm{sg}(L_{\mathrm{grad}})$ is added: value 0).
    The renormalisation runs at the start of each call, before the weights are used, which is
    the paper's end-of-step renormalisation. $L_i(0)$ is the loss at the first call (a buffer,
    saved in the `state_dict`). The gradient norms cost one `autograd.grad` per task restricted
    to `shared_parameters` (cheap for the last shared layer). Under DDP the norms are per rank
    (local batch); the weights' gradient is averaged by DDP like any parameter's.

    Register it as a submodule so that the optimizer trains `task_weights` (the paper uses the
    network's optimizer; a separate parameter group with its own learning rate is common).

    Args:
        num_tasks: number of task losses $T \ge 1$.
        alpha: the asymmetry $\alpha \ge 0$ (paper: 1.5 on NYUv2, 0.12 on the synthetic
            task; 0 pulls every weighted gradient norm to the same value).

    Shapes:
        losses: `[T]` tensor or `T` scalar tensors (unweighted, differentiable). Output: scalar.

    Raises:
        TypeError / ValueError: bad arguments, losses of the wrong number or shape, no
            trainable shared parameter, non-positive initial losses.

    Example:
        >>> import torch
        >>> shared = torch.nn.Linear(3, 4)
        >>> h = shared(torch.ones(2, 3))
        >>> gn = GradNorm(2, alpha=1.5)
        >>> total = gn([h[:, :2].square().mean(), h[:, 2:].abs().mean()], shared.parameters())
        >>> total.backward()  # trains the network on sum(w_i L_i) and w on L_grad
        >>> gn.task_weights.grad.shape
        torch.Size([2])
    """

    def __init__(self, num_tasks: int, alpha: float = 1.5) -> None:
        super().__init__()
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.task_weights = nn.Parameter(torch.ones(self.num_tasks))
        self.initial_losses: Tensor
        self.register_buffer("initial_losses", torch.zeros(self.num_tasks))  # 0: not set yet
        self.last_gradnorm_loss: Tensor | None = None  # the last L_grad, for logging

    def weights(self) -> Tensor:
        """The detached task weights $w_i$, `[T]` (log them per task)."""
        return self.task_weights.detach().clone()

    @torch.no_grad()
    def renormalize(self) -> None:
        r"""Rescale the weights in place so that $\sum_i w_i = T$."""
        self.task_weights.mul_(self.num_tasks / self.task_weights.sum())

    def forward(
        self, losses: Tensor | Sequence[Tensor], shared_parameters: Iterable[Tensor]
    ) -> Tensor:
        r"""The objective $\sum_i w_i L_i$ carrying GradNorm's gradient for the weights.

        Args:
            losses: `[T]` unweighted task losses (or a sequence of scalars), attached to the
                graph of `shared_parameters`.
            shared_parameters: the shared weights $W$ whose gradient norms are balanced.

        Returns:
            Scalar: value $\sum_i w_i L_i$; backward trains the network on it and the weights
            on $L_{\mathrm{grad}}$.
        """
        stacked = _stack_losses(losses, self.num_tasks)
        params = [p for p in shared_parameters if p.requires_grad]
        if not params:
            raise ValueError("shared_parameters must hold at least one trainable tensor")
        self.renormalize()
        norms = []
        for i in range(self.num_tasks):
            grads = torch.autograd.grad(stacked[i], params, retain_graph=True, allow_unused=True)
            sq = [g.detach().double().square().sum() for g in grads if g is not None]
            norms.append(
                torch.stack(sq).sum().sqrt() if sq else stacked.new_zeros((), dtype=torch.float64)
            )
        norm = torch.stack(norms).to(stacked.dtype)
        current = stacked.detach()
        if not bool((self.initial_losses != 0).any()):
            if bool((current <= 0).any()) or not bool(torch.isfinite(current).all()):
                raise ValueError("the first losses must be finite and positive (they are L_i(0))")
            self.initial_losses.copy_(current.to(self.initial_losses))
        ratio = current / self.initial_losses.to(current)
        r = ratio / ratio.mean()
        w = self.task_weights.to(stacked.dtype)
        g_w = w * norm
        target = (g_w.mean() * r.pow(self.alpha)).detach()
        gradnorm_loss = (g_w - target).abs().sum()
        self.last_gradnorm_loss = gradnorm_loss.detach()
        return (w.detach() * stacked).sum() + gradnorm_loss - gradnorm_loss.detach()


def gradnorm_update(
    weights: Tensor,
    norms: Tensor,
    losses: Tensor,
    initial_losses: Tensor,
    alpha: float,
    lr: float,
) -> Tensor:
    r"""One explicit GradNorm step on the task weights (SGD on $L_{\mathrm{grad}}$, renormalised).

    The update of [GradNorm][lightning_losses.multitask.GradNorm] written out, for code that
    already has the per-task gradient norms (the
    [GradientAggregation][lightning_losses.callbacks.GradientAggregation] callback):
    with $G_i = w_i n_i$, $r_i = \tilde L_i/\overline{\tilde L}$ and the targets
    $t_i = \bar G r_i^\alpha$ held fixed, $\partial L_{\mathrm{grad}}/\partial w_i =
    \operatorname{sign}(G_i - t_i)\, n_i$; then $w \leftarrow T w / \sum_j w_j$.

    Args:
        weights: `[T]` current weights $w$.
        norms: `[T]` gradient norms $n_i = \lVert\nabla_W L_i\rVert$ (unweighted).
        losses: `[T]` current losses $L_i(t)$.
        initial_losses: `[T]` positive $L_i(0)$.
        alpha: the asymmetry $\alpha \ge 0$.
        lr: step size on $w$.

    Returns:
        `[T]` new weights, summing to $T$.

    Raises:
        ValueError: shapes that differ, non-positive initial losses, bad `alpha` or `lr`.

    Example:
        >>> import torch
        >>> w = gradnorm_update(torch.ones(2), torch.tensor([1.0, 3.0]), torch.ones(2),
        ...                     torch.ones(2), alpha=0.0, lr=0.1)
        >>> w  # the task with the larger gradient norm loses weight
        tensor([1.2222, 0.7778])
    """
    weights = check_tensor("weights", weights, floating=True)
    alpha = check_number("alpha", alpha, low=0.0)
    lr = check_number("lr", lr, low=0.0)
    shape = weights.shape
    if weights.ndim != 1 or any(t.shape != shape for t in (norms, losses, initial_losses)):
        raise ValueError(
            "weights, norms, losses and initial_losses must be [T] tensors of one shape, got "
            f"{[tuple(t.shape) for t in (weights, norms, losses, initial_losses)]}"
        )
    if bool((initial_losses <= 0).any()):
        raise ValueError("initial_losses must be positive")
    ratio = losses / initial_losses
    r = ratio / ratio.mean()
    g_w = weights * norms
    target = g_w.mean() * r.pow(alpha)
    new = weights - lr * torch.sign(g_w - target) * norms
    return shape[0] * new / new.sum()
