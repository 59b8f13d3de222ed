r"""Virtual adversarial training (VAT), a smoothness loss that needs the model (guide: procedures).

From *Virtual Adversarial Training: A Regularization Method for Supervised and Semi-Supervised
Learning* (Miyato, Maeda, Koyama, Ishii; TPAMI 2018, arXiv:1704.03976). With $\hat p = p(y|x)$
the model's current prediction (detached), the virtual adversarial direction is the dominant
eigenvector of the Hessian of $D(r) = \mathrm{KL}(\hat p \,\|\, p(y|x + r))$ at $r = 0$, found
by $K$ power iterations from a random unit vector:

$$
d \leftarrow \frac{\nabla_r D(r)\big|_{r = \xi d}}{\lVert \nabla_r D(r)|_{r = \xi d}\rVert},
\qquad r_{adv} = \epsilon\, d,\qquad
L_{vat} = \mathrm{KL}\big(\hat p \,\|\, p(y | x + r_{adv})\big).
$$

No labels are used, so $x$ may be unlabelled (semi-supervised learning); the loss is added to the
supervised loss with a weight (the paper's $\alpha = 1$).

**Normalisation convention** (checked against the authors' code, `takerum/vat_tf`,
`get_normalized_vector`): $d$ is normalised **per sample** to unit L2 norm over all its
non-batch dimensions (the authors first divide by the per-sample max-abs value for numerical
range, which does not change the result); so $\epsilon$ is the L2 radius of each sample's
perturbation, in the units of the model's input. Defaults follow the authors' CIFAR-10 setting,
`xi=1e-6, eps=8.0, power_iters=1` (inputs ZCA-whitened); the popular PyTorch port
`lyakaap/VAT-pytorch` normalises the same way but defaults to `xi=10, eps=1`, and $\epsilon$
must in any case be tuned to the input scale (about 1-2 for images in $[0, 1]$ pixels of
MNIST size; see the guide).

**Batch normalisation:** every forward pass inside `vat_loss` (the clean prediction when `logits`
is not given, the power iteration, the adversarial pass) runs with each training-mode BatchNorm's
momentum set to 0 and `num_batches_tracked` restored (`frozen_batchnorm_stats`), so the running
statistics are exactly those before the call, while the layers still normalise with the batch
statistics as in training. (Toggling `track_running_stats`, as some ports do, does not do this.)
Dropout draws new masks in each pass, as in the authors' code.

The parameters' `.grad` are not touched by the power iteration (`torch.autograd.grad` with
respect to the perturbation only); only the returned loss carries a graph to the parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lightning_losses.validation import check_choice, check_int, check_number, check_tensor

__all__ = ["frozen_batchnorm_stats", "vat_direction", "vat_loss"]


@contextmanager
def frozen_batchnorm_stats(module: object) -> Iterator[None]:
    """Training-mode BatchNorm layers use batch statistics but leave their running statistics.

    Inside the block every `_BatchNorm` in training mode that tracks running statistics runs with
    momentum 0 (running = 1·running + 0·batch, bit for bit the old value); on exit the momentum
    and `num_batches_tracked` are restored. Layers in eval mode are untouched.

    Args:
        module: the model (searched with `modules()`); any other object is left alone.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import frozen_batchnorm_stats
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> with frozen_batchnorm_stats(bn):
        ...     _ = bn(torch.randn(4, 2))
        >>> bn.running_mean, int(bn.num_batches_tracked)
        (tensor([0., 0.]), 0)
    """
    saved: list[tuple[_BatchNorm, float | None, Tensor | None]] = []
    modules = module.modules() if isinstance(module, nn.Module) else ()
    for m in modules:
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.training:
            tracked = m.num_batches_tracked
            saved.append((m, m.momentum, None if tracked is None else tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _normalize(d: Tensor) -> Tensor:
    # Per-sample unit L2 norm over the non-batch dims (a zero vector stays zero).
    flat = d.reshape(d.shape[0], -1)
    norm = torch.linalg.vector_norm(flat, dim=1, keepdim=True)
    return (flat / norm.clamp_min(1e-12)).reshape(d.shape)


def _kl(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    # KL(p || q) per sample from logits, in fp32 (or fp64 for fp64 input).
    dtype = torch.promote_types(p_logits.dtype, torch.float32)
    logp = F.log_softmax(p_logits.to(dtype), dim=-1)
    logq = F.log_softmax(q_logits.to(dtype), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def _check(model: object, x: Tensor, logits: Tensor | None) -> None:
    if not callable(model):
        raise TypeError(
            f"model must be callable (the module's forward), got {type(model).__name__}"
        )
    check_tensor("x", x, floating=True)
    if x.ndim < 2:
        raise ValueError(f"x must be batched [B, *], got shape {tuple(x.shape)}")
    if logits is not None:
        check_tensor("logits", logits, floating=True)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"logits must be [B, C] with B = {x.shape[0]}, got shape {tuple(logits.shape)}"
            )


def vat_direction(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    logits: Tensor | None = None,
    *,
    xi: float = 1e-6,
    power_iters: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The virtual adversarial direction $d$ (per-sample unit L2 norm) by power iteration.

    Args:
        model: maps `[B, *]` inputs to `[B, C]` logits (a module or its forward).
        x: `[B, *]` inputs.
        logits: `[B, C]` logits of `x` from the current forward (detached here); `None` computes
            them (no grad, BatchNorm statistics frozen).
        xi: the finite-difference step $\xi > 0$.
        power_iters: $K \ge 1$.
        generator: for the random start $d_0 \sim N(0, I)$ (drawn on the CPU, then moved).

    Returns:
        `[B, *]` detached direction, unit L2 norm per sample (zero where the gradient is zero).

    Raises:
        TypeError: `model` is not callable, or `x`/`logits` is not a floating tensor.
        ValueError: bad shapes or hyperparameters.
    """
    _check(model, x, logits)
    xi = check_number("xi", xi, low=0.0, low_inclusive=False)
    power_iters = check_int("power_iters", power_iters, low=1)
    x = x.detach()
    with frozen_batchnorm_stats(model):
        if logits is None:
            with torch.no_grad():
                logits = model(x)
        p_logits = logits.detach()
        d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        d = _normalize(d)
        with torch.enable_grad():
            for _ in range(power_iters):
                r = (xi * d).requires_grad_(True)
                dist = _kl(p_logits, model(x + r)).sum()
                (grad,) = torch.autograd.grad(dist, r, allow_unused=True)
                d = _normalize(grad.detach()) if grad is not None else torch.zeros_like(x)
    return d


