r"""Pseudo-Huber loss, and the scheduled pseudo-Huber loss of diffusion training.

Paper: *Improving Diffusion Models's Data-Corruption Resistance using Scheduled Pseudo-Huber
Loss*, Khrapov et al. (arXiv:2403.16728); the schedules follow the authors' diffusers example
scripts (`conditional_loss`, the Huber-`c` schedule in
`examples/research_projects/scheduled_huber_loss_training`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.regression._common import check_pair
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_choice,
    check_int,
    check_number,
    check_reduction,
    check_tensor,
)

__all__ = [
    "PseudoHuberLoss",
    "ScheduledPseudoHuberLoss",
    "pseudo_huber_loss",
    "scheduled_pseudo_huber_loss",
]

SCHEDULES = ("snr", "exponential", "constant")


def _pseudo_huber(residual: Tensor, c: Tensor | float) -> Tensor:
    # 2c(sqrt(r² + c²) − c) written as 2c·r² / (sqrt(r² + c²) + c): no cancellation for |r| ≪ c,
    # and hypot does not overflow for large |r|.
    c_t = torch.as_tensor(c, dtype=residual.dtype, device=residual.device)
    return 2 * c_t * residual.square() / (torch.hypot(residual, c_t) + c_t)


def _check_pseudo_huber_args(*, c: Any) -> dict[str, Any]:
    return {"c": check_number("c", c, low=0.0, low_inclusive=False)}


def pseudo_huber_loss(
    input: Tensor,
    target: Tensor,
    *,
    c: float = 1.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Pseudo-Huber loss, element-wise, in the scaling of the scheduled pseudo-Huber paper.

    With residual $r = \hat y - y$ and $c > 0$,

    $$
    \ell = 2c\left(\sqrt{r^2 + c^2} - c\right),
    $$

    which is $\approx r^2$ for $|r| \ll c$ and $\approx 2c|r|$ for $|r| \gg c$: squared error
    near zero, absolute error (with slope $2c$) for outliers, smooth everywhere. It is computed
    as $2c\,r^2 / (\sqrt{r^2 + c^2} + c)$, which is exact and avoids the cancellation of the
    textbook form for small residuals.

    Other scalings in use: the classic pseudo-Huber $\delta^2(\sqrt{1 + (r/\delta)^2} - 1)$ is
    half of ours with $c = \delta$ (its small-residual limit is $r^2/2$, as
    `torch.nn.HuberLoss`), and the consistency-models form $\sqrt{r^2 + c^2} - c$ is ours
    divided by $2c$.

    Paper: *Improving Diffusion Models's Data-Corruption Resistance using Scheduled Pseudo-Huber
    Loss*, Khrapov et al. (arXiv:2403.16728), whose scaling this is (diffusers' `conditional_loss`
    with `loss_type="huber"`).

    Args:
        input: `[N, *]` predictions.
        target: `[N, *]` targets, same shape.
        c: $c > 0$, the transition scale between the quadratic and the linear regime.
        reduction: `"mean" | "sum" | "none"`: the mean or sum over all elements, or the
            element-wise losses `[N, *]`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ, `c ≤ 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import pseudo_huber_loss
        >>> pseudo_huber_loss(torch.tensor([0.0, 3.0]), torch.tensor([0.0, -1.0]), c=3.0,
        ...                   reduction="none")  # 2·3·(sqrt(16 + 9) − 3) = 12
        tensor([ 0., 12.])
    """
    check_reduction(reduction)
    hp = _check_pseudo_huber_args(c=c)
    check_pair(input, target)
    input, target = upcast(input), upcast(target)
    return reduce_loss(_pseudo_huber(input - target, hp["c"]), reduction)


