"""StableMax cross-entropy and `log_stablemax` (`losses/classification/stablemax.py`)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import (
    StableMaxCrossEntropyLoss,
)
from tests.losses._helpers import (
    DTYPES,
    SHAPES,
    assert_value_and_grad,
    class_target,
    randn,
)


def _s(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x + 1, 1 / (1 - torch.where(x < 0, x, torch.zeros_like(x))))


def test_stablemax_is_continuous_at_zero_and_normalised():
    eps = torch.tensor([-1e-9, 0.0, 1e-9], dtype=torch.float64)
    torch.testing.assert_close(_s(eps), torch.ones(3, dtype=torch.float64), atol=2e-9, rtol=0)
    z = randn(7, 9, dtype=torch.float64, scale=5.0)
    p = LF.log_stablemax(z).exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(p, _s(z) / _s(z).sum(-1, keepdim=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_stablemax_ce_matches_naive_reference(dtype, shape):
    x = randn(*shape, dtype=dtype, scale=3.0)
    y = class_target(shape)

    def reference(z):
        s = _s(z.double())
        p = s / s.sum(1, keepdim=True)
        return -torch.log(p.gather(1, y.unsqueeze(1)).squeeze(1)).to(dtype)

    assert_value_and_grad(lambda z: StableMaxCrossEntropyLoss(reduction="none")(z, y), reference, x)


def test_stablemax_avoids_softmax_collapse():
    # Correct but large logits: softmax CE in float32 rounds p_y to exactly 1 (loss and gradient
    # exactly 0, "softmax collapse"); StableMax keeps a finite, non-zero loss and gradient.
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 300.0, 1e4]], requires_grad=True)
    y = torch.tensor([0, 2])
    ce = F.cross_entropy(z, y)
    (g_ce,) = torch.autograd.grad(ce, z)
    assert ce.item() == 0.0 and (g_ce == 0).all()
    sm = LF.stablemax_cross_entropy(z, y)
    (g_sm,) = torch.autograd.grad(sm, z)
    assert torch.isfinite(sm) and sm.item() > 0
    assert torch.isfinite(g_sm).all() and g_sm.abs().sum() > 0
    expected = (
        math.log((1e4 + 1 + 1 / (1 + 1e4) + 1) / (1e4 + 1))
        + math.log((1e4 + 1 + 301 + 1 / (1 + 1e4)) / (1e4 + 1))
    ) / 2
    torch.testing.assert_close(
        sm.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-7
    )


def test_stablemax_gradient_at_zero_logits_is_the_smooth_one():
    # s'(0) = 1 from both sides: at all-zero logits dL/dz = p - onehot with p uniform, like CE.
    z = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 3])
    LF.stablemax_cross_entropy(z, y, reduction="sum").backward()
    torch.testing.assert_close(
        z.grad, torch.full((2, 4), 0.25, dtype=torch.float64) - F.one_hot(y, 4).double()
    )


def test_log_stablemax_is_the_log_of_normalised_s_along_dim():
    z = randn(3, 4, dtype=torch.float64)
    expected = (_s(z) / _s(z).sum(-1, keepdim=True)).log()
    torch.testing.assert_close(LF.log_stablemax(z), expected)
    torch.testing.assert_close(LF.log_stablemax(z.T, dim=0), expected.T)
