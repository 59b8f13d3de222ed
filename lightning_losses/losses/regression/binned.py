r"""Regression with an auxiliary classification loss on binned targets.

Paper: *A step towards understanding why classification helps regression*, Pintea, Lin,
Dijkstra & van Gemert, ICCV 2023 (arXiv:2308.10603).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction, check_tensor

__all__ = ["RegressionWithBinnedClassificationLoss", "regression_with_binned_classification_loss"]


def _check_binned_args(*, low: Any, high: Any, lam: Any) -> dict[str, Any]:
    low = check_number("low", low)
    high = check_number("high", high)
    if high <= low:
        raise ValueError(f"high must be > low, got low={low}, high={high}")
    return {"low": low, "high": high, "lam": check_number("lam", lam, low=0.0)}


def _target_bins(target: Tensor, num_bins: int, low: float, high: float) -> Tensor:
    """Equal-width bin index in `[0, num_bins)` of each target; values outside go to the ends."""
    scaled = (target - low) / (high - low) * num_bins
    return scaled.floor().clamp(0, num_bins - 1).long()


def regression_with_binned_classification_loss(
    input: Tensor,
    bin_logits: Tensor,
    target: Tensor,
    *,
    low: float = 0.0,
    high: float = 1.0,
    lam: float = 1.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Squared error plus $\lambda$ · cross-entropy of a classifier of the target's bin.

    The target range $[\text{low}, \text{high})$ is cut into $B$ equal-width bins ($B$ =
    `bin_logits.shape[1]`), $b(y)$ is the bin of $y$ (targets outside the range go to the first
    or last bin), and

    $$
    \ell = (\hat y - y)^2 + \lambda\, \mathrm{CE}(z, b(y)).
    $$

    The paper finds the auxiliary classification loss helps most when the regression targets
    are imbalanced. $\lambda = 0$ gives the squared error.

    Paper: *A step towards understanding why classification helps regression*, Pintea et al.,
    ICCV 2023 (arXiv:2308.10603).

    Args:
        input: `[N]` regression predictions $\hat y$.
        bin_logits: `[N, B]` logits $z$ of the bin classifier, `B ≥ 2`.
        target: `[N]` real targets $y$.
        low: lower edge of the first bin.
        high: upper edge of the last bin (`> low`).
        lam: $\lambda \ge 0$, the weight of the classification term.
        reduction: `"mean" | "sum" | "none"` (mean or sum over samples, or `[N]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes do not match, `high ≤ low`, `lam < 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import regression_with_binned_classification_loss
        >>> pred, logits = torch.tensor([0.5]), torch.zeros(1, 4)  # uniform over 4 bins
        >>> regression_with_binned_classification_loss(pred, logits, torch.tensor([0.7]))
        tensor(1.4263)
    """
    check_reduction(reduction)
    hp = _check_binned_args(low=low, high=high, lam=lam)
    check_tensor("input", input, floating=True)
    check_tensor("bin_logits", bin_logits, floating=True)
    check_tensor("target", target, floating=True)
    if input.ndim != 1:
        raise ValueError(f"input must have shape [N], got {tuple(input.shape)}")
    if bin_logits.ndim != 2 or bin_logits.shape[0] != input.shape[0] or bin_logits.shape[1] < 2:
        raise ValueError(
            f"bin_logits must have shape [N, B] with N = {input.shape[0]} and B ≥ 2, got "
            f"{tuple(bin_logits.shape)}"
        )
    if target.shape != input.shape:
        raise ValueError(
            f"target must have the same shape as input: expected {tuple(input.shape)}, got "
            f"{tuple(target.shape)}"
        )
    input, bin_logits, target = upcast(input), upcast(bin_logits), upcast(target)
    bins = _target_bins(target.detach(), bin_logits.shape[1], hp["low"], hp["high"])
    ce = F.cross_entropy(bin_logits, bins, reduction="none")
    return reduce_loss((input - target).square() + hp["lam"] * ce, reduction)


@register_loss("regression_with_binned_classification")
class RegressionWithBinnedClassificationLoss(Loss):
    r"""Squared error + $\lambda$ · CE on the target's equal-width bin (arXiv:2308.10603).

    See the functional
    [regression_with_binned_classification_loss][lightning_losses.functional.regression_with_binned_classification_loss]
    for the formula. The model has two heads: a regression output and `B` bin logits (`B`
    is read from the logits).

    Args:
        low: lower edge of the first bin.
        high: upper edge of the last bin.
        lam: weight $\lambda \ge 0$ of the classification term.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input: `[N]`; bin_logits: `[N, B]`; target: `[N]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import RegressionWithBinnedClassificationLoss
        >>> loss = RegressionWithBinnedClassificationLoss(lam=0.0)  # plain squared error
        >>> loss(torch.tensor([0.5]), torch.zeros(1, 4), torch.tensor([0.7]))
        tensor(0.0400)
    """

    functional = staticmethod(regression_with_binned_classification_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(
        self,
        low: float = 0.0,
        high: float = 1.0,
        lam: float = 1.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_binned_args(low=low, high=high, lam=lam),
        )

    def forward(self, input: Tensor, bin_logits: Tensor, target: Tensor) -> Tensor:
        """Loss of predictions `input [N]` and bin logits `bin_logits [N, B]` vs `target [N]`."""
        return self._call_functional(input, bin_logits, target)
