r"""Squentropy: cross-entropy plus the mean square of the incorrect-class logits.

From *Cut your Losses with Squentropy*, Hui, Belkin & Wright, ICML 2023 (arXiv:2302.03952).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch, prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_reduction

__all__ = ["SquentropyLoss", "squentropy_loss"]


def _check_squentropy_args(*, ignore_index: Any) -> dict[str, Any]:
    return {"ignore_index": check_ignore_index(ignore_index)}


def _squentropy_rows(batch: ClassificationBatch) -> Tensor:
    c = batch.num_classes
    if c < 2:
        raise ValueError(f"input must have at least 2 classes for squentropy, got C={c}")
    z = batch.logits
    ce = -batch.log_p_target()
    # Zero the target entry instead of subtracting z_y² (no cancellation at large logits).
    square = z.square().scatter(-1, batch.target[:, None], 0.0).sum(-1) / (c - 1)
    return ce + square


def squentropy_loss(
    input: Tensor,
    target: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Squentropy: cross-entropy plus the mean square of the incorrect-class logits.

    $$
    \ell = -\log p_y + \frac{1}{C-1} \sum_{k \ne y} z_k^2
    $$

    The square term acts on the **raw logits** (target 0), not on probabilities; it keeps the
    logits bounded, which the paper links to better calibration. Parameter-free.

    Paper: *Cut your Losses with Squentropy*, Hui, Belkin & Wright, ICML 2023
    (arXiv:2302.03952).

    Args:
        input: logits `[N, C, *]` with `C ≥ 2`.
        target: class indices `[N, *]`.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import squentropy_loss
        >>> # wrong-class logits (1, -1): CE = log(1 + e^{-1} + e^{-3}) ≈ 0.3490, square = 1
        >>> squentropy_loss(torch.tensor([[2.0, 1.0, -1.0]]), torch.tensor([0]))
        tensor(1.3490)
    """
    check_reduction(reduction)
    hp = _check_squentropy_args(ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    rows = _squentropy_rows(batch)
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss("squentropy")
class SquentropyLoss(Loss):
    r"""Squentropy, $-\log p_y + \frac{1}{C-1}\sum_{k\ne y} z_k^2$.

    See [squentropy_loss][lightning_losses.functional.squentropy_loss].

    Paper: *Cut your Losses with Squentropy*, Hui, Belkin & Wright, ICML 2023
    (arXiv:2302.03952).

    Args:
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits with `C ≥ 2`; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SquentropyLoss
        >>> # CE = log 2 ≈ 0.6931, plus the square of the wrong-class logit 1.0
        >>> SquentropyLoss()(torch.tensor([[1.0, 1.0]]), torch.tensor([0]))
        tensor(1.6931)
    """

    functional = staticmethod(squentropy_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self, ignore_index: int = -100, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_squentropy_args(ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
