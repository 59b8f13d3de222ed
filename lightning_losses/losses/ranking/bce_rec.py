r"""Pointwise binary cross-entropy on a positive and its sampled negatives (implicit feedback).

*Neural Collaborative Filtering*, He et al., WWW 2017 (arXiv:1708.05031): the log loss with
sampled negatives.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import softplus_from_sigmoid
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.ranking._scores import prepare_scores
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_reduction

__all__ = ["BinaryCrossEntropyRecLoss", "bce_rec_loss"]


def _bce_rec_expr(pos: Tensor, neg: Tensor, reduction: str) -> Tensor:
    # The formula through autograd: the twice-differentiable path (create_graph=True).
    return reduce_loss(F.softplus(-pos) + F.softplus(neg).mean(1), reduction)


class _BCERec(torch.autograd.Function):
    r"""$\operatorname{softplus}(-s^+) + \frac1K\sum_j \operatorname{softplus}(s^-_j)$, fused.

    Each softplus comes from one sigmoid and one log (`softplus_from_sigmoid`; `F.softplus` and
    its backward each evaluate an `exp`, several times slower on CPU). Nothing but references
    to the inputs is saved: the backward recomputes the slopes $-\sigma(-s^+)$ and
    $\sigma(s^-)/K$, one sigmoid each. Under `create_graph=True` it differentiates the formula
    through autograd instead.
    """

    @staticmethod
    def forward(ctx: Any, pos: Tensor, neg: Tensor, reduction: str) -> Tensor:
        k = neg.shape[1]
        minus_pos = pos.neg()
        sp_pos = softplus_from_sigmoid(minus_pos, torch.sigmoid(minus_pos))
        sp_neg = softplus_from_sigmoid(neg, torch.sigmoid(neg))
        ctx.save_for_backward(pos, neg)
        ctx.reduction = reduction
        if reduction == "none":
            return sp_neg.sum(1).div_(k).add_(sp_pos)
        total = sp_pos.sum().add_(sp_neg.sum(), alpha=1.0 / k)
        return total.div_(max(pos.shape[0], 1)) if reduction == "mean" else total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        pos, neg = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            with torch.enable_grad():
                out = _bce_rec_expr(pos, neg, ctx.reduction)
            wrt = [x for x, need in zip((pos, neg), ctx.needs_input_grad[:2]) if need]
            got = iter(torch.autograd.grad(out, wrt, grad, create_graph=True))
            g_pos, g_neg = (next(got) if need else None for need in ctx.needs_input_grad[:2])
            return g_pos, g_neg, None
        if ctx.reduction == "mean":
            grad = grad / max(pos.shape[0], 1)
        g_pos = g_neg = None
        if ctx.needs_input_grad[0]:  # d softplus(-s) / ds = -σ(-s)
            g_pos = torch.sigmoid(pos.neg()).mul_(grad).neg_()
        if ctx.needs_input_grad[1]:
            g_row = grad[:, None] if ctx.reduction == "none" else grad
            g_neg = torch.sigmoid(neg).mul_(g_row / neg.shape[1])
        return g_pos, g_neg, None


def bce_rec_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Pointwise binary cross-entropy on a positive and its sampled negatives (logit scores).

    $$
    \ell_{ui} = -\log\sigma(s_{ui}) - \frac{1}{K}\sum_{j=1}^{K}\log(1 - \sigma(s_{uj}))
    = \operatorname{softplus}(-s_{ui}) + \frac{1}{K}\sum_j \operatorname{softplus}(s_{uj})
    $$

    The negative term is averaged (not summed) so the loss scale does not grow with `K`.

    Ranking losses take no class target (the positive's label is 1, the negatives' 0), so they
    keep the recommendation names `pos_score` / `neg_score` instead of `input` / `target`.

    Paper: *Neural Collaborative Filtering*, He et al., WWW 2017 (arXiv:1708.05031), log loss
    with sampled negatives.

    Args:
        pos_score: logits of the observed items `[N]`.
        neg_score: logits of the negatives `[N]` or `[N, K]`.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import bce_rec_loss
        >>> bce_rec_loss(torch.tensor([1.0]), torch.tensor([[-1.0, 0.0]]))
        tensor(0.8165)
    """
    check_reduction(reduction)
    pos, neg = prepare_scores(pos_score, neg_score)
    return _BCERec.apply(pos, neg, reduction)


@register_loss("bce_rec", aliases=("binary_cross_entropy_rec",))
class BinaryCrossEntropyRecLoss(Loss):
    r"""Pointwise BCE, $\mathrm{softplus}(-s^+) + \mathrm{mean}_j\,\mathrm{softplus}(s^-_j)$.

    See [bce_rec_loss][lightning_losses.functional.bce_rec_loss] for the formula
    (arXiv:1708.05031). `forward(pos_score, neg_score)`: no class target, so the arguments keep
    their recommendation names (`target_arg` is `None`).

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Shape:
        - pos_score: `[N]`; neg_score: `[N]` or `[N, K]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import BinaryCrossEntropyRecLoss
        >>> BinaryCrossEntropyRecLoss()(torch.tensor([1.0]), torch.tensor([[-1.0, 0.0]]))
        tensor(0.8165)
    """

    functional = staticmethod(bce_rec_loss)
    input_kind = InputKind.RANKING
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        """Loss of positive scores `pos_score [N]` against negatives `neg_score [N, K]` or `[N]`."""
        return self._call_functional(pos_score, neg_score)
