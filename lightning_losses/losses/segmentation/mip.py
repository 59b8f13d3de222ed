r"""Maximum-intensity-projection loss: a focal Tversky loss on the 2-D projections of a volume.

From *SPOCKMIP: Segmentation of Vessels in MRAs with Enhanced Continuity using Maximum Intensity
Projection as Loss* (Radhakrishna et al., 2024, arXiv:2407.08655).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_number,
    check_probability_target,
    check_reduction,
    check_tensor,
)

__all__ = ["MaxIntensityProjectionLoss", "max_intensity_projection_loss"]

# The focal term (1 - T)^γ with γ < 1 has an infinite slope at T = 1 (a perfect projection):
# clamping 1 - T here keeps the gradient finite and changes the value by at most 1e-12^γ.
_TINY = 1e-12


def _check_axes(axes: Any) -> tuple[int, ...]:
    if isinstance(axes, int) and not isinstance(axes, bool):
        axes = (axes,)
    if not isinstance(axes, Sequence) or isinstance(axes, str) or not axes:
        raise TypeError(f"axes must be a non-empty tuple of spatial axes, got {axes!r}")
    out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, int) or not -3 <= a <= -1:
            raise ValueError(
                f"axes must hold spatial axes -3, -2 or -1 of [N, C, D, H, W], got {a!r}"
            )
        out.append(a)
    if len(set(out)) != len(out):
        raise ValueError(f"axes must not repeat an axis, got {tuple(axes)}")
    return tuple(out)


def _check_mip_args(*, axes: Any, alpha: Any, gamma: Any, smooth: Any) -> dict[str, Any]:
    return {
        "axes": _check_axes(axes),
        "alpha": check_number("alpha", alpha, low=0.0, high=1.0),
        "gamma": check_number("gamma", gamma, low=0.0, low_inclusive=False),
        "smooth": check_number("smooth", smooth, low=0.0),
    }


def max_intensity_projection_loss(
    input: Tensor,
    target: Tensor,
    *,
    axes: tuple[int, ...] = (-1,),
    alpha: float = 0.7,
    gamma: float = 0.75,
    smooth: float = 1.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""MIP loss: focal Tversky loss between maximum-intensity projections of a 3-D volume.

    With $p = \sigma(x)$ and $g$ the binary label, for each projection axis $a$ the projections
    $P = \max_a p$ and $Q = \max_a g$ are compared over the whole projected image of sample $n$:

    $$
    T_a = \frac{\sum P Q + s}{\sum P Q + \alpha \sum (1 - P) Q + (1 - \alpha) \sum P (1 - Q) + s},
    \qquad
    \ell_n = \sum_{a \in \text{axes}} \left(1 - T_a\right)^{\gamma}
    $$

    `alpha` weights the false negatives. A thin vessel that the volume loss barely sees (a few
    voxels) is a long line in a projection, so the term rewards continuity. It is the
    *additional* loss of the paper: train on `volume_loss + λ · this`.

    **Verified against the authors' code** (`soumickmj/SPOCKMIP`: `FocalTverskyLoss` of
    `Evaluation/evaluate.py` applied in `pipeline.py` to `torch.amax` of the sigmoid output along
    one axis, or the sum over the three axes for `"multi"`, averaged over the batch). The
    defaults are that class's defaults. Differences: the authors' label projection is a patch of
    the projection of the *whole* labelled volume (patch-based training); here it is the
    projection of the `target` given, which is the same when the input is the whole volume;
    their batch sum starts from a constant 0.001, left out here; `1 - T` is clamped at 1e-12
    so the gradient stays finite at a perfect projection (their `abs` gives an infinite slope
    there).

    Paper: *SPOCKMIP: Segmentation of Vessels in MRAs with Enhanced Continuity using Maximum
    Intensity Projection as Loss*, Radhakrishna et al., 2024 (arXiv:2407.08655).

    Args:
        input: logits `[N, C, D, H, W]` (binary / multi-label, one sigmoid per channel).
        target: binary labels `[N, C, D, H, W]` in $[0, 1]$, or `[N, D, H, W]` when `C == 1`.
        axes: spatial axes to project along, from `-3, -2, -1` (the authors' single axis is
            `-1`; their `"multi"` is `(-3, -2, -1)`).
        alpha: weight of the false negatives in $[0, 1]$ (false positives get `1 - alpha`).
        gamma: focal exponent (> 0).
        smooth: smoothing $s$ (≥ 0).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: check that `target` lies in $[0, 1]$ (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import max_intensity_projection_loss
        >>> target = torch.zeros(1, 1, 4, 4, 4)
        >>> target[0, 0, 1, 2, :] = 1  # a vessel along the last axis
        >>> logits = 20 * (2 * target - 1)  # confident and right
        >>> max_intensity_projection_loss(logits, target, axes=(-3, -2, -1)) < 1e-3
        tensor(True)
    """
    check_reduction(reduction)
    hp = _check_mip_args(axes=axes, alpha=alpha, gamma=gamma, smooth=smooth)
    check_tensor("input", input, floating=True)
    check_tensor("target", target)
    if input.ndim != 5:
        raise ValueError(f"input must have shape [N, C, D, H, W], got {tuple(input.shape)}")
    if target.ndim == 4 and input.shape[1] == 1:
        target = target[:, None]
    if target.shape != input.shape:
        raise ValueError(
            f"target must have the shape of input {tuple(input.shape)} (or [N, D, H, W] for "
            f"one channel), got {tuple(target.shape)}"
        )
    check_probability_target("target", target, validate_args=validate_args)
    p = torch.sigmoid(upcast(input))
    g = target.to(p.dtype)
    a, s = hp["alpha"], hp["smooth"]
    total = p.new_zeros(p.shape[0])
    for axis in hp["axes"]:
        pp = p.amax(axis).flatten(1)
        gg = g.amax(axis).flatten(1)
        tp = (pp * gg).sum(1)
        fn = ((1 - pp) * gg).sum(1)
        fp = (pp * (1 - gg)).sum(1)
        t = (tp + s) / (tp + a * fn + (1 - a) * fp + s)
        total = total + (1 - t).clamp_min(_TINY).pow(hp["gamma"])
    return reduce_loss(total, reduction)