@register_loss("pseudo_huber")
class PseudoHuberLoss(Loss):
    r"""Pseudo-Huber loss $2c(\sqrt{r^2 + c^2} - c)$, element-wise (arXiv:2403.16728 scaling).

    See [pseudo_huber_loss][lightning_losses.functional.pseudo_huber_loss] for the formula, its
    limits ($\approx r^2$ for small, $\approx 2c|r|$ for large residuals) and the other scalings.

    Args:
        c: the transition scale, $c > 0$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature.

    Shape:
        - input, target: `[N, *]`.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PseudoHuberLoss
        >>> PseudoHuberLoss(c=3.0)(torch.tensor([3.0]), torch.tensor([-1.0]))
        tensor(12.)
    """

    functional = staticmethod(pseudo_huber_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(self, c: float = 1.0, reduction: str = "mean", validate_args: bool = True):
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_pseudo_huber_args(c=c)
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of predictions `input [N, *]` against targets `target [N, *]`."""
        return self._call_functional(input, target)


def _check_scheduled_args(
    *,
    huber_c: Any,
    schedule: Any,
    huber_scale: Any,
    num_train_timesteps: Any,
    alphas_cumprod: Any,
) -> dict[str, Any]:
    steps = check_int("num_train_timesteps", num_train_timesteps, low=1)
    if alphas_cumprod is not None:
        check_tensor("alphas_cumprod", alphas_cumprod, floating=True)
        if alphas_cumprod.shape != (steps,):
            raise ValueError(
                f"alphas_cumprod must have shape [num_train_timesteps] = [{steps}], got "
                f"{tuple(alphas_cumprod.shape)}"
            )
    return {
        "huber_c": check_number("huber_c", huber_c, low=0.0, high=1.0, low_inclusive=False),
        "schedule": check_choice("schedule", schedule, SCHEDULES),
        "huber_scale": check_number("huber_scale", huber_scale, low=0.0, low_inclusive=False),
        "num_train_timesteps": steps,
        "alphas_cumprod": alphas_cumprod,
    }


def _default_alphas_cumprod(steps: int, device: torch.device) -> Tensor:
    # diffusers' DDPMScheduler default: linear betas from 1e-4 to 0.02, in float64.
    betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64, device=device)
    return torch.cumprod(1.0 - betas, dim=0)


def _huber_c(
    timesteps: Tensor,
    *,
    huber_c: float,
    schedule: str,
    huber_scale: float,
    num_train_timesteps: int,
    alphas_cumprod: Tensor | None,
) -> Tensor:
    # The per-sample c(t) of the authors' diffusers scripts, in float64.
    t = timesteps.to(torch.float64)
    if schedule == "constant":
        return torch.full_like(t, huber_c * huber_scale)
    if schedule == "exponential":
        return torch.exp(math.log(huber_c) / num_train_timesteps * t) * huber_scale
    abar = alphas_cumprod if alphas_cumprod is not None else None
    if abar is None:
        abar = _default_alphas_cumprod(num_train_timesteps, timesteps.device)
    abar = abar.to(device=timesteps.device, dtype=torch.float64)[timesteps.long()]
    sigma = ((1.0 - abar) / abar).sqrt()
    # As in the scripts, huber_scale does not enter the snr schedule.
    return (1.0 - huber_c) / (1.0 + sigma) ** 2 + huber_c


def scheduled_pseudo_huber_loss(
    input: Tensor,
    target: Tensor,
    timesteps: Tensor,
    *,
    huber_c: float = 0.1,
    schedule: str = "snr",
    huber_scale: float = 1.0,
    num_train_timesteps: int = 1000,
    alphas_cumprod: Tensor | None = None,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Pseudo-Huber loss with a per-sample, timestep-dependent $c$ (diffusion training).

    Each sample $n$ of a diffusion batch has its own timestep $t_n$ and its own scale
    $c_n = c(t_n)$; the loss is element-wise
    [pseudo_huber_loss][lightning_losses.functional.pseudo_huber_loss]
    $2c_n(\sqrt{r^2 + c_n^2} - c_n)$, with $c_0$ = `huber_c`, $s$ = `huber_scale`, $T$ =
    `num_train_timesteps` and

    - `"snr"`: $c(t) = \frac{1 - c_0}{(1 + \sigma_t)^2} + c_0$,
      $\sigma_t = \sqrt{(1 - \bar\alpha_t)/\bar\alpha_t}$: $c \approx 1$ (quadratic, like MSE)
      at low noise, $c \to c_0$ (robust) at high noise;
    - `"exponential"`: $c(t) = s\,\exp(\ln(c_0)\, t / T)$, from $s$ at $t = 0$ to $s\,c_0$ at
      $t = T$;
    - `"constant"`: $c = s\,c_0$, plain pseudo-Huber.

    This is the authors' code (the diffusers scheduled-Huber example scripts: `conditional_loss`
    with `loss_type="huber"` and the `huber_c` schedule there, including that `huber_scale` does
    not enter `"snr"`), checked against those scripts. The scripts' default is `"snr"`; which
    schedule the paper recommends for each domain was not verified. $\bar\alpha_t$ defaults to
    diffusers' `DDPMScheduler()` (linear betas $10^{-4}$ to $0.02$); pass your scheduler's
    `alphas_cumprod` otherwise.

    Paper: *Improving Diffusion Models's Data-Corruption Resistance using Scheduled Pseudo-Huber
    Loss*, Khrapov et al. (arXiv:2403.16728).

    Args:
        input: `[N, *]` model predictions (e.g. predicted noise).
        target: `[N, *]` targets, same shape.
        timesteps: `[N]` integer timesteps in `[0, num_train_timesteps)`, one per sample.
        huber_c: $c_0 \in (0, 1]$.
        schedule: `"snr" | "exponential" | "constant"`.
        huber_scale: $s > 0$, multiplies $c$ in the exponential and constant schedules.
        num_train_timesteps: $T$, the number of diffusion steps.
        alphas_cumprod: `[T]` cumulative products $\bar\alpha_t$ of the noise scheduler (only the
            `"snr"` schedule uses it); `None`: diffusers' default DDPM schedule.
        reduction: `"mean" | "sum" | "none"`: mean or sum over all elements, or `[N, *]`.
        validate_args: check that every timestep lies in `[0, num_train_timesteps)` (a host
            sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating `input`/`target`, non-integer `timesteps`.
        ValueError: shapes differ, `timesteps` not `[N]` or out of range (with
            `validate_args`), bad hyperparameters.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import scheduled_pseudo_huber_loss
        >>> x, y, t = torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([0, 999])
        >>> scheduled_pseudo_huber_loss(x, y, t, reduction="none")[:, 0]  # c ≈ 1 vs c ≈ 0.1
        tensor([0.8241, 0.1811])
    """
    check_reduction(reduction)
    hp = _check_scheduled_args(
        huber_c=huber_c,
        schedule=schedule,
        huber_scale=huber_scale,
        num_train_timesteps=num_train_timesteps,
        alphas_cumprod=alphas_cumprod,
    )
    check_pair(input, target)
    check_tensor("timesteps", timesteps, floating=False)
    if timesteps.shape != input.shape[:1]:
        raise ValueError(
            f"timesteps must have shape [N] = [{input.shape[0]}] (one per sample of input), got "
            f"{tuple(timesteps.shape)}"
        )
    if validate_args and timesteps.numel() > 0:
        low, high = int(timesteps.min()), int(timesteps.max())
        if low < 0 or high >= hp["num_train_timesteps"]:
            raise ValueError(
                f"timesteps must lie in [0, num_train_timesteps={hp['num_train_timesteps']}), "
                f"got values in [{low}, {high}]"
            )
    input, target = upcast(input), upcast(target)
    c = _huber_c(timesteps, **hp).to(input.dtype)
    c = c.reshape(-1, *([1] * (input.ndim - 1)))
    return reduce_loss(_pseudo_huber(input - target, c), reduction)


@register_loss("scheduled_pseudo_huber")
class ScheduledPseudoHuberLoss(Loss):
    r"""Pseudo-Huber loss with a timestep-scheduled $c$ per sample (arXiv:2403.16728).

    See [scheduled_pseudo_huber_loss][lightning_losses.functional.scheduled_pseudo_huber_loss]
    for the `"snr"`, `"exponential"` and `"constant"` schedules (the authors' diffusers scripts).

    Args:
        huber_c: $c_0 \in (0, 1]$.
        schedule: `"snr" | "exponential" | "constant"`.
        huber_scale: multiplies $c$ in the exponential and constant schedules.
        num_train_timesteps: the number of diffusion steps $T$.
        alphas_cumprod: `[T]` $\bar\alpha_t$ of your noise scheduler, or `None` for diffusers'
            default DDPM schedule (a buffer: it follows `.to(device)`).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check the timestep range (a host sync).

    Shape:
        - input, target: `[N, *]`; timesteps: `[N]` integers.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ScheduledPseudoHuberLoss
        >>> loss = ScheduledPseudoHuberLoss(schedule="constant", huber_c=0.5)
        >>> loss(torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([10]))  # 2·0.5·(√1.25 − 0.5)
        tensor(0.6180)
    """

    functional = staticmethod(scheduled_pseudo_huber_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(
        self,
        huber_c: float = 0.1,
        schedule: str = "snr",
        huber_scale: float = 1.0,
        num_train_timesteps: int = 1000,
        alphas_cumprod: Tensor | None = None,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_scheduled_args(
                huber_c=huber_c,
                schedule=schedule,
                huber_scale=huber_scale,
                num_train_timesteps=num_train_timesteps,
                alphas_cumprod=alphas_cumprod,
            ),
        )

    def forward(self, input: Tensor, target: Tensor, timesteps: Tensor) -> Tensor:
        """Loss of `input [N, *]` against `target [N, *]` at integer `timesteps [N]`."""
        return self._call_functional(input, target, timesteps)
