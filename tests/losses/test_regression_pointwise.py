"""Log-cosh, MSLE, MAPE and RMSE against torchmetrics, scikit-learn and float64 formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mean_absolute_percentage_error as sk_mape
from sklearn.metrics import mean_squared_log_error as sk_msle
from torchmetrics.functional import (
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_log_error,
)

from lightning_losses.functional import log_cosh_loss, mape_loss, msle_loss, rmse_loss
from lightning_losses.losses import LogCoshLoss, MAPELoss, MSLELoss, RMSELoss


def test_log_cosh_matches_the_formula_its_limits_and_gradient():
    x = torch.tensor([-30.0, -2.0, -0.1, 0.0, 0.3, 5.0, 40.0], dtype=torch.float64)
    ref = torch.tensor([math.log(math.cosh(v)) for v in x.tolist()], dtype=torch.float64)
    y = torch.zeros_like(x)
    torch.testing.assert_close(log_cosh_loss(x, y, reduction="none"), ref)
    torch.testing.assert_close(LogCoshLoss()(x, y), ref.mean())
    # Limits: x²/2 near 0, |x| − log 2 far out; finite where cosh overflows float32.
    small = torch.tensor([1e-3])
    torch.testing.assert_close(log_cosh_loss(small, torch.zeros(1)), small[0] ** 2 / 2)
    big = torch.tensor([1e4, -3e4])
    torch.testing.assert_close(
        log_cosh_loss(big, torch.zeros(2), reduction="none"), big.abs() - math.log(2)
    )
    xg = x.clone().requires_grad_(True)
    log_cosh_loss(xg, y, reduction="sum").backward()
    torch.testing.assert_close(xg.grad, torch.tanh(x))
    assert torch.autograd.gradcheck(lambda v: log_cosh_loss(v, y, reduction="none"), (xg,))


def test_msle_matches_torchmetrics_and_sklearn_on_non_negative_input():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 4, generator=g, dtype=torch.float64) * 5
    target = torch.rand(6, 4, generator=g, dtype=torch.float64) * 5
    torch.testing.assert_close(msle_loss(pred, target), mean_squared_log_error(pred, target))
    torch.testing.assert_close(
        MSLELoss()(pred, target).item(), sk_msle(target.numpy().ravel(), pred.numpy().ravel())
    )
    ref = (torch.log1p(pred) - torch.log1p(target)) ** 2
    torch.testing.assert_close(msle_loss(pred, target, reduction="none"), ref)


def test_msle_clips_negative_predictions_and_rejects_negative_targets():
    pred = torch.tensor([-0.5, -100.0, 2.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 2.0])
    out = msle_loss(pred, target, reduction="none")
    torch.testing.assert_close(out, torch.tensor([math.log(2) ** 2, 0.0, 0.0]))
    out.sum().backward()
    assert torch.equal(pred.grad, torch.zeros(3))  # clipped: no gradient
    with pytest.raises(ValueError, match="target"):
        msle_loss(torch.zeros(2), torch.tensor([0.0, -0.1]))


def test_mape_matches_torchmetrics_default_and_sklearn_with_its_epsilon():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(5, 3, generator=g, dtype=torch.float64)
    target = torch.randn(5, 3, generator=g, dtype=torch.float64)
    target[0, 0] = 0.0  # the epsilon matters here
    torch.testing.assert_close(
        MAPELoss()(pred, target), mean_absolute_percentage_error(pred, target)
    )
    eps = float(np.finfo(np.float64).eps)
    torch.testing.assert_close(
        mape_loss(pred, target, eps=eps).item(),
        sk_mape(target.numpy().ravel(), pred.numpy().ravel()),
    )
    ref = (pred - target).abs() / target.abs().clamp(min=1.17e-6)
    torch.testing.assert_close(mape_loss(pred, target, reduction="none"), ref)


def test_rmse_per_sample_matches_the_formula_and_torchmetrics_for_one_sample():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(4, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    ref = torch.tensor(
        [math.sqrt(((pred[i] - target[i]) ** 2).mean().item()) for i in range(4)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(rmse_loss(pred, target, reduction="none"), ref)
    torch.testing.assert_close(RMSELoss()(pred, target), ref.mean())
    one = rmse_loss(pred[:1], target[:1])
    torch.testing.assert_close(one, mean_squared_error(pred[:1], target[:1], squared=False))
    assert torch.autograd.gradcheck(lambda p: rmse_loss(p, target, reduction="none"), (pred,))


def test_rmse_zero_error_gives_zero_gradient_and_needs_two_dimensions():
    x = torch.zeros(2, 3, requires_grad=True)
    rmse_loss(x, torch.zeros(2, 3)).backward()
    assert torch.equal(x.grad, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="input"):
        rmse_loss(torch.zeros(3), torch.zeros(3))
