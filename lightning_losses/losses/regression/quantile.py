r"""Quantile (pinball) loss for several quantiles at once, and a quantile-crossing penalty.

Papers: *Regression Quantiles*, Koenker & Bassett, Econometrica 1978 (the pinball loss);
*Estimation of Non-Crossing Quantile Regression Process with Deep ReQU Neural Networks*, Shen,
Jiao, Lin, Horowitz & Huang (arXiv:2207.10442) (the non-crossing penalty);
*Learning Quantile Functions without Quantile Crossing for Distribution-free Time Series
Forecasting*, Park et al., AISTATS 2022 (arXiv:2111.06581) (monotone increments).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_choice,
    check_number,
    check_reduction,
    check_tensor,
)

__all__ = [
    "PinballLoss",
    "QuantileCrossingPenaltyLoss",
    "monotone_quantiles",
    "pinball_loss",
    "quantile_crossing_penalty_loss",
]

NON_CROSSING = ("none", "sort", "increments")


def _check_quantiles(quantiles: Any) -> tuple[float, ...]:
    if isinstance(quantiles, (str, bytes)) or not isinstance(quantiles, Sequence):
        raise TypeError(
            f"quantiles must be a sequence of numbers in (0, 1), got {type(quantiles).__name__}"
        )
    if len(quantiles) == 0:
        raise ValueError("quantiles must hold at least one quantile level, got ()")
    out = tuple(
        check_number("quantiles", q, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
        for q in quantiles
    )
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"quantiles must be strictly increasing, got {out}")
    return out


def _check_pinball_args(*, quantiles: Any, non_crossing: Any) -> dict[str, Any]:
    # The one validator of pinball_loss's hyperparameters: the functional and the class use it.
    return {
        "quantiles": _check_quantiles(quantiles),
        "non_crossing": check_choice("non_crossing", non_crossing, NON_CROSSING),
    }


def _check_quantile_input(input: Tensor, num_quantiles: int | None = None) -> None:
    check_tensor("input", input, floating=True)
    if input.ndim < 2:
        raise ValueError(
            f"input must have shape [N, Q] or [N, T, Q] (quantiles last), got {tuple(input.shape)}"
        )
    if num_quantiles is not None and input.shape[-1] != num_quantiles:
        raise ValueError(
            f"input's last dimension must be len(quantiles) = {num_quantiles}, got shape "
            f"{tuple(input.shape)}"
        )


def monotone_quantiles(input: Tensor, non_crossing: str = "increments") -> Tensor:
    r"""The quantile predictions that `pinball_loss` scores, given the raw outputs `[N, *, Q]`.

    - `"none"`: the outputs themselves (they may cross).
    - `"sort"`: the outputs sorted along the last dimension (monotone rearrangement; the gradient
      flows through the sort to the output that lands in each slot).
    - `"increments"`: a monotone parametrisation, $q_1 = x_1$,
      $q_k = x_1 + \sum_{j=2}^{k} \operatorname{softplus}(x_j)$: strictly increasing for any
      output, so the quantiles cannot cross (as the incremental quantile functions of Park et
      al., AISTATS 2022, arXiv:2111.06581).

    Use the same `non_crossing` at prediction time as in the loss.

    Args:
        input: `[N, *, Q]` raw network outputs, quantiles last.
        non_crossing: `"none" | "sort" | "increments"`.

    Returns:
        The quantiles `[N, *, Q]`, increasing along the last dimension unless `"none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import monotone_quantiles
        >>> monotone_quantiles(torch.tensor([[1.0, 0.0, 0.0]]))  # 1, 1 + log 2, 1 + 2 log 2
        tensor([[1.0000, 1.6931, 2.3863]])
        >>> monotone_quantiles(torch.tensor([[2.0, 1.0, 3.0]]), "sort")
        tensor([[1., 2., 3.]])
    """
    check_choice("non_crossing", non_crossing, NON_CROSSING)
    _check_quantile_input(input)
    if non_crossing == "sort":
        return input.sort(dim=-1).values
    if non_crossing == "increments":
        steps = F.softplus(input[..., 1:])
        return torch.cat([input[..., :1], input[..., :1] + steps.cumsum(dim=-1)], dim=-1)
    return input


def pinball_loss(
    input: Tensor,
    target: Tensor,
    *,
    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
    non_crossing: str = "none",
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Pinball (quantile) loss of several quantiles at once, averaged over the quantiles.

    For quantile levels $\tau_1 < \dots < \tau_Q$, predictions $\hat q_{\tau_k}$ and target $y$,

    $$
    \ell = \frac{1}{Q}\sum_{k=1}^{Q} \rho_{\tau_k}(y - \hat q_{\tau_k}), \qquad
    \rho_\tau(u) = \max(\tau u, (\tau - 1) u).
    $$

    Its minimiser over a constant is the empirical $\tau$-quantile of the targets, and at
    $\tau = 0.5$, $\rho_\tau(u) = |u| / 2$ (half the absolute error). With
    `non_crossing="sort"` or `"increments"` the loss scores
    [monotone_quantiles][lightning_losses.functional.monotone_quantiles] of the input, so the
    predicted quantiles cannot cross; see also
    [quantile_crossing_penalty_loss][lightning_losses.functional.quantile_crossing_penalty_loss].

    Conventions of peer libraries (same $\rho_\tau$, different scale):

    - pytorch-forecasting's `QuantileLoss` uses $2\rho_\tau$ per quantile and averages over all
      elements (quantiles included): its value is **2×** ours.
    - neuralforecast's `MQLoss` sums $\rho_\tau$ over the quantiles and averages over the rest
      (its `1 / len(quantiles)` factor is taken of a `[1, 1, 1, Q]` view, so it is 1): its
      value is **Q×** ours, and it returns only that scalar (here `reduction="none"` keeps one
      value per sample and time step). Its `HuberMQLoss` replaces $|u|$ by a Huber function
      inside $\rho_\tau$; that is a different loss.

    Paper: *Regression Quantiles*, Koenker & Bassett, Econometrica 1978; for networks with
    several quantile outputs see *A Comprehensive Survey of Regression Based Loss Functions for
    Time Series Forecasting*, Jadon et al. (arXiv:2211.02989).

    Args:
        input: `[N, Q]` or `[N, T, Q]` predicted quantiles (quantile levels last, in the order of
            `quantiles`); with `non_crossing="increments"`, the raw outputs to parametrise.
        target: `[N]` or `[N, T]`: `input`'s shape without the last dimension.
        quantiles: strictly increasing levels in $(0, 1)$, one per entry of the last dimension.
        non_crossing: `"none"` (score the outputs as they are), `"sort"` (sort them first) or
            `"increments"` (monotone parametrisation).
        reduction: `"mean" | "sum" | "none"`: the mean or sum over samples (and time steps), or
            the per-sample losses `[N]` (`[N, T]` for `[N, T, Q]` input).
        validate_args: accepted for the common signature; this loss has no host-syncing data
            check (shapes and dtypes are always checked).

    Returns:
        The reduced loss, or `[N]` / `[N, T]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs, `quantiles` not a sequence.
        ValueError: `quantiles` not strictly increasing in $(0, 1)$, the last dimension of
            `input` not `len(quantiles)`, `target`'s shape not `input.shape[:-1]`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import pinball_loss
        >>> pred = torch.tensor([[0.0, 1.0, 2.0]])  # quantiles 0.1, 0.5, 0.9 of one sample
        >>> pinball_loss(pred, torch.tensor([1.0]))  # (0.1·1 + 0 + 0.1·1) / 3
        tensor(0.0667)
        >>> pinball_loss(torch.zeros(2, 1), torch.tensor([2.0, -4.0]), quantiles=(0.5,),
        ...              reduction="none")  # τ = 0.5: half the absolute error
        tensor([1., 2.])
    """
    check_reduction(reduction)
    hp = _check_pinball_args(quantiles=quantiles, non_crossing=non_crossing)
    taus = hp["quantiles"]
    _check_quantile_input(input, len(taus))
    check_tensor("target", target, floating=True)
    if target.shape != input.shape[:-1]:
        raise ValueError(
            f"target must have input's shape without the quantile dimension: expected "
            f"{tuple(input.shape[:-1])}, got {tuple(target.shape)}"
        )
    input, target = upcast(input), upcast(target)
    q = monotone_quantiles(input, hp["non_crossing"])
    tau = torch.tensor(taus, dtype=q.dtype, device=q.device)
    u = target.unsqueeze(-1) - q
    loss = torch.maximum(tau * u, (tau - 1) * u).mean(dim=-1)
    return reduce_loss(loss, reduction)


@register_loss("pinball")
class PinballLoss(Loss):
    r"""Pinball (quantile) loss of several quantiles at once, optionally non-crossing.

    See [pinball_loss][lightning_losses.functional.pinball_loss] for the formula and the
    conventions of pytorch-forecasting (2× ours) and neuralforecast (Q× ours, scalar only).
    Predict with [monotone_quantiles][lightning_losses.functional.monotone_quantiles]`(output,
    non_crossing)` so the quantiles you read are the ones the loss trained.
    Paper: Koenker & Bassett, Econometrica 1978; survey arXiv:2211.02989.

    Args:
        quantiles: strictly increasing quantile levels in $(0, 1)$.
        non_crossing: `"none"`, `"sort"` (sort the outputs) or `"increments"` (monotone
            parametrisation $q_k = x_1 + \sum_{j \le k} \operatorname{softplus}(x_j)$).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Shape:
        - input: `[N, Q]` or `[N, T, Q]`, `Q = len(quantiles)`.
        - target: `[N]` or `[N, T]`.
        - output: scalar, or `[N]` / `[N, T]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PinballLoss
        >>> loss = PinballLoss(quantiles=(0.1, 0.9), non_crossing="sort", reduction="none")
        >>> loss(torch.tensor([[3.0, 1.0]]), torch.tensor([2.0]))  # sorted to (1, 3)
        tensor([0.1000])
        >>> PinballLoss()
        PinballLoss(quantiles=(0.1, 0.5, 0.9), non_crossing='none', reduction='mean')
    """

    functional = staticmethod(pinball_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(
        self,
        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
        non_crossing: str = "none",
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_pinball_args(quantiles=quantiles, non_crossing=non_crossing),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of quantile predictions `input [N, (T,) Q]` against `target [N, (T)]`."""
        return self._call_functional(input, target)


def _check_penalty_args(*, lam: Any) -> dict[str, Any]:
    return {"lam": check_number("lam", lam, low=0.0)}


def quantile_crossing_penalty_loss(
    input: Tensor,
    *,
    lam: float = 1.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Penalty on crossing quantile predictions: the summed decrease between adjacent levels.

    For predictions $\hat q_{\tau_1}, \dots, \hat q_{\tau_Q}$ ordered by increasing $\tau$,

    $$
    \ell = \lambda \sum_{k=1}^{Q-1} \max(0,\ \hat q_{\tau_k} - \hat q_{\tau_{k+1}}),
    $$

    zero exactly when the predictions are non-decreasing in $\tau$. Add it to
    [pinball_loss][lightning_losses.functional.pinball_loss] (same input).

    Source and what was verified: Shen et al. (arXiv:2207.10442) estimate the whole quantile
    process $g(x, \tau)$ with a network that takes $\tau$ as an input, and add a penalty on the
    negative part of its derivative $\partial g / \partial \tau$ (confirmed from the paper's
    abstract and introduction; the exact display of the penalty was not checked). With a fixed
    grid of $Q$ output quantiles there is no derivative in $\tau$; the sum above is the
    Riemann sum of $\int \max(0, -\partial g/\partial \tau)\, d\tau$ over the grid's span
    (the $\Delta\tau$ of each slope cancels). It is this library's finite-difference form, not
    the paper's estimator.

    Args:
        input: `[N, Q]` or `[N, T, Q]` predicted quantiles ordered by increasing level,
            `Q ≥ 2`.
        lam: $\lambda \ge 0$, the penalty weight.
        reduction: `"mean" | "sum" | "none"`: the mean or sum over samples (and time steps), or
            `[N]` / `[N, T]`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced penalty, or `[N]` / `[N, T]` with `reduction="none"`.

    Raises:
        TypeError: non-floating `input`.
        ValueError: `input` with fewer than 2 dimensions or fewer than 2 quantiles, `lam < 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import quantile_crossing_penalty_loss
        >>> quantile_crossing_penalty_loss(torch.tensor([[0.0, 2.0, 1.0], [0.0, 1.0, 2.0]]),
        ...                                reduction="none")  # only the first row crosses
        tensor([1., 0.])
    """
    check_reduction(reduction)
    hp = _check_penalty_args(lam=lam)
    _check_quantile_input(input)
    if input.shape[-1] < 2:
        raise ValueError(f"input needs at least 2 quantiles (last dimension), got {input.shape}")
    input = upcast(input)
    loss = hp["lam"] * torch.relu(input[..., :-1] - input[..., 1:]).sum(dim=-1)
    return reduce_loss(loss, reduction)


@register_loss("quantile_crossing_penalty")
class QuantileCrossingPenaltyLoss(Loss):
    r"""Penalty on crossing quantile predictions (finite-difference form; see the functional).

    `λ Σ_k max(0, q̂_k − q̂_{k+1})`, the grid version of the derivative penalty of Shen et al.
    (arXiv:2207.10442); see
    [quantile_crossing_penalty_loss][lightning_losses.functional.quantile_crossing_penalty_loss]
    for what was verified. Add it to [PinballLoss][lightning_losses.losses.PinballLoss].

    Args:
        lam: the penalty weight $\lambda \ge 0$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input: `[N, Q]` or `[N, T, Q]`, quantiles ordered by increasing level, `Q ≥ 2`.
        - output: scalar, or `[N]` / `[N, T]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import QuantileCrossingPenaltyLoss
        >>> QuantileCrossingPenaltyLoss(lam=0.5)(torch.tensor([[3.0, 1.0, 2.0]]))
        tensor(1.)
    """

    functional = staticmethod(quantile_crossing_penalty_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(self, lam: float = 1.0, reduction: str = "mean", validate_args: bool = True):
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_penalty_args(lam=lam)
        )

    def forward(self, input: Tensor) -> Tensor:
        """Crossing penalty of quantile predictions `input [N, (T,) Q]`."""
        return self._call_functional(input)
