r"""⊥Grad: the gradient without its component along the weights (`docs/guide/procedures.md`).

From *Grokking at the Edge of Numerical Stability* (Prieto, Barsbey, Mediano, Birdal; ICLR 2025,
arXiv:2501.04697). After a model fits its training set, the cross-entropy gradient aligns with the
weights: the cheapest way to lower the loss is to scale the logits up ("naïve loss
minimisation"), which drives the softmax towards floating-point collapse and delays
generalisation. ⊥Grad removes that direction, per parameter tensor $w$ (flattened):

$$
g_\perp = g - \frac{\langle g, w\rangle}{\lVert w\rVert^2 + 10^{-30}}\,w,
\qquad \tilde g = g_\perp\,\frac{\lVert g\rVert}{\lVert g_\perp\rVert + 10^{-30}}
\quad(\text{`rescale=True`}).
$$

The paper states the projection $g_\perp$ (`rescale=False`); the authors' code
(`LucasPrietoAl/grokking-at-the-edge-of-numerical-stability`, `orthograd.py`, the optimizer the
experiments use) also rescales $g_\perp$ to the norm of $g$, and so do we by default (checked
against that code: the $10^{-30}$ guards, the per-tensor flattening, the rescaling). A tensor
with $w = 0$ (a zero-initialised bias) keeps its gradient unchanged.

[PerpGrad][lightning_losses.callbacks.PerpGrad] applies it in `on_before_optimizer_step`: once
per optimizer step, on the accumulated, AMP-unscaled and (under DDP) all-reduced gradient, before
gradient clipping; with any optimizer. Under DDP every rank holds the same gradient and weights,
so every rank projects identically (no communication). Sharded strategies (FSDP,
`ModelParallelStrategy`) are refused: the inner products would be of local shards.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.validation import check_bool

__all__ = ["PerpGrad", "perpendicular_gradient"]

_EPS = 1e-30


def perpendicular_gradient(weight: Tensor, grad: Tensor, *, rescale: bool = True) -> Tensor:
    r"""The ⊥Grad gradient of one parameter tensor: $g$ without its component along $w$.

    $g_\perp = g - \langle g, w\rangle / (\lVert w\rVert^2 + 10^{-30})\, w$ over the flattened
    tensor (fp32 math, returned in `grad`'s dtype); with `rescale`, $g_\perp$ is scaled to the norm
    of $g$ (the authors' code).

    Args:
        weight: the parameter $w$, any shape.
        grad: its gradient $g$, the same shape.
        rescale: scale $g_\perp$ to $\lVert g\rVert$.

    Returns:
        The projected gradient, shaped like `grad`.

    Raises:
        ValueError: the shapes differ.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks import perpendicular_gradient
        >>> w, g = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 4.0])
        >>> perpendicular_gradient(w, g, rescale=False), perpendicular_gradient(w, g)
        (tensor([0., 4.]), tensor([0., 5.]))
    """
    rescale = check_bool("rescale", rescale)
    if weight.shape != grad.shape:
        raise ValueError(
            f"weight and grad must have the same shape, got {tuple(weight.shape)} and "
            f"{tuple(grad.shape)}"
        )
    w = weight.detach().reshape(-1).float()
    g = grad.detach().reshape(-1).float()
    proj = torch.dot(w, g) / (torch.dot(w, w) + _EPS)
    out = g - proj * w
    if rescale:
        out = out * (torch.linalg.vector_norm(g) / (torch.linalg.vector_norm(out) + _EPS))
    return out.reshape(grad.shape).to(grad.dtype)


class PerpGrad(BehaviourCallback):
    r"""⊥Grad as a callback: project every parameter's gradient orthogonally to the parameter.

    `Trainer(callbacks=[PerpGrad()])` with any optimizer (the paper pairs it with AdamW and with
    StableMax cross-entropy, `stablemax` in the loss registry). Acts in `on_before_optimizer_step`
    on every parameter the optimizer updates that has a gradient. Logs `perp_grad/cos`, the mean
    over tensors of the cosine between $g$ and $w$ before the projection (how strongly the
    gradient pointed along the weights).

    Args:
        rescale: scale the projected gradient back to the norm of the original one (the authors'
            code; `False` is the paper's equation).

    Example:
        >>> from lightning_losses.callbacks import PerpGrad
        >>> PerpGrad().state_dict()
        {'config': {'rescale': True}}
    """

    config_keys = ("rescale",)

    def __init__(self, rescale: bool = True) -> None:
        super().__init__()
        self.rescale = check_bool("rescale", rescale)

    @override
    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().check_module(trainer, pl_module)
        strategy = type(trainer.strategy).__name__
        if "FSDP" in strategy or "ModelParallel" in strategy or "DeepSpeed" in strategy:
            raise ValueError(
                f"PerpGrad does not support the sharded strategy {strategy}: the per-tensor "
                "inner products would be of local shards; use DDP or a single device"
            )

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        cosines: list[Tensor] = []
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    cosines.append(_cosine(p, p.grad))
                    p.grad.copy_(perpendicular_gradient(p, p.grad, rescale=self.rescale))
        if cosines:
            pl_module.log("perp_grad/cos", torch.stack(cosines).mean(), on_step=True)


def _cosine(w: Tensor, g: Tensor) -> Tensor:
    w32, g32 = w.detach().reshape(-1).float(), g.detach().reshape(-1).float()
    den = torch.linalg.vector_norm(w32) * torch.linalg.vector_norm(g32) + _EPS
    return torch.dot(w32, g32) / den
