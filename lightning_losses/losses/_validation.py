"""Argument checks shared by every loss: clear errors naming the argument, never a deep torch crash."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a finite real number inside the given bounds and return it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        bound = "≥" if low_inclusive else ">"
        raise ValueError(f"{name} must be {bound} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        bound = "≤" if high_inclusive else "<"
        raise ValueError(f"{name} must be {bound} {high}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_tensor(name: str, value: Any, *, floating: bool | None = None) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex()):
        raise TypeError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    return value


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_b} must have the same shape as {name_a}: "
            f"expected {tuple(a.shape)}, got {tuple(b.shape)}"
        )


def upcast(x: Tensor) -> Tensor:
    """Half/bf16 -> float32 for the loss math; float32/float64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def check_class_weight(weight: Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    if weight is None:
        return None
    check_tensor("weight", weight, floating=True)
    if weight.shape != (num_classes,):
        raise ValueError(
            f"weight must have shape [C] = ({num_classes},), got {tuple(weight.shape)}"
        )
    return weight.to(device=like.device, dtype=like.dtype)


@dataclass
class ClassificationBatch:
    """Logits and targets flattened to ``[M, C]`` / ``[M]`` with the class dimension last.

    ``target`` holds safe indices (ignored positions, and every row of soft targets, are 0) so
    every row is finite;
    ``valid`` marks the rows that count. ``soft`` holds ``[M, C]`` soft targets when given.
    ``out_shape`` is the shape of a ``reduction="none"`` result (``[N, *]``).
    """

    logits: Tensor
    target: Tensor
    valid: Tensor
    soft: Tensor | None
    out_shape: torch.Size
    num_classes: int

    def at_target(self, values: Tensor) -> Tensor:
        """Each row's entry at its target class: ``[M, C] -> [M]`` (e.g. ``log p_y``)."""
        return values.gather(-1, self.target[:, None]).squeeze(-1)


def prepare_classification(
    input: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None = -100,
    allow_soft: bool = True,
    input_name: str = "input",
    target_name: str = "target",
) -> ClassificationBatch:
    """Validate ``[N, C, *]`` logits against class indices ``[N, *]`` or soft targets ``[N, C, *]``."""
    check_tensor(input_name, input, floating=True)
    check_tensor(target_name, target)
    if input.ndim < 2:
        raise ValueError(
            f"{input_name} must have shape [N, C, *] (logits), got {tuple(input.shape)}"
        )
    num_classes = input.shape[1]
    if num_classes < 1:
        raise ValueError(
            f"{input_name} must have at least one class, got shape {tuple(input.shape)}"
        )
    logits = upcast(input).movedim(1, -1).reshape(-1, num_classes)
    out_shape = torch.Size((input.shape[0], *input.shape[2:]))

    if target.is_floating_point():
        if not allow_soft:
            raise TypeError(
                f"{target_name} must hold integer class indices for this loss, got dtype {target.dtype}"
            )
        if target.shape != input.shape:
            raise ValueError(
                f"soft {target_name} must have the same shape as {input_name} "
                f"{tuple(input.shape)}, got {tuple(target.shape)}"
            )
        soft = target.to(logits.dtype).movedim(1, -1).reshape(-1, num_classes)
        valid = torch.ones(soft.shape[0], dtype=torch.bool, device=logits.device)
        # No class index exists for soft rows; zeros keep indexing safe (losses use ``soft``).
        idx = torch.zeros(soft.shape[0], dtype=torch.long, device=logits.device)
        return ClassificationBatch(logits, idx, valid, soft, out_shape, num_classes)

    if target.shape != out_shape:
        raise ValueError(
            f"{target_name} must have shape [N, *] = {tuple(out_shape)} to match {input_name} "
            f"{tuple(input.shape)}, got {tuple(target.shape)}"
        )
    flat = target.reshape(-1).long()
    valid = (
        flat != ignore_index
        if ignore_index is not None
        else torch.ones_like(flat, dtype=torch.bool)
    )
    # One host sync per call: `bad` is all False when nothing is valid, so no separate check.
    bad = valid & ((flat < 0) | (flat >= num_classes))
    if bad.any():
        value = int(flat[bad][0])
        raise ValueError(
            f"{target_name} contains class index {value} outside [0, {num_classes})"
            + (f" (ignore_index={ignore_index})" if ignore_index is not None else "")
        )
    safe = torch.where(valid, flat, torch.zeros_like(flat))
    return ClassificationBatch(logits, safe, valid, None, out_shape, num_classes)
