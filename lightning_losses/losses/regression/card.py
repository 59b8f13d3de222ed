r"""CARD's signal-decay-based robust loss: an L1 loss down-weighting far forecast horizons.

Paper: *CARD: Channel Aligned Robust Blend Transformer for Time Series Forecasting*, Xue et al.,
ICLR 2024 (arXiv:2305.12095); official code `wxie9/CARD`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.regression._common import check_pair, per_sample_mean
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = ["SignalDecayRobustLoss", "signal_decay_robust_loss"]


def _check_card_args(*, power: Any) -> dict[str, Any]:
    return {"power": check_number("power", power, low=0.0)}


def signal_decay_robust_loss(
    input: Tensor,
    target: Tensor,
    *,
    power: float = 0.5,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Horizon-weighted L1 loss of CARD: step $l$ of the forecast weighs $l^{-1/2}$.

    For a forecast of horizon $H$ (and any channels $C$),

    $$
    \ell_n = \frac{1}{H C}\sum_{l=1}^{H}\sum_{c} l^{-p}\,|\hat y_{n,l,c} - y_{n,l,c}|,
    $$

    with $p = 1/2$: the far, noisier steps count less. The weights are **not** renormalised: this
    matches the official code (`wxie9/CARD`, `exp_long_term_forecasting.py`), which multiplies
    predictions and targets by $1/\sqrt{l}$ and takes `nn.L1Loss` (a mean over batch, horizon and
    channels), and that is what `reduction="mean"` returns. Checked against that code; $H = 1$ or
    $p = 0$ gives the plain L1 loss.

    Paper: *CARD: Channel Aligned Robust Blend Transformer for Time Series Forecasting*, Xue et
    al., ICLR 2024 (arXiv:2305.12095).

    Args:
        input: `[N, H, *]` forecasts (horizon second, e.g. `[N, H, C]`).
        target: `[N, H, *]` targets, same shape.
        power: $p \ge 0$, the decay exponent of the horizon weights.
        reduction: `"mean" | "sum" | "none"` (mean or sum over samples, or `[N]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ, `input` has fewer than 2 dimensions, `power < 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import signal_decay_robust_loss
        >>> pred, y = torch.ones(1, 4), torch.zeros(1, 4)  # error 1 at every step
        >>> signal_decay_robust_loss(pred, y)  # (1 + 1/√2 + 1/√3 + 1/2) / 4
        tensor(0.6962)
    """
    check_reduction(reduction)
    hp = _check_card_args(power=power)
    check_pair(input, target, min_ndim=2)
    input, target = upcast(input), upcast(target)
    steps = torch.arange(1, input.shape[1] + 1, dtype=input.dtype, device=input.device)
    weight = steps.pow(-hp["power"]).reshape(1, -1, *([1] * (input.ndim - 2)))
    return reduce_loss(per_sample_mean(weight * (input - target).abs()), reduction)


@register_loss("signal_decay_robust")
class SignalDecayRobustLoss(Loss):
    r"""CARD's horizon-weighted L1 loss, weights $l^{-1/2}$ (arXiv:2305.12095, official code).

    See [signal_decay_robust_loss][lightning_losses.functional.signal_decay_robust_loss].

    Args:
        power: the decay exponent $p \ge 0$ of the weights $l^{-p}$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input, target: `[N, H, *]` (horizon second).
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SignalDecayRobustLoss
        >>> SignalDecayRobustLoss(power=0.0)(torch.ones(2, 3), torch.zeros(2, 3))  # plain L1
        tensor(1.)
    """

    functional = staticmethod(signal_decay_robust_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(self, power: float = 0.5, reduction: str = "mean", validate_args: bool = True):
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_card_args(power=power)
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of forecasts `input [N, H, *]` against targets `target [N, H, *]`."""
        return self._call_functional(input, target)
