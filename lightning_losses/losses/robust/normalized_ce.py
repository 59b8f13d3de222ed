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
    """``(log p_y, Σ_k log p_k, log p)`` from one ``log_softmax``, with a fused backward.

    The gradient w.r.t. the log-probabilities is ``G = g_s + g_a e_y`` (one constant per row
    plus the target entry), so the gradient w.r.t. the logits is log-softmax's own fused
    backward ``G - p Σ_k G_k`` on it: one ``[M, C]`` fill and one fused pass. Through autograd,
    ``gather`` + ``sum`` of ``log_softmax`` add a dense zero gradient, a scatter and the sum of
    two gradients; a stand-alone ``exp`` for ``p`` (several times slower on CPU than the fused
    kernels) is never needed. Only ``log p`` is saved. It is also an output, so under
    ``create_graph=True`` the backward is made of differentiable ops on it.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_p = logits.log_softmax(-1)
        total = log_p.sum(-1)
        log_p_y = log_p.gather(-1, target[:, None]).squeeze(-1)
        ctx.save_for_backward(log_p, target)
        ctx.set_materialize_grads(False)
        return log_p_y, total, log_p

    @staticmethod
    def backward(
        ctx: Any, g_a: Tensor | None, g_s: Tensor | None, g_lp: Tensor | None
    ) -> tuple[Tensor | None, None]:
        log_p, target = ctx.saved_tensors
        index = target[:, None]
        if torch.is_grad_enabled():  # create_graph=True: differentiable ops on the output log_p
            grad = torch.zeros_like(log_p) if g_lp is None else g_lp
            if g_s is not None:
                grad = grad + g_s[:, None]
            if g_a is not None:
                grad = grad.scatter_add(-1, index, g_a[:, None])
            p = log_p.exp()
            return grad - p * grad.sum(-1, keepdim=True), None
        if g_a is None and g_s is None and g_lp is None:
            return None, None
        if g_lp is not None:  # only when the log-probabilities output itself is used
            grad = g_lp.clone()
            if g_s is not None:
                grad.add_(g_s[:, None])
        elif g_s is not None:
            grad = g_s[:, None].expand_as(log_p).contiguous()
        else:
            grad = torch.zeros_like(log_p)
        if g_a is not None:
            grad.scatter_add_(-1, index, g_a[:, None])
        return torch._log_softmax_backward_data(grad, log_p, -1, log_p.dtype), None


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
