r"""Encouraging loss: cross-entropy plus a bonus for well-classified examples.

From *Well-classified Examples are Underestimated in Classification with Deep Neural Networks*,
Zhao et al., AAAI 2022 (arXiv:2110.06537). The official code
(`lancopku/well-classified-examples-are-underestimated`, `EncouragingLoss.py`) pins the details
followed here: the bonus is `log(max(1 - p, 1e-5))`, replaced above `log_end` by its tangent line
(the conservative bonus), with class weights as in `nll_loss`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch, prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_class_weight,
    check_ignore_index,
    check_number,
    check_reduction,
    check_weight_arg,
)

__all__ = ["EncouragingLoss", "encouraging_loss"]

ENCOURAGING_BONUS_FLOOR = 1e-5  # official code: log(clamp(1 - p, min=1e-5))


def _check_encouraging_args(*, log_end: Any, weight: Any, ignore_index: Any) -> dict[str, Any]:
    return {
        "log_end": check_number("log_end", log_end, low=0.0, high=1.0, low_inclusive=False),
        "weight": check_weight_arg(weight),
        "ignore_index": check_ignore_index(ignore_index),
    }


def _encouraging_rows(batch: ClassificationBatch, log_end: float) -> Tensor:
    log_p_y = batch.log_p_target()
    one_minus_p = -torch.expm1(log_p_y)
    bonus = one_minus_p.clamp_min(ENCOURAGING_BONUS_FLOOR).log()
    if log_end < 1.0:
        p_y = log_p_y.exp()
        tangent = (p_y - log_end) / (log_end - 1.0) + math.log(1.0 - log_end)
        bonus = torch.where(p_y > log_end, tangent, bonus)
    return -log_p_y + bonus


def encouraging_loss(
    input: Tensor,
    target: Tensor,
    *,
    log_end: float = 0.75,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Encouraging loss: cross-entropy plus a bonus that rewards well-classified examples.

    $$
    \ell = -\log p_y + b(p_y),\qquad
    b(p) = \begin{cases} \log\max(1 - p,\ 10^{-5}) & p \le e \\
    \dfrac{p - e}{e - 1} + \log(1 - e) & p > e \end{cases}
    $$

    with $e$ = `log_end`: above it the log bonus is replaced by its tangent line (the official
    "conservative bonus"); `log_end=1` keeps the full (clamped) log bonus. The bonus is ≤ 0, so
    the loss never exceeds cross-entropy, and its gradient keeps growing for confident correct
    predictions instead of vanishing as CE's does. Class weights and the `"mean"` over the
    summed weight follow `torch.nn.functional.nll_loss`, as the official code.

    Paper: *Well-classified Examples are Underestimated in Classification with Deep Neural
    Networks*, Zhao et al., AAAI 2022 (arXiv:2110.06537).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        log_end: $e \in (0, 1]$ (default 0.75, official; the paper reports 0.5 as a setting that
            works everywhere).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range and finiteness of `weight` (host syncs).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import encouraging_loss
        >>> # p_y = 1/2 ≤ 0.75: -log(1/2) + log(1/2) = 0
        >>> encouraging_loss(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.)
    """
    check_reduction(reduction)
    hp = _check_encouraging_args(log_end=log_end, weight=weight, ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    w = check_class_weight(
        hp["weight"], batch.num_classes, batch.logits, validate_args=validate_args
    )
    rows = _encouraging_rows(batch, hp["log_end"])
    row_w = None
    if w is not None:
        row_w = w[batch.target]
        rows = rows * row_w
    return reduce_loss(rows, reduction, valid=batch.valid, weight=row_w, out_shape=batch.out_shape)


@register_loss("encouraging", aliases=("encouraging_loss",))
class EncouragingLoss(Loss):
    r"""Encouraging loss: cross-entropy plus a conservative log bonus for well-classified examples.

    See [encouraging_loss][lightning_losses.functional.encouraging_loss].

    Paper: *Well-classified Examples are Underestimated in Classification with Deep Neural
    Networks*, Zhao et al., AAAI 2022 (arXiv:2110.06537).

    Args:
        log_end: where the log bonus turns into its tangent line, in `(0, 1]` (default 0.75).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import EncouragingLoss
        >>> # p_y = 0.9 > 0.75: -log 0.9 + (0.9 - 0.75) / (0.75 - 1) + log 0.25
        >>> logits = torch.tensor([[0.0, torch.log(torch.tensor(1 / 9)).item()]])
        >>> EncouragingLoss()(logits, torch.tensor([0]))
        tensor(-1.8809)
    """

    functional = staticmethod(encouraging_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        log_end: float = 0.75,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_encouraging_args(log_end=log_end, weight=weight, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