def vat_loss(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    logits: Tensor | None = None,
    *,
    xi: float = 1e-6,
    eps: float = 8.0,
    power_iters: int = 1,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Virtual adversarial loss $\mathrm{KL}(\hat p \,\|\, p(y | x + \epsilon d))$ (Miyato et al.).

    Call it inside `training_step` on labelled or unlabelled inputs and add it to the supervised
    loss: `loss = ce + alpha * vat_loss(self.net, x_unlabelled)`.

    Args:
        model: maps `[B, *]` inputs to `[B, C]` logits (a module or its forward).
        x: `[B, *]` inputs (no labels needed).
        logits: `[B, C]` logits of `x` from the step's own forward, reused as $\hat p$
            (detached); `None` runs one extra forward without grad.
        xi: the power iteration's finite-difference step $\xi > 0$.
        eps: the perturbation radius $\epsilon \ge 0$ (per-sample L2, input units);
            `eps=0` gives 0.
        power_iters: power iterations $K \ge 1$.
        reduction: `"mean"` (over the batch, the paper's), `"sum"` or `"none"` (`[B]`).
        generator: for the random start of the power iteration.

    Returns:
        The loss (fp32, or fp64 for fp64 logits), $\ge 0$; differentiable with respect to the
        model's parameters through the adversarial forward only.

    Raises:
        TypeError: `model` is not callable, or `x`/`logits` is not a floating tensor.
        ValueError: bad shapes or hyperparameters.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import vat_loss
        >>> net = torch.nn.Linear(3, 2)
        >>> bool(vat_loss(net, torch.randn(4, 3), eps=1.0) >= 0)
        True
        >>> float(vat_loss(net, torch.randn(4, 3), eps=0.0))
        0.0
    """
    _check(model, x, logits)
    eps = check_number("eps", eps, low=0.0)
    reduction = check_choice("reduction", reduction, ("mean", "sum", "none"))
    with frozen_batchnorm_stats(model):
        if logits is None:
            with torch.no_grad():
                logits = model(x.detach())
        d = vat_direction(model, x, logits, xi=xi, power_iters=power_iters, generator=generator)
        per_sample = _kl(logits.detach(), model(x.detach() + eps * d))
    # KL of identical distributions can round to -1e-8; the loss is >= 0 by definition.
    per_sample = per_sample.clamp_min(0.0)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()
