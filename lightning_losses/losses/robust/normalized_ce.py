r"""Normalized cross-entropy (NCE), the symmetric active term of APL.

*Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML 2020
(arXiv:2006.13554).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import check_scale, robust_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index

__all__ = ["NormalizedCrossEntropyLoss", "normalized_cross_entropy"]


def _check_normalized_ce_args(*, scale: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of normalized_cross_entropy's hyperparameters (functional and class).
    return {"scale": check_scale(scale), "ignore_index": check_ignore_index(ignore_index)}


class _LogPTargetAndSum(torch.autograd.Function):
    """``(log p_y, Σ_k log p_k, p)`` from one ``log_softmax``, with a one-pass backward.

    Through autograd, ``gather`` + ``sum`` of ``log_softmax`` cost four ``[M, C]`` passes in
    backward (a dense zero gradient, a scatter, the sum of two gradients, log-softmax's own);
    here ``∂ log p_y / ∂z = e_y - p`` and ``∂ Σ_k log p_k / ∂z = 1 - C p`` make it one. Only
    ``p`` (in the log-probabilities' own buffer) is saved. ``p`` is also an output, so the
    backward is made of differentiable ops on graph outputs and ``create_graph=True`` works.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_p = logits.log_softmax(-1)
        total = log_p.sum(-1)
        log_p_y = log_p.gather(-1, target[:, None]).squeeze(-1)
        p = log_p.exp_()
        ctx.save_for_backward(p, target)
        ctx.set_materialize_grads(False)
        return log_p_y, total, p

    @staticmethod
    def backward(
        ctx: Any, g_a: Tensor | None, g_s: Tensor | None, g_p: Tensor | None
    ) -> tuple[Tensor | None, None]:
        p, target = ctx.saved_tensors
        differentiable = torch.is_grad_enabled()  # create_graph=True
        out = None
        if g_a is not None or g_s is not None:
            coef = torch.zeros_like(p[:, 0])
            if g_a is not None:
                coef = coef - g_a
            if g_s is not None:
                coef = coef - g_s * p.shape[-1]
            out = p * coef[:, None]
            if g_s is not None:
                out = out + g_s[:, None] if differentiable else out.add_(g_s[:, None])
            if g_a is not None:
                index = target[:, None]
                out = (
                    out.scatter_add(-1, index, g_a[:, None])
                    if differentiable
                    else out.scatter_add_(-1, index, g_a[:, None])
                )
        if g_p is not None:  # only under double backward: softmax's backward
            soft = p * (g_p - (g_p * p).sum(-1, keepdim=True))
            out = soft if out is None else out + soft
        return out, None


def log_p_target_and_sum(batch: ClassificationBatch) -> tuple[Tensor, Tensor]:
    """``(log p_y, Σ_k log p_k)`` per row ``[M]``: the parts of normalized CE."""
    if batch._log_probs is not None:  # a loss already paid for log_probs(): reuse its graph
        return batch.log_p_target(), batch._log_probs.sum(-1)
    log_p_y, total, _ = _LogPTargetAndSum.apply(batch.logits, batch.target)
    return log_p_y, total


def nce_rows(batch: ClassificationBatch) -> Tensor:
    log_p_y, total = log_p_target_and_sum(batch)
    return log_p_y / total  # (-log p_y) / (-Σ_k log p_k)


def normalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Normalized cross-entropy, $\ell = \dfrac{-\log p_y}{-\sum_k \log p_k} \in [0, 1]$.

    Symmetric: $\sum_j \ell(z, j) = 1$ for every $z$, the condition for robustness to
    symmetric label noise.

    Paper: *Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML
    2020 (arXiv:2006.13554).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        scale: multiplier $\ge 0$ (the `alpha` of APL).
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_cross_entropy
        >>> normalized_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # uniform -> 1/C
        tensor(0.2500)
    """
    hp = _check_normalized_ce_args(scale=scale, ignore_index=ignore_index)
    return robust_loss(
        nce_rows,
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
        scale=hp["scale"],
    )


@register_loss("normalized_ce", aliases=("normalized_cross_entropy",))
class NormalizedCrossEntropyLoss(Loss):
    r"""Normalized cross-entropy $\log p_y / \sum_k \log p_k$, a symmetric loss in $[0, 1]$.

    Registry name `normalized_ce` (formerly `nce`, a name left to noise-contrastive
    estimation). See
    [normalized_cross_entropy][lightning_losses.functional.normalized_cross_entropy].
    Paper: Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        scale: multiplier (default 1.0).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedCrossEntropyLoss
        >>> NormalizedCrossEntropyLoss()(torch.zeros(1, 5), torch.tensor([0]))
        tensor(0.2000)
    """

    functional = staticmethod(normalized_cross_entropy)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        scale: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_normalized_ce_args(scale=scale, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
