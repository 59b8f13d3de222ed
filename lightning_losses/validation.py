"""Argument checks shared by the whole package: clear errors naming the argument.

Every public constructor and functional of `lightning_losses` (losses, models, data modules,
callbacks) validates its arguments with these checkers, so the same mistake gets the same message
everywhere: a `TypeError` for the wrong type, a `ValueError` naming the argument, the expected and
the received value for a wrong value or shape. Checks that need a host-device sync (label range,
target values, finiteness) are the ones a loss skips when `validate_args=False`.

Example:
    >>> from lightning_losses.validation import check_number
    >>> check_number("temperature", 0.1, low=0.0, low_inclusive=False)
    0.1
    >>> check_number("temperature", 0.0, low=0.0, low_inclusive=False)
    Traceback (most recent call last):
    ...
    ValueError: temperature must be > 0.0, got 0.0
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "check_bool",
    "check_choice",
    "check_class_indices",
    "check_class_weight",
    "check_finite_tensor",
    "check_ignore_index",
    "check_int",
    "check_number",
    "check_probability_target",
    "check_reduction",
    "check_same_shape",
    "check_tensor",
    "check_weight_arg",
]

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
    """Check that ``value`` is a finite real number inside the given bounds and return it.

    Under `torch.compile` the value is returned unchecked: after a recompile with another value
    dynamo traces a float as a symbol, which `math.isfinite` cannot take (a graph break).
    Hyperparameters are checked eagerly when a loss module is built.
    """
    if torch.compiler.is_compiling():
        return value
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


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an int (not a bool, not a float such as 1.5) inside the bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if low is not None and value < low:
        raise ValueError(f"{name} must be ≥ {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be ≤ {high}, got {value}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Check that ``value`` is a real bool: the string ``"False"`` or the int 1 are rejected."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be a bool (True or False), got {type(value).__name__} ({value!r})"
        )
    return value


def check_ignore_index(value: Any, name: str = "ignore_index") -> int | None:
    """``ignore_index`` is an int (or ``None`` where a loss allows no ignoring)."""
    return None if value is None else check_int(name, value)


def check_finite_tensor(name: str, value: Tensor) -> Tensor:
    """Reject a floating tensor argument (class ``weight``, priors, ...) holding NaN or inf."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        shown = value.tolist() if value.numel() <= 8 else "non-finite entries"
        raise ValueError(f"{name} must be finite, got {shown}")
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


def check_weight_arg(weight: Any, name: str = "weight") -> Tensor | None:
    """A per-class weight: `None` or a 1-D floating tensor `[C]` (type and shape only, no sync).

    Finiteness is checked where it costs nothing extra: once at construction (the `Loss` base
    checks every tensor hyperparameter) and per call by `check_class_weight` when
    `validate_args` is on.
    """
    if weight is None:
        return None
    check_tensor(name, weight, floating=True)
    if weight.ndim != 1:
        raise ValueError(f"{name} must be a 1-D [C] tensor, got shape {tuple(weight.shape)}")
    return weight


def check_class_weight(
    weight: Tensor | None,
    num_classes: int,
    like: Tensor,
    *,
    validate_args: bool = True,
    name: str = "weight",
) -> Tensor | None:
    """A per-class ``[C]`` floating tensor (finite when ``validate_args``), cast like ``like``."""
    weight = check_weight_arg(weight, name)
    if weight is None:
        return None
    if weight.shape != (num_classes,):
        raise ValueError(
            f"{name} must have shape [C] = ({num_classes},), got {tuple(weight.shape)}"
        )
    if validate_args:
        check_finite_tensor(name, weight)
    return weight.to(device=like.device, dtype=like.dtype)


def check_probability_target(name: str, target: Tensor, *, validate_args: bool = True) -> None:
    """Binary / probability targets of sigmoid losses must lie in ``[0, 1]`` (one host sync)."""
    if not validate_args or not target.numel() or target.dtype == torch.bool:
        return
    # One read-only pass (min and max propagate NaN, which then fails both comparisons) instead
    # of four element-wise passes with boolean temporaries; the offending value only on failure.
    low, high = torch.aminmax(target)
    if not bool((low >= 0) & (high <= 1)):
        outside = ~((target >= 0) & (target <= 1))  # NaN counts as outside
        bad = target[outside][0].item()
        raise ValueError(f"{name} must hold probabilities in [0, 1], got a value {bad}")


def check_class_indices(
    target: Tensor,
    num_classes: int,
    *,
    ignore_index: int | None,
    name: str = "target",
    what: str = "class index",
    validate_args: bool = True,
) -> tuple[Tensor, Tensor, bool]:
    """Check class indices against `[0, num_classes)`, `ignore_index` entries excepted.

    Args:
        target: integer class indices of any shape (flattened here).
        num_classes: the number of classes (vocabulary size, number of centres, ...).
        ignore_index: the value of entries that do not count (`None`: every entry counts).
        name: the argument name used in the error message.
        what: what one entry is called in the error message (`"class index"`, `"token id"`).
        validate_args: run the range check (one host sync); off, out-of-range entries are
            neither reported nor counted as valid.

    Returns:
        `(safe, valid, any_ignored)`: flat `[M]` indices with every invalid entry replaced by 0
        (safe to gather with), the flat `[M]` mask of counted entries, and whether any entry is
        ignored (with `validate_args` off: whether `ignore_index` is set at all).

    Raises:
        ValueError: a counted entry outside `[0, num_classes)`, naming `name` and the value.
    """
    flat = target.reshape(-1).long()
    valid = (
        flat != ignore_index
        if ignore_index is not None
        else torch.ones_like(flat, dtype=torch.bool)
    )
    bad = valid & ((flat < 0) | (flat >= num_classes))
    any_ignored = ignore_index is not None
    if validate_args:
        # One host sync for both facts: an out-of-range label, and whether any row is ignored.
        any_bad, any_ignored = torch.stack([bad.any(), (~valid).any()]).tolist()
    else:
        any_bad = False
    if any_bad:
        value = int(flat[bad][0])
        raise ValueError(
            f"{name} contains {what} {value} outside [0, {num_classes})"
            + (f" (ignore_index={ignore_index})" if ignore_index is not None else "")
        )
    return torch.where(valid & ~bad, flat, torch.zeros_like(flat)), valid, any_ignored
