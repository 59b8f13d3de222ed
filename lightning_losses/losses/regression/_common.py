"""Input checks shared by the regression losses."""

from __future__ import annotations

from torch import Tensor

from lightning_losses.validation import check_same_shape, check_tensor


def check_pair(input: Tensor, target: Tensor, *, min_ndim: int = 1) -> None:
    """Floating `input` and `target` of the same shape with at least `min_ndim` dimensions."""
    check_tensor("input", input, floating=True)
    check_tensor("target", target, floating=True)
    check_same_shape("input", input, "target", target)
    if input.ndim < min_ndim:
        raise ValueError(
            f"input must have at least {min_ndim} dimension(s) [N, ...], got shape "
            f"{tuple(input.shape)}"
        )


def per_sample_mean(loss: Tensor) -> Tensor:
    """`[N, *]` -> `[N]`: the mean over every dimension but the first (`[N]` is kept)."""
    return loss.reshape(loss.shape[0], -1).mean(dim=1) if loss.ndim > 1 else loss
