"""Pseudo-Huber and scheduled pseudo-Huber against float64 formulas of the authors' scripts."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_losses.functional import pseudo_huber_loss, scheduled_pseudo_huber_loss
from lightning_losses.losses import PseudoHuberLoss, ScheduledPseudoHuberLoss


def _naive(pred, target, c):
    """2c(sqrt(r² + c²) − c) in Python floats; `c` a float or one value per row."""
    rows = pred.reshape(pred.shape[0], -1).tolist()
    trows = target.reshape(target.shape[0], -1).tolist()
    cs = c if isinstance(c, list) else [c] * len(rows)
    out = [
        [2 * ci * (math.sqrt((p - t) ** 2 + ci**2) - ci) for p, t in zip(r, tr, strict=True)]
        for r, tr, ci in zip(rows, trows, cs, strict=True)
    ]
    return torch.tensor(out, dtype=torch.float64).reshape(pred.shape)


@pytest.mark.parametrize("c", [0.05, 1.0, 3.0])
def test_pseudo_huber_matches_the_formula_and_gradcheck(c):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 5, generator=g, dtype=torch.float64)
    ref = _naive(pred.detach(), target, c)
    torch.testing.assert_close(pseudo_huber_loss(pred, target, c=c, reduction="none"), ref)
    torch.testing.assert_close(PseudoHuberLoss(c=c)(pred, target), ref.mean())
    assert torch.autograd.gradcheck(lambda p: pseudo_huber_loss(p, target, c=c), (pred,))
    # Derivative 2c·r / sqrt(r² + c²).
    pseudo_huber_loss(pred, target, c=c, reduction="sum").backward()
    r = pred.detach() - target
    torch.testing.assert_close(pred.grad, 2 * c * r / (r**2 + c**2).sqrt())


def test_pseudo_huber_limits_squared_error_and_scaled_absolute_error():
    c = 0.7
    small = torch.tensor([1e-4, -3e-4], dtype=torch.float64)
    got = pseudo_huber_loss(small, torch.zeros(2, dtype=torch.float64), c=c, reduction="none")
    torch.testing.assert_close(
        got / small**2, torch.ones(2, dtype=torch.float64), rtol=1e-6, atol=0
    )
    big = torch.tensor([1e4, -5e5], dtype=torch.float64)
    got = pseudo_huber_loss(big, torch.zeros(2, dtype=torch.float64), c=c, reduction="none")
    torch.testing.assert_close(
        got / (2 * c * big.abs()), torch.ones(2, dtype=torch.float64), rtol=1e-4, atol=0
    )
    # Small residuals in float32 keep their digits (no cancellation in the written form).
    tiny = torch.tensor([1e-5])
    torch.testing.assert_close(pseudo_huber_loss(tiny, torch.zeros(1), c=1.0), torch.tensor(1e-10))


def _alphas_cumprod_ddpm(steps):
    # diffusers DDPMScheduler() default, written out: linear betas 1e-4 .. 0.02, cumulative product.
    out, prod = [], 1.0
    for i in range(steps):
        beta = 1e-4 + (0.02 - 1e-4) * i / (steps - 1)
        prod *= 1.0 - beta
        out.append(prod)
    return out


def _script_c(t, schedule, huber_c, huber_scale, steps, abar):
    """The authors' diffusers scripts' Huber-c schedule, in Python floats."""
    if schedule == "exponential":
        alpha = -math.log(huber_c) / steps
        return math.exp(-alpha * t) * huber_scale
    if schedule == "snr":
        sigma = ((1.0 - abar[t]) / abar[t]) ** 0.5
        return (1 - huber_c) / (1 + sigma) ** 2 + huber_c
    return huber_c * huber_scale


@pytest.mark.parametrize("schedule", ["snr", "exponential", "constant"])
@pytest.mark.parametrize("huber_scale", [1.0, 2.5])
def test_scheduled_pseudo_huber_matches_the_scripts_per_sample(schedule, huber_scale):
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(5, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 250, 600, 999])
    abar = _alphas_cumprod_ddpm(1000)
    cs = [_script_c(int(ti), schedule, 0.1, huber_scale, 1000, abar) for ti in t]
    ref = _naive(pred.detach(), target, cs)
    loss = ScheduledPseudoHuberLoss(schedule=schedule, huber_scale=huber_scale, reduction="none")
    torch.testing.assert_close(loss(pred, target, t), ref)
    torch.testing.assert_close(
        scheduled_pseudo_huber_loss(pred, target, t, schedule=schedule, huber_scale=huber_scale),
        ref.mean(),
    )
    assert torch.autograd.gradcheck(
        lambda p: scheduled_pseudo_huber_loss(p, target, t, schedule=schedule), (pred,)
    )


def test_scheduled_snr_uses_the_given_alphas_cumprod_and_constant_is_plain_pseudo_huber():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    t = torch.tensor([0, 1, 2])
    abar = torch.tensor([0.9, 0.5, 0.1])
    cs = [_script_c(i, "snr", 0.2, 1.0, 3, abar.tolist()) for i in range(3)]
    got = scheduled_pseudo_huber_loss(
        pred, target, t, huber_c=0.2, num_train_timesteps=3, alphas_cumprod=abar, reduction="none"
    )
    torch.testing.assert_close(got, _naive(pred.double(), target.double(), cs).float())
    const = ScheduledPseudoHuberLoss(schedule="constant", huber_c=0.3, huber_scale=2.0)
    torch.testing.assert_close(const(pred, target, t), pseudo_huber_loss(pred, target, c=0.6))
    # The snr schedule starts near 1 (MSE-like) at t = 0 and ends near huber_c at t = T − 1.
    r = torch.full((2, 1), 1e-3)
    small = scheduled_pseudo_huber_loss(
        r, torch.zeros(2, 1), torch.tensor([0, 999]), reduction="none"
    )
    ratio = (small / r**2).squeeze(1)  # ≈ 1 for any c at small residuals
    torch.testing.assert_close(ratio, torch.ones(2), rtol=1e-3, atol=0)


def test_scheduled_pseudo_huber_rejects_bad_timesteps():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="timesteps"):
        scheduled_pseudo_huber_loss(x, x, torch.tensor([0, 1000]))
    with pytest.raises(ValueError, match="timesteps"):
        scheduled_pseudo_huber_loss(x, x, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="timesteps"):
        scheduled_pseudo_huber_loss(x, x, torch.tensor([0.0, 1.0]))
    # validate_args=False skips only the host-syncing range check.
    out = scheduled_pseudo_huber_loss(x, x, torch.tensor([0, 5]), validate_args=False)
    assert out == 0
