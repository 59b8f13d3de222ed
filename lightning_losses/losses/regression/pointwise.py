r"""Standard regression losses of time-series forecasting: log-cosh, MSLE, MAPE and RMSE.

Paper: *A Comprehensive Survey of Regression Based Loss Functions for Time Series Forecasting*,
Jadon, Patil & Jadon (arXiv:2211.02989).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.regression._common import check_pair
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = [
    "LogCoshLoss",
    "MAPELoss",
    "MSLELoss",
    "RMSELoss",
    "log_cosh_loss",
    "mape_loss",
    "msle_loss",
    "rmse_loss",
]


def log_cosh_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Log-cosh loss, element-wise, in a form that cannot overflow.

    With $x = \hat y - y$,

    $$
    \ell = \log\cosh x = |x| + \operatorname{softplus}(-2|x|) - \log 2,
    $$

    (the right-hand side is exact and finite for any finite $x$, where $\cosh x$ overflows
    float32 beyond $|x| \approx 89$). It is $\approx x^2/2$ for small and $\approx |x| - \log 2$
    for large residuals; its gradient is $\tanh x$.

    Paper: *A Comprehensive Survey of Regression Based Loss Functions for Time Series
    Forecasting*, Jadon et al. (arXiv:2211.02989).

    Args:
        input: `[N, *]` predictions.
        target: `[N, *]` targets, same shape.
        reduction: `"mean" | "sum" | "none"` (mean or sum over all elements, or `[N, *]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import log_cosh_loss
        >>> log_cosh_loss(torch.tensor([1.0, -1.0, 50.0]), torch.zeros(3), reduction="none")
        tensor([ 0.4338,  0.4338, 49.3069])
    """
    check_reduction(reduction)
    check_pair(input, target)
    input, target = upcast(input), upcast(target)
    a = (input - target).abs()
    return reduce_loss(a + F.softplus(-2.0 * a) - math.log(2.0), reduction)


