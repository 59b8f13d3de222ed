"""MADL, CARD's signal-decay loss and regression + binned classification, against references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_losses.functional import (
    madl_loss,
    regression_with_binned_classification_loss,
    signal_decay_robust_loss,
)
from lightning_losses.losses import (
    MADLLoss,
    RegressionWithBinnedClassificationLoss,
    SignalDecayRobustLoss,
)


def _naive_madl(pred, ret):
    out = []
    for p, r in zip(pred.tolist(), ret.tolist(), strict=True):
        s = 0.0 if p * r == 0 else math.copysign(1.0, p * r)
        out.append(-s * abs(r))
    return torch.tensor(out, dtype=torch.float64)


def test_madl_matches_the_paper_formula_and_its_best_case():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(20, generator=g, dtype=torch.float64)
    ret = 0.02 * torch.randn(20, generator=g, dtype=torch.float64)
    torch.testing.assert_close(madl_loss(pred, ret, reduction="none"), _naive_madl(pred, ret))
    torch.testing.assert_close(MADLLoss()(pred, ret), _naive_madl(pred, ret).mean())
    # The right direction everywhere earns the mean absolute return; the wrong one loses it.
    torch.testing.assert_close(madl_loss(3 * ret, ret), -ret.abs().mean())
    torch.testing.assert_close(madl_loss(-ret, ret), ret.abs().mean())


def test_madl_exact_has_zero_gradient_smoothed_trains_and_tends_to_exact():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(16, generator=g, dtype=torch.float64, requires_grad=True)
    ret = torch.randn(16, generator=g, dtype=torch.float64)
    madl_loss(pred, ret).backward()
    assert torch.equal(pred.grad, torch.zeros(16, dtype=torch.float64))
    smooth = madl_loss(pred, ret, smooth_tau=0.5, reduction="none")
    torch.testing.assert_close(smooth, -torch.tanh(pred.detach() / 0.5) * ret)
    assert torch.autograd.gradcheck(lambda p: madl_loss(p, ret, smooth_tau=0.5), (pred,))
    # tanh(x/τ) → sign(x) as τ → 0 (|pred| ≥ 1e-3 here).
    away = pred.detach() + 1e-2 * torch.sign(pred.detach())
    torch.testing.assert_close(
        madl_loss(away, ret, smooth_tau=1e-5), madl_loss(away, ret), atol=1e-12, rtol=0
    )


def test_madl_keeps_a_nan_forecast_visible():
    out = madl_loss(torch.tensor([float("nan"), 1.0]), torch.tensor([0.1, 0.1]), reduction="none")
    assert torch.isnan(out[0]) and out[1] == -0.1


def test_signal_decay_robust_loss_is_the_official_codes_weighted_l1():
    # wxie9/CARD exp_long_term_forecasting.py: ratio_l = 1/sqrt(l + 1) for l = 0..H−1, multiplied
    # into outputs and targets [N, H, C], then nn.L1Loss() (mean over everything).
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(4, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    ratio = torch.tensor([1 / math.sqrt(i + 1) for i in range(6)], dtype=torch.float64)
    ratio = ratio.unsqueeze(-1)
    official = torch.nn.L1Loss()(pred * ratio, target * ratio)
    torch.testing.assert_close(signal_decay_robust_loss(pred, target), official)
    per_sample = ((pred - target).abs() * ratio).mean(dim=(1, 2))
    torch.testing.assert_close(SignalDecayRobustLoss(reduction="none")(pred, target), per_sample)
    assert torch.autograd.gradcheck(lambda p: signal_decay_robust_loss(p, target), (pred,))


def test_signal_decay_robust_loss_reduces_to_l1():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(5, 1, 2, generator=g), torch.randn(5, 1, 2, generator=g)
    torch.testing.assert_close(signal_decay_robust_loss(pred, target), F.l1_loss(pred, target))
    pred, target = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    torch.testing.assert_close(
        signal_decay_robust_loss(pred, target, power=0.0), F.l1_loss(pred, target)
    )
    with pytest.raises(ValueError, match="input"):
        signal_decay_robust_loss(torch.zeros(3), torch.zeros(3))


def _naive_binned(pred, logits, target, low, high, lam):
    out = []
    b = logits.shape[1]
    for p, z, y in zip(pred.tolist(), logits.tolist(), target.tolist(), strict=True):
        k = min(max(math.floor((y - low) / (high - low) * b), 0), b - 1)
        lse = math.log(sum(math.exp(v) for v in z))
        out.append((p - y) ** 2 + lam * (lse - z[k]))
    return torch.tensor(out, dtype=torch.float64)


def test_binned_classification_loss_matches_naive_reference():
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(8, generator=g, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(8, 5, generator=g, dtype=torch.float64, requires_grad=True)
    # Inside the range, on the edges, and outside it (clamped to the end bins).
    target = torch.tensor([-3.0, -2.0, -0.5, 0.0, 1.0, 1.99, 2.0, 7.0], dtype=torch.float64)
    ref = _naive_binned(pred.detach(), logits.detach(), target, -2.0, 2.0, 0.7)
    loss = RegressionWithBinnedClassificationLoss(low=-2.0, high=2.0, lam=0.7, reduction="none")
    torch.testing.assert_close(loss(pred, logits, target), ref)
    assert torch.autograd.gradcheck(
        lambda p, z: regression_with_binned_classification_loss(p, z, target, low=-2, high=2),
        (pred, logits),
    )


def test_binned_classification_with_zero_weight_is_mse():
    g = torch.Generator().manual_seed(5)
    pred, target = torch.randn(6, generator=g), torch.rand(6, generator=g)
    logits = torch.randn(6, 3, generator=g)
    got = regression_with_binned_classification_loss(pred, logits, target, lam=0.0)
    torch.testing.assert_close(got, F.mse_loss(pred, target))
    with pytest.raises(ValueError, match="bin_logits"):
        regression_with_binned_classification_loss(pred, logits[:, :1], target)
    with pytest.raises(ValueError, match="high"):
        RegressionWithBinnedClassificationLoss(low=1.0, high=1.0)
