r"""Deep supervision: one loss applied to every output head of a network, weighted per level.

From *Deeply-Supervised Nets* (Lee et al., AISTATS 2015, arXiv:1409.5185); weights and target
downsampling as in `monai.losses.DeepSupervisionLoss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import get_loss, register_loss
from lightning_losses.validation import check_choice, check_number, check_reduction, check_tensor

__all__ = ["DeepSupervisionLoss", "deep_supervision_loss", "deep_supervision_weights"]

WEIGHT_MODES = ("same", "exp", "two")


def _check_weights(weights: Any) -> tuple[float, ...] | None:
    if weights is None:
        return None
    if isinstance(weights, Tensor):
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or not weights:
        raise TypeError(f"weights must be a non-empty sequence of numbers, got {weights!r}")
    return tuple(check_number(f"weights[{i}]", w, low=0.0) for i, w in enumerate(weights))


def _check_inner(loss: Any) -> Loss:
    if isinstance(loss, str):
        try:
            loss = get_loss(loss)
        except KeyError as err:
            raise ValueError(f"loss must name a registered loss, got {loss!r}: {err}") from None
    if not isinstance(loss, Loss) or isinstance(loss, DeepSupervisionLoss):
        raise TypeError(
            f"loss must be a lightning_losses Loss (or its registry name), got "
            f"{type(loss).__name__}"
        )
    if type(loss).functional is None:
        raise TypeError(f"loss must have a functional form, got {type(loss).__name__}")
    return loss


def _check_ds_args(*, loss: Any, weight_mode: Any, weights: Any) -> dict[str, Any]:
    return {
        "loss": _check_inner(loss),
        "weight_mode": check_choice("weight_mode", weight_mode, WEIGHT_MODES),
        "weights": _check_weights(weights),
    }


def deep_supervision_weights(
    levels: int, weight_mode: str = "exp", weights: Sequence[float] | None = None
) -> list[float]:
    """The weight of each level, level 0 (the full-resolution output) first: MONAI's rule.

    `weights` is used when it has at least `levels` entries (its first `levels`); otherwise
    `weight_mode`: `"same"` 1, 1, 1, ...; `"exp"` `max(0.5**l, 0.0625)`: 1, 0.5, 0.25, 0.125,
    0.0625, 0.0625, ...; `"two"` 1, 0.5, 0.5, ....

    Example:
        >>> from lightning_losses.functional import deep_supervision_weights
        >>> deep_supervision_weights(6, "exp")
        [1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625]
    """
    levels = max(1, levels)
    if weights is not None and len(weights) >= levels:
        return [float(w) for w in weights[:levels]]
    if weight_mode == "same":
        return [1.0] * levels
    if weight_mode == "two":
        return [1.0 if level == 0 else 0.5 for level in range(levels)]
    return [max(0.5**level, 0.0625) for level in range(levels)]


def _resize_target(target: Tensor, input: Tensor) -> Tensor:
    """Nearest-neighbour ("nearest-exact", MONAI's mode) resize of the target to the head's size."""
    size = tuple(input.shape[2:])
    indices = target.ndim == input.ndim - 1
    spatial = tuple(target.shape[1:]) if indices else tuple(target.shape[2:])
    if spatial == size:
        return target
    t = target[:, None] if indices else target
    # Indices interpolate exactly in float64 (nearest copies values, it never mixes them).
    out = F.interpolate(t.to(torch.float64), size=size, mode="nearest-exact")
    out = out.to(target.dtype)
    return out[:, 0] if indices else out


def deep_supervision_loss(
    input: Tensor | Sequence[Tensor],
    target: Tensor,
    *,
    loss: Loss | str = "dice",
    weight_mode: str = "exp",
    weights: Sequence[float] | None = None,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Weighted sum of one loss over the heads of a deeply supervised network.

    $$
    \mathcal{L} = \sum_{l=0}^{L-1} w_l\,\ell\big(\hat y_l,\ \mathrm{resize}(y, \hat y_l)\big)
    $$

    Head 0 is the full-resolution output; the target is resized to each head's spatial size by
    nearest-neighbour interpolation (`"nearest-exact"`, so class indices stay class indices).
    Weights as in [deep_supervision_weights][lightning_losses.functional.deep_supervision_weights].
    The inner loss is called with this function's `reduction` (and `validate_args`), so
    `reduction="none"` gives the weighted sum of the per-sample values, `[N]` for the dense
    losses. A single tensor is the single-head case: the inner loss with weight 1.

    **MONAI parity.** Same value and gradient as `monai.losses.DeepSupervisionLoss(loss,
    weight_mode, weights)` with the same inner loss (MONAI casts every head to float32).
    **nnU-Net differs**: it uses weights $1/2^l$ with the lowest-resolution head's weight set to
    0 and the weights normalised to sum to 1; pass those as `weights` to reproduce it (the sum
    to 1 only rescales the loss, which matters for the learning rate). The Deeply-Supervised
    Nets paper also decays the companion weights during training; here a schedule is up to the
    caller (change `weights`).

    Paper: *Deeply-Supervised Nets*, Lee et al., AISTATS 2015 (arXiv:1409.5185).

    Args:
        input: logits of one head `[N, C, *]`, or a list of heads, full resolution first.
        target: the full-resolution target (class indices `[N, *]` / `[N, 1, *]`, or `[N, C, *]`).
        loss: the inner loss (a `lightning_losses` loss or its registry name).
        weight_mode: `"same" | "exp" | "two"` when `weights` is not given (or too short).
        weights: explicit per-level weights (≥ 0).
        reduction: `"mean" | "sum" | "none"`, passed to the inner loss.
        validate_args: passed to the inner loss.

    Returns:
        The weighted sum of the inner loss over the heads.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import deep_supervision_loss
        >>> heads = [torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4)]
        >>> target = torch.randint(0, 3, (2, 8, 8))
        >>> deep_supervision_loss(heads, target, loss="dice_ce", weight_mode="two").shape
        torch.Size([])
    """
    check_reduction(reduction)
    hp = _check_ds_args(loss=loss, weight_mode=weight_mode, weights=weights)
    inner: Loss = hp["loss"]
    fn = type(inner).functional
    assert fn is not None
    kwargs = {**inner.hparams, "reduction": reduction, "validate_args": validate_args}
    check_tensor("target", target)
    if isinstance(input, Tensor):
        return fn(input, target, **kwargs)
    if isinstance(input, (str, bytes)) or not isinstance(input, Sequence) or not input:
        raise TypeError(
            f"input must be a tensor or a non-empty list of tensors, got {type(input).__name__}"
        )
    for i, head in enumerate(input):
        check_tensor(f"input[{i}]", head, floating=True)
        if head.ndim < 3 or head.shape[0] != target.shape[0]:
            raise ValueError(
                f"input[{i}] must have shape [N, C, *] with N = {target.shape[0]} (the target's "
                f"batch size), got {tuple(head.shape)}"
            )
    ws = deep_supervision_weights(len(input), hp["weight_mode"], hp["weights"])
    total: Tensor | None = None
    for w, head in zip(ws, input, strict=True):
        term = w * fn(head, _resize_target(target, head), **kwargs)
        total = term if total is None else total + term
    assert total is not None
    return total


@register_loss("deep_supervision", aliases=("deep_supervision_loss", "ds"))
class DeepSupervisionLoss(Loss):
    r"""One loss over every head of a deeply supervised network, weighted per level.

    See [deep_supervision_loss][lightning_losses.functional.deep_supervision_loss] for the
    weights, the target resizing, and how it differs from nnU-Net's normalised weights.

    Paper: *Deeply-Supervised Nets*, Lee et al., AISTATS 2015 (arXiv:1409.5185).

    Args:
        loss: the inner loss (a `lightning_losses` loss or its registry name; default `"dice"`).
        weight_mode: `"same" | "exp" | "two"`.
        weights: explicit per-level weights.
        reduction: `"mean" | "sum" | "none"` (used by the inner loss in place of its own).
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits or a list of heads; target: full-resolution target `[N, *]`.
        - output: scalar, or `[N]` with `reduction="none"` (dense inner losses).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DeepSupervisionLoss, DiceCELoss
        >>> crit = DeepSupervisionLoss(DiceCELoss(softmax=True, ignore_index=255))
        >>> heads = [torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 2, 2)]
        >>> crit(heads, torch.randint(0, 3, (2, 8, 8))).shape
        torch.Size([])
    """

    functional = staticmethod(deep_supervision_loss)
    input_kind = InputKind.DENSE
    target_arg = None

    def __init__(
        self,
        loss: Loss | str = "dice",
        weight_mode: str = "exp",
        weights: Sequence[float] | None = None,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_ds_args(loss=loss, weight_mode=weight_mode, weights=weights),
        )

    def forward(self, input: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
        """Loss of one head `input [N, C, *]` or a list of heads against `target [N, *]`."""
        return self._call_functional(input, target)
