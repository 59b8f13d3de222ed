r"""Pointwise binary cross-entropy on a positive and its sampled negatives (implicit feedback).

*Neural Collaborative Filtering*, He et al., WWW 2017 (arXiv:1708.05031): the log loss with
sampled negatives.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.ranking._scores import prepare_scores
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_reduction

__all__ = ["BinaryCrossEntropyRecLoss", "bce_rec_loss"]


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
    return reduce_loss(F.softplus(-pos) + F.softplus(neg).mean(1), reduction)


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