@register_loss("max_intensity_projection", aliases=("mip", "max_intensity_projection_loss"))
class MaxIntensityProjectionLoss(Loss):
    r"""SPOCKMIP's MIP loss: focal Tversky loss on maximum-intensity projections of a volume.

    See [max_intensity_projection_loss][lightning_losses.functional.max_intensity_projection_loss]
    for the formula and how it follows the authors' code.

    Paper: *SPOCKMIP: Segmentation of Vessels in MRAs with Enhanced Continuity using Maximum
    Intensity Projection as Loss*, Radhakrishna et al., 2024 (arXiv:2407.08655).

    Args:
        axes: spatial axes to project along (`(-1,)`, or `(-3, -2, -1)` for all three).
        alpha: weight of the false negatives in $[0, 1]$.
        gamma: focal exponent (> 0).
        smooth: smoothing (≥ 0).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that `target` lies in $[0, 1]$ on every call.

    Shape:
        - input: `[N, C, D, H, W]` logits; target: the same shape (or `[N, D, H, W]`), binary.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MaxIntensityProjectionLoss
        >>> loss = MaxIntensityProjectionLoss(axes=(-3, -2, -1))
        >>> loss(torch.zeros(2, 1, 4, 4, 4), torch.ones(2, 1, 4, 4, 4)).shape
        torch.Size([])
    """

    functional = staticmethod(max_intensity_projection_loss)
    input_kind = InputKind.DENSE
    target_arg = None

    def __init__(
        self,
        axes: tuple[int, ...] = (-1,),
        alpha: float = 0.7,
        gamma: float = 0.75,
        smooth: float = 1.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_mip_args(axes=axes, alpha=alpha, gamma=gamma, smooth=smooth),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, D, H, W]` against binary `target [N, C, D, H, W]`."""
        return self._call_functional(input, target)
