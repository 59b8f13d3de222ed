"""Plumbing shared by the label-noise-robust losses: validate, compute rows, reduce."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch, prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.validation import check_number, check_reduction

# The official APL/SCE code clamps the one-hot target to [1e-4, 1]: log 0 becomes log 1e-4.
DEFAULT_LOG_ZERO = math.log(1e-4)


def check_log_zero(log_zero: Any) -> float:
    """RCE's $A$, the log of the clamped zero entries of the one-hot target: finite, $< 0$."""
    return check_number("log_zero", log_zero, high=0.0, high_inclusive=False)


def check_scale(scale: Any, name: str = "scale") -> float:
    return check_number(name, scale, low=0.0)


def robust_loss(
    rows_fn: Callable[[ClassificationBatch], Tensor],
    input: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None,
    reduction: str,
    validate_args: bool,
    scale: float = 1.0,
) -> Tensor:
    """Validate `[N, C, *]` logits and class indices, compute `rows_fn(batch)` `[M]`, reduce."""
    check_reduction(reduction)
    batch = prepare_classification(
        input, target, ignore_index=ignore_index, allow_soft=False, validate_args=validate_args
    )
    rows = rows_fn(batch)
    if scale != 1.0:
        rows = rows * scale
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)