@register_loss("log_cosh")
class LogCoshLoss(Loss):
    r"""Log-cosh loss $\log\cosh(\hat y - y)$, element-wise, overflow-free (arXiv:2211.02989).

    See [log_cosh_loss][lightning_losses.functional.log_cosh_loss].

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input, target: `[N, *]`.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LogCoshLoss
        >>> LogCoshLoss()(torch.tensor([1.0, -1.0]), torch.zeros(2))
        tensor(0.4338)
    """

    functional = staticmethod(log_cosh_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of predictions `input [N, *]` against targets `target [N, *]`."""
        return self._call_functional(input, target)


def msle_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Mean squared logarithmic error, element-wise.

    $$
    \ell = \big(\log(1 + \max(\hat y, 0)) - \log(1 + y)\big)^2, \qquad y \ge 0.
    $$

    For non-negative predictions this is torchmetrics' `mean_squared_log_error` and
    scikit-learn's `mean_squared_log_error` (both with their mean). Negative predictions are
    clipped at 0, as Keras clips them (at its $\epsilon$), so that the loss stays finite; a
    clipped prediction gets no gradient, so give the model a non-negative output (softplus,
    exp) when training on it.

    Paper: *A Comprehensive Survey of Regression Based Loss Functions for Time Series
    Forecasting*, Jadon et al. (arXiv:2211.02989).

    Args:
        input: `[N, *]` predictions.
        target: `[N, *]` non-negative targets, same shape.
        reduction: `"mean" | "sum" | "none"` (mean or sum over all elements, or `[N, *]`).
        validate_args: check that `target ≥ 0` (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ, a negative target (with `validate_args`).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import msle_loss
        >>> msle_loss(torch.tensor([3.0, -5.0]), torch.zeros(2), reduction="none")  # log(4)², 0
        tensor([1.9218, 0.0000])
    """
    check_reduction(reduction)
    check_pair(input, target)
    if validate_args and bool((target < 0).any()):
        raise ValueError("target must be ≥ 0 for the squared log error (log(1 + target))")
    input, target = upcast(input), upcast(target)
    diff = torch.log1p(input.clamp(min=0)) - torch.log1p(target)
    return reduce_loss(diff.square(), reduction)


@register_loss("msle")
class MSLELoss(Loss):
    r"""Mean squared logarithmic error, element-wise (arXiv:2211.02989).

    See [msle_loss][lightning_losses.functional.msle_loss]: negative predictions are clipped at 0
    (as Keras), targets must be non-negative.

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that targets are non-negative (a host sync).

    Shape:
        - input, target: `[N, *]`.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MSLELoss
        >>> MSLELoss()(torch.tensor([3.0]), torch.tensor([0.0]))  # log(4)²
        tensor(1.9218)
    """

    functional = staticmethod(msle_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of predictions `input [N, *]` against non-negative `target [N, *]`."""
        return self._call_functional(input, target)


def _check_mape_args(*, eps: Any) -> dict[str, Any]:
    return {"eps": check_number("eps", eps, low=0.0, low_inclusive=False)}


def mape_loss(
    input: Tensor,
    target: Tensor,
    *,
    eps: float = 1.17e-6,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Mean absolute percentage error, element-wise, as a fraction (not ×100).

    $$
    \ell = \frac{|\hat y - y|}{\max(|y|, \epsilon)}.
    $$

    The default $\epsilon = 1.17 \cdot 10^{-6}$ is torchmetrics'
    `mean_absolute_percentage_error`, which this equals with `reduction="mean"`;
    scikit-learn's `mean_absolute_percentage_error` uses the float64 machine epsilon
    ($\epsilon \approx 2.2 \cdot 10^{-16}$; pass it as `eps` to reproduce it).

    Paper: *A Comprehensive Survey of Regression Based Loss Functions for Time Series
    Forecasting*, Jadon et al. (arXiv:2211.02989).

    Args:
        input: `[N, *]` predictions.
        target: `[N, *]` targets, same shape.
        eps: $\epsilon > 0$, the smallest denominator.
        reduction: `"mean" | "sum" | "none"` (mean or sum over all elements, or `[N, *]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ, `eps ≤ 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import mape_loss
        >>> mape_loss(torch.tensor([90.0, 1.0]), torch.tensor([100.0, -2.0]), reduction="none")
        tensor([0.1000, 1.5000])
    """
    check_reduction(reduction)
    hp = _check_mape_args(eps=eps)
    check_pair(input, target)
    input, target = upcast(input), upcast(target)
    loss = (input - target).abs() / target.abs().clamp(min=hp["eps"])
    return reduce_loss(loss, reduction)


@register_loss("mape")
class MAPELoss(Loss):
    r"""Mean absolute percentage error $|\hat y - y| / \max(|y|, \epsilon)$ (arXiv:2211.02989).

    See [mape_loss][lightning_losses.functional.mape_loss] (torchmetrics' default $\epsilon$).

    Args:
        eps: the smallest denominator, $\epsilon > 0$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input, target: `[N, *]`.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MAPELoss
        >>> MAPELoss()(torch.tensor([90.0, 110.0]), torch.tensor([100.0, 100.0]))
        tensor(0.1000)
    """

    functional = staticmethod(mape_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(
        self, eps: float = 1.17e-6, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_mape_args(eps=eps)
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of predictions `input [N, *]` against targets `target [N, *]`."""
        return self._call_functional(input, target)


def rmse_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Root mean squared error of each sample (e.g. of each forecast over its horizon).

    For sample $n$ with $D$ elements (all dimensions after the first),

    $$
    \ell_n = \sqrt{\frac{1}{D}\sum_{d=1}^{D} (\hat y_{n,d} - y_{n,d})^2 }.
    $$

    `reduction="mean"` averages the per-sample RMSEs (the contract's `mean` of `none`); this is
    *not* the RMSE of the whole batch, which is `mse.sqrt()` (torchmetrics'
    `mean_squared_error(squared=False)`). The two agree for a batch of one sample. A sample with
    zero error gets gradient 0 (the subgradient of the norm), not NaN.

    Paper: *A Comprehensive Survey of Regression Based Loss Functions for Time Series
    Forecasting*, Jadon et al. (arXiv:2211.02989).

    Args:
        input: `[N, D, *]` predictions (at least 2 dimensions: a per-sample RMSE of one scalar
            would be its absolute error).
        target: `[N, D, *]` targets, same shape.
        reduction: `"mean" | "sum" | "none"` (mean or sum over samples, or `[N]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ, `input` has fewer than 2 dimensions.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import rmse_loss
        >>> rmse_loss(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.zeros(2, 2), reduction="none")
        tensor([3.5355, 0.0000])
    """
    check_reduction(reduction)
    check_pair(input, target, min_ndim=2)
    input, target = upcast(input), upcast(target)
    r = (input - target).reshape(input.shape[0], -1)
    # vector_norm's backward is 0 at a zero vector, where sqrt(mean(r²)) would give NaN.
    loss = torch.linalg.vector_norm(r, dim=1) / math.sqrt(max(r.shape[1], 1))
    return reduce_loss(loss, reduction)


@register_loss("rmse")
class RMSELoss(Loss):
    r"""Root mean squared error of each sample over its elements (arXiv:2211.02989).

    See [rmse_loss][lightning_losses.functional.rmse_loss]: `"mean"` is the mean of per-sample
    RMSEs, not the batch RMSE.

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input, target: `[N, D, *]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import RMSELoss
        >>> RMSELoss()(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2))  # sqrt((9 + 16) / 2)
        tensor(3.5355)
    """

    functional = staticmethod(rmse_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Per-sample RMSE of predictions `input [N, D, *]` against `target [N, D, *]`."""
        return self._call_functional(input, target)
