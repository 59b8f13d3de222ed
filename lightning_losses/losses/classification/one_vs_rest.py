r"""One-vs-the-rest loss: a binary logistic loss per class, summed over classes.

From *One-vs-the-Rest Loss to Focus on Important Samples in Adversarial Training*, Kanai et al.,
ICML 2023 (arXiv:2207.10283).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._classification import prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_reduction

__all__ = ["OneVsRestLoss", "one_vs_rest_loss"]


def _check_one_vs_rest_args(*, ignore_index: Any) -> dict[str, Any]:
    return {"ignore_index": check_ignore_index(ignore_index)}


def one_vs_rest_loss(
    input: Tensor,
    target: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""One-vs-the-rest loss: a binary logistic loss per class, summed over classes.

    $$
    \ell = \operatorname{softplus}(-z_y) + \sum_{k \ne y} \operatorname{softplus}(z_k)
    $$

    (= `binary_cross_entropy_with_logits(z, one_hot(y)).sum(1)`). The paper's switching
    variant (SOVR: OVR only on the samples with the smallest logit margin, CE on the rest) is
    not provided: its selection rule and ratio could not be pinned down from a public reference.

    Paper: *One-vs-the-Rest Loss to Focus on Important Samples in Adversarial Training*,
    Kanai et al., ICML 2023 (arXiv:2207.10283).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import one_vs_rest_loss
        >>> one_vs_rest_loss(torch.zeros(1, 3), torch.tensor([0]))  # 3 log 2
        tensor(2.0794)
    """
    check_reduction(reduction)
    hp = _check_one_vs_rest_args(ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    onehot = F.one_hot(batch.target, batch.num_classes).to(batch.logits.dtype)
    rows = F.binary_cross_entropy_with_logits(batch.logits, onehot, reduction="none").sum(-1)
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss("one_vs_rest", aliases=("ovr",))
class OneVsRestLoss(Loss):
    r"""One-vs-the-rest logistic loss summed over classes.

    See [one_vs_rest_loss][lightning_losses.functional.one_vs_rest_loss].

    Paper: *One-vs-the-Rest Loss to Focus on Important Samples in Adversarial Training*,
    Kanai et al., ICML 2023 (arXiv:2207.10283).

    Args:
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import OneVsRestLoss
        >>> OneVsRestLoss()(torch.zeros(2, 2), torch.tensor([0, 1]))  # 2 log 2
        tensor(1.3863)
    """

    functional = staticmethod(one_vs_rest_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self, ignore_index: int = -100, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_one_vs_rest_args(ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
