r"""SimpleX cosine contrastive loss (CCL).

*SimpleX: A Simple and Strong Baseline for Collaborative Filtering*, Mao et al., CIKM 2021
(arXiv:2109.12613). Same formula as `CosineContrastiveLoss(margin, negative_weight)` of
reczoo/RecBox.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.ranking._scores import prepare_scores
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = ["CosineContrastiveLoss", "cosine_contrastive_loss"]


def _check_cosine_contrastive_args(*, margin: Any, negative_weight: Any) -> dict[str, Any]:
    # The one validator of cosine_contrastive_loss's hyperparameters (functional and class).
    return {
        "margin": check_number("margin", margin, low=-1.0, high=1.0),
        "negative_weight": None
        if negative_weight is None
        else check_number("negative_weight", negative_weight, low=0.0, low_inclusive=False),
    }


def cosine_contrastive_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    margin: float = 0.8,
    negative_weight: float | None = None,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""SimpleX cosine contrastive loss (CCL).

    $$
    \ell_{ui} = \max(0, 1 - \hat y_{ui}) + \frac{w}{K}\sum_{j=1}^{K}\max(0, \hat y_{uj} - m)
    $$

    or, with `negative_weight=None`, $\max(0, 1 - \hat y_{ui}) + \sum_{j=1}^{K}\max(0,
    \hat y_{uj} - m)$ (a sum over negatives, as RecBox does when no weight is given). Scores
    $\hat y$ are cosine similarities of user and item embeddings (not enforced). Same formula
    as `CosineContrastiveLoss(margin, negative_weight)` of reczoo/RecBox.

    Ranking losses take no class target, so they keep the recommendation names `pos_score` /
    `neg_score` instead of `input` / `target`.

    Paper: *SimpleX: A Simple and Strong Baseline for Collaborative Filtering*, Mao et al.,
    CIKM 2021 (arXiv:2109.12613).

    Args:
        pos_score: cosine scores of the observed items `[N]`.
        neg_score: cosine scores of the negatives `[N]` or `[N, K]`.
        margin: $m \in [-1, 1]$; negatives below it cost nothing (paper grid up to 0.9).
        negative_weight: $w > 0$ for a weighted mean over negatives; `None` sums them.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import cosine_contrastive_loss
        >>> pos, neg = torch.tensor([0.5]), torch.tensor([[0.9, 0.1]])
        >>> cosine_contrastive_loss(pos, neg, margin=0.8)
        tensor(0.6000)
        >>> cosine_contrastive_loss(pos, neg, margin=0.8, negative_weight=1.0)
        tensor(0.5500)
    """
    check_reduction(reduction)
    hp = _check_cosine_contrastive_args(margin=margin, negative_weight=negative_weight)
    pos, neg = prepare_scores(pos_score, neg_score)
    # In-place `relu_` on the fresh differences: one `[N, K]` allocation instead of two, the
    # same saved tensor (relu's backward needs only its output).
    pos_term = torch.rsub(pos, 1.0).relu_()
    neg_term = torch.sub(neg, hp["margin"]).relu_()
    if hp["negative_weight"] is None:
        neg_term = neg_term.sum(1)
    else:
        neg_term = neg_term.mean(1) * hp["negative_weight"]
    return reduce_loss(pos_term + neg_term, reduction)


@register_loss("cosine_contrastive", aliases=("ccl",))
class CosineContrastiveLoss(Loss):
    r"""SimpleX cosine contrastive loss: $[1-\hat y^+]_+ + w\,\mathrm{mean}_j[\hat y^-_j - m]_+$.

    See [cosine_contrastive_loss][lightning_losses.functional.cosine_contrastive_loss] for the
    formula (arXiv:2109.12613). `forward(pos_score, neg_score)`: no class target, so the
    arguments keep their recommendation names (`target_arg` is `None`).

    Args:
        margin: negative margin $m \in [-1, 1]$ (default 0.8; tune per dataset).
        negative_weight: weight of the mean over negatives; `None` sums them instead.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Shape:
        - pos_score: `[N]`; neg_score: `[N]` or `[N, K]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CosineContrastiveLoss
        >>> CosineContrastiveLoss(margin=0.8)(torch.tensor([0.5]), torch.tensor([[0.9, 0.1]]))
        tensor(0.6000)
        >>> CosineContrastiveLoss(margin=0.5, negative_weight=2.0)
        CosineContrastiveLoss(margin=0.5, negative_weight=2.0, reduction='mean')
    """

    functional = staticmethod(cosine_contrastive_loss)
    input_kind = InputKind.RANKING
    target_arg = None

    def __init__(
        self,
        margin: float = 0.8,
        negative_weight: float | None = None,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_cosine_contrastive_args(margin=margin, negative_weight=negative_weight),
        )

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        """Loss of positive scores `pos_score [N]` against negatives `neg_score [N, K]` or `[N]`."""
        return self._call_functional(pos_score, neg_score)
