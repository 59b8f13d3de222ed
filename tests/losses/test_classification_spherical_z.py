"""Spherical Z-loss (`losses/classification/spherical_z.py`): formula, invariances, float16."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lightning_losses.functional as LF
from lightning_losses.losses import (
    SphericalZLoss,
)
from tests.losses._helpers import (
    DTYPES,
    SHAPES,
    assert_value_and_grad,
    class_target,
    randint,
    randn,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_spherical_z_loss_matches_formula(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = class_target(shape)

    def reference(o, a=0.5, b=2.0):
        o = o.double()
        mu = o.mean(1, keepdim=True)
        sigma = ((o**2).mean(1, keepdim=True) - mu**2).sqrt()  # the paper's σ² = E[o²] - μ²
        z = ((o - mu) / sigma).gather(1, y.unsqueeze(1)).squeeze(1)
        return (torch.log(1 + torch.exp(a * (b - z))) / a).to(dtype)

    assert_value_and_grad(
        lambda o: LF.spherical_z_loss(o, y, a=0.5, b=2.0, reduction="none"),
        reference,
        x,
        rtol=1e-5,
        atol=1e-5,
    )


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.01, 100.0), shift=st.floats(-100.0, 100.0), seed=st.integers(0, 999))
def test_spherical_z_loss_is_shift_and_scale_invariant(scale, shift, seed):
    o = randn(5, 7, dtype=torch.float64, seed=seed)
    y = randint(7, 5, seed=seed)
    base = LF.spherical_z_loss(o, y, reduction="none")
    torch.testing.assert_close(
        LF.spherical_z_loss(scale * o + shift, y, reduction="none"), base, rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("c", [2, 10, 1000])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_spherical_z_float16_all_equal_logits_have_finite_gradient(c, reduction):
    # σ = 0: the gradient scales as 1/σ_floor; the float16 floor keeps it inside float16's range.
    x = torch.full((4, c), 3.0, dtype=torch.float16, requires_grad=True)
    y = torch.tensor([0, 1, 1, 0])
    out = SphericalZLoss(reduction=reduction)(x, y)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # z_y = 0 for all-equal logits: ℓ = softplus(a b) / a.
    a, b = 0.1, 10.0
    expected = torch.nn.functional.softplus(torch.tensor(a * b)) / a
    scale = {"mean": 1.0, "sum": 4.0, "none": 1.0}[reduction]
    torch.testing.assert_close(out, (expected * scale).expand(out.shape))
    out.sum().backward()
    assert x.grad.dtype == torch.float16
    assert torch.isfinite(x.grad).all(), x.grad
    # The gradient points the right way: raise the target logit, lower the others.
    rows = torch.arange(4)
    assert (x.grad[rows, y] < 0).all()
    assert x.grad.float().sum(1).abs().max() < 1e-2 * x.grad.float().abs().max()  # shift-invariant


def test_spherical_z_float16_matches_float32_away_from_degenerate_rows():
    x = randn(16, 9, dtype=torch.float32, scale=3.0)
    y = randint(9, 16)
    half = x.half()
    ref = LF.spherical_z_loss(half.float(), y, reduction="none")
    torch.testing.assert_close(LF.spherical_z_loss(half, y, reduction="none"), ref)
    # bf16 keeps the float32 floor (same exponent range as float32): also finite at σ = 0.
    xb = torch.zeros(2, 5, dtype=torch.bfloat16, requires_grad=True)
    LF.spherical_z_loss(xb, torch.tensor([0, 4])).backward()
    assert torch.isfinite(xb.grad.float()).all()
