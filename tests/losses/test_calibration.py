"""Calibration losses (`losses/calibration/`): dual focal and encouraging loss vs official code.

`Linwei94/DualFocalLoss` `Losses/dual_focal_loss.py`: `p_j` is the top of
`softmax * (softmax < p_y)`; gradients flow through `p_y` and `p_j`.
`lancopku/well-classified-examples-are-underestimated` `EncouragingLoss.py`: bonus
`log(clamp(1 - p, 1e-5))` for every class, tangent line above `log_end`, then
`nll_loss(log_p - bonus, y, weight, ignore_index)`.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import DualFocalLoss, EncouragingLoss
from tests.losses._helpers import DTYPES, assert_value_and_grad, randint, randn

# -- dual focal ------------------------------------------------------------------------------------


def official_dual_focal_loop(z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loop written from the official forward (no vectorisation)."""
    rows = []
    for i in range(z.shape[0]):
        log_p = F.log_softmax(z[i], 0)
        p = log_p.exp()
        log_p_k = log_p[y[i]]
        p_k = log_p_k.exp()
        masked = torch.stack([p[j] * (1.0 if bool(p[j] < p_k) else 0.0) for j in range(z.shape[1])])
        p_j = torch.topk(masked, 1)[0].squeeze()
        rows.append(-((1 - p_k + p_j) ** gamma) * log_p_k)
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gamma", [1.0, 2.0, 5.0])
def test_dual_focal_matches_official_loop(dtype, gamma):
    x = randn(24, 7, dtype=dtype)
    y = randint(7, 24)
    assert not (x.argmax(1) == y).all() and (x.argmax(1) == y).any()  # both branches exercised
    assert_value_and_grad(
        lambda z: LF.dual_focal_loss(z, y, gamma=gamma, reduction="none"),
        lambda z: official_dual_focal_loop(z, y, gamma),
        x,
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_dual_focal_fused_gradient_gradcheck_and_double_backward(gamma):
    # The fused backward (one multiply of p plus two scatters) against finite differences, and
    # create_graph=True (which differentiates the textbook expression) against them too.
    x = randn(10, 6, dtype=torch.float64).requires_grad_()
    y = randint(6, 10)
    for reduction in ("none", "mean"):
        fn = lambda z, r=reduction: LF.dual_focal_loss(z, y, gamma=gamma, reduction=r)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


def test_dual_focal_uses_next_probability_below_target_not_top_non_target():
    # p ∝ (4, 2, 1): with y = 1 the official p_j is p_2 (1/7), not the larger p_0 (4/7).
    z = torch.log(torch.tensor([[4.0, 2.0, 1.0]], dtype=torch.float64))
    expected = -((1 - 2 / 7 + 1 / 7) ** 2) * math.log(2 / 7)
    torch.testing.assert_close(
        LF.dual_focal_loss(z, torch.tensor([1]), gamma=2.0),
        torch.tensor(expected, dtype=torch.float64),
    )
    # With y = 2 (smallest) nothing lies below: p_j = 0, focal-like (1 - p_y)^γ.
    expected = -((1 - 1 / 7) ** 2) * math.log(1 / 7)
    torch.testing.assert_close(
        LF.dual_focal_loss(z, torch.tensor([2]), gamma=2.0),
        torch.tensor(expected, dtype=torch.float64),
    )
    # Ties with p_y are excluded (strict <).
    z = torch.zeros(1, 3, dtype=torch.float64)
    torch.testing.assert_close(
        LF.dual_focal_loss(z, torch.tensor([0]), gamma=1.0),
        torch.tensor(2 / 3 * math.log(3), dtype=torch.float64),
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dual_focal_gamma_zero_is_cross_entropy(dtype):
    x = randn(2, 5, 3, 4, dtype=dtype)
    y = randint(5, 2, 3, 4)
    y[0, 0, 0] = -100
    for reduction in ("none", "mean", "sum"):
        assert_value_and_grad(
            lambda z, reduction=reduction: DualFocalLoss(gamma=0.0, reduction=reduction)(z, y),
            lambda z, reduction=reduction: F.cross_entropy(z, y, reduction=reduction),
            x,
        )


# -- encouraging loss ------------------------------------------------------------------------------


def official_encouraging(z, y, log_end=0.75, weight=None, ignore_index=-100, reduction="mean"):
    log_p = F.log_softmax(z, 1)
    p = log_p.exp()
    bonus = torch.log(torch.clamp(1 - p, min=1e-5))
    if log_end != 1.0:
        after = 1 / (log_end - 1) * (p - log_end) + math.log(1 - log_end)
        bonus = torch.where(p > log_end, after, bonus)
    return F.nll_loss(
        log_p - bonus, y, weight=weight, ignore_index=ignore_index, reduction=reduction
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_end", [0.5, 0.75, 1.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_encouraging_matches_official_code(dtype, log_end, reduction):
    x = randn(32, 6, dtype=dtype, scale=3.0)  # wide spread of p_y on both sides of log_end
    y = x.argmax(1)
    y[::3] = randint(6, 11)
    y[5] = -100
    w = torch.rand(6, generator=torch.Generator().manual_seed(4), dtype=dtype) + 0.5
    p_y = torch.softmax(x, 1).gather(1, y.clamp_min(0)[:, None])
    assert (p_y > log_end).any() or log_end == 1.0
    for weight in (None, w):
        assert_value_and_grad(
            lambda z, weight=weight: EncouragingLoss(
                log_end=log_end, weight=weight, reduction=reduction
            )(z, y),
            lambda z, weight=weight: official_encouraging(
                z, y, log_end, weight, reduction=reduction
            ),
            x,
        )


def test_encouraging_never_exceeds_cross_entropy_and_full_bonus_at_log_end_one():
    x = randn(64, 8, dtype=torch.float64, scale=4.0)
    y = randint(8, 64)
    ce = F.cross_entropy(x, y, reduction="none")
    for log_end in (0.5, 0.75, 1.0):
        assert (LF.encouraging_loss(x, y, log_end=log_end, reduction="none") <= ce + 1e-12).all()
    p_y = torch.softmax(x, 1).gather(1, y[:, None]).squeeze(1)
    expected = -torch.log(p_y) + torch.log(torch.clamp(1 - p_y, min=1e-5))
    torch.testing.assert_close(LF.encouraging_loss(x, y, log_end=1.0, reduction="none"), expected)
