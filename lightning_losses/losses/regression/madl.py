r"""Mean Absolute Directional Loss (MADL) for return forecasts, exact and smoothed.

Paper: *Mean Absolute Directional Loss as a New Loss Function for Machine Learning Problems in
Algorithmic Investment Strategies*, Michańków, Sakowski & Ślepaczuk (arXiv:2309.10546).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.regression._common import check_pair
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = ["MADLLoss", "madl_loss"]


def _check_madl_args(*, smooth_tau: Any) -> dict[str, Any]:
    if smooth_tau is None:
        return {"smooth_tau": None}
    return {"smooth_tau": check_number("smooth_tau", smooth_tau, low=0.0, low_inclusive=False)}


def madl_loss(
    input: Tensor,
    target: Tensor,
    *,
    smooth_tau: float | None = None,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Mean Absolute Directional Loss: minus the return earned by trading on the forecast's sign.

    With realised return $R$ (`target`) and forecast $\hat R$ (`input`),

    $$
    \ell = -\operatorname{sign}(R \hat R)\,|R| = -\operatorname{sign}(\hat R)\, R,
    $$

    so $-\ell$ is the return of going long when $\hat R > 0$ and short when $\hat R < 0$; a
    forecast with the right direction everywhere gives the mean $-\overline{|R|}$. The exact
    form is a metric: its gradient in $\hat R$ is zero almost everywhere. `smooth_tau=τ`
    replaces $\operatorname{sign}(\hat R)$ by $\tanh(\hat R/\tau)$,
    $\ell_\tau = -\tanh(\hat R/\tau)\,R$, which tends to the exact loss as $\tau \to 0$ and can
    be trained on.

    What was verified: the formula matches the paper (arXiv:2309.10546) and independent
    implementations of it. The paper's abstract reports MADL selecting the hyperparameters of
    LSTM models; whether the authors also trained the weights on it was not verified. The
    smoothed variant is this library's addition, not the paper's (the authors' later
    *generalised* MADL smooths the sign with a sigmoid instead).

    Args:
        input: `[N, *]` forecast returns $\hat R$.
        target: `[N, *]` realised returns $R$, same shape.
        smooth_tau: `None` (exact, zero gradient) or $\tau > 0$ (the smoothed, trainable form).
        reduction: `"mean" | "sum" | "none"` (mean or sum over all elements, or `[N, *]`).
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ, `smooth_tau ≤ 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import madl_loss
        >>> ret = torch.tensor([0.02, -0.01, 0.03])
        >>> madl_loss(torch.tensor([1.0, -1.0, -1.0]), ret, reduction="none")  # right, right, wrong
        tensor([-0.0200, -0.0100,  0.0300])
    """
    check_reduction(reduction)
    hp = _check_madl_args(smooth_tau=smooth_tau)
    check_pair(input, target)
    input, target = upcast(input), upcast(target)
    if hp["smooth_tau"] is None:
        # torch.sign(nan) is 0: keep a NaN forecast visible, as every other loss does.
        direction = torch.where(torch.isnan(input), input, torch.sign(input))
    else:
        direction = torch.tanh(input / hp["smooth_tau"])
    return reduce_loss(-direction * target, reduction)


@register_loss("madl")
class MADLLoss(Loss):
    r"""Mean Absolute Directional Loss $-\operatorname{sign}(R\hat R)|R|$ (arXiv:2309.10546).

    See [madl_loss][lightning_losses.functional.madl_loss]. The default (`smooth_tau=None`) is
    the exact loss, a metric with zero gradient; set `smooth_tau` to train on
    $-\tanh(\hat R/\tau) R$.

    Args:
        smooth_tau: `None` (exact) or the smoothing temperature $\tau > 0$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input (forecast returns), target (realised returns): `[N, *]`.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MADLLoss
        >>> MADLLoss()(torch.tensor([0.5, -0.5]), torch.tensor([0.02, -0.04]))  # −mean |R|
        tensor(-0.0300)
    """

    functional = staticmethod(madl_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(
        self,
        smooth_tau: float | None = None,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_madl_args(smooth_tau=smooth_tau),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of forecast returns `input [N, *]` against realised returns `target [N, *]`."""
        return self._call_functional(input, target)
