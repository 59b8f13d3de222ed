"""Pinball loss and the quantile-crossing penalty against naive float64 references."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_losses import get_loss
from lightning_losses.functional import (
    monotone_quantiles,
    pinball_loss,
    quantile_crossing_penalty_loss,
)
from lightning_losses.losses import PinballLoss, QuantileCrossingPenaltyLoss


def _naive_pinball(pred, target, taus):
    """Per-position loss (`pred.shape[:-1]`) from the formula, in Python floats."""
    flat_pred = pred.reshape(-1, pred.shape[-1]).tolist()
    flat_y = target.reshape(-1).tolist()
    out = []
    for row, y in zip(flat_pred, flat_y, strict=True):
        terms = [max(t * (y - q), (t - 1) * (y - q)) for q, t in zip(row, taus, strict=True)]
        out.append(sum(terms) / len(terms))
    return torch.tensor(out, dtype=torch.float64).reshape(target.shape)


@pytest.mark.parametrize("shape", [(5,), (4, 6)])
def test_pinball_matches_naive_reference_every_reduction(shape):
    g = torch.Generator().manual_seed(0)
    taus = (0.05, 0.3, 0.5, 0.95)
    pred = torch.randn(*shape, 4, generator=g, dtype=torch.float64)
    target = torch.randn(*shape, generator=g, dtype=torch.float64)
    ref = _naive_pinball(pred, target, taus)
    got = pinball_loss(pred, target, quantiles=taus, reduction="none")
    assert got.shape == shape
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(pinball_loss(pred, target, quantiles=taus), ref.mean())
    torch.testing.assert_close(
        pinball_loss(pred, target, quantiles=taus, reduction="sum"), ref.sum()
    )
    module = PinballLoss(quantiles=taus, reduction="none")
    torch.testing.assert_close(module(pred, target), ref)


def test_pinball_gradient_is_the_subgradient_and_passes_gradcheck():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(6, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: pinball_loss(p, target, reduction="none"), (pred,))
    pinball_loss(pred, target, reduction="sum").backward()
    taus = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    # d/dq ρ_τ(y − q) = −τ when y > q, 1 − τ when y < q; divided by Q.
    expected = torch.where(target[:, None] > pred, -taus, 1 - taus) / 3
    torch.testing.assert_close(pred.grad, expected)


def test_pinball_at_median_is_half_the_absolute_error():
    g = torch.Generator().manual_seed(2)
    pred = torch.randn(8, 1, generator=g)
    target = torch.randn(8, generator=g)
    got = pinball_loss(pred, target, quantiles=(0.5,), reduction="none")
    torch.testing.assert_close(got, 0.5 * (pred[:, 0] - target).abs())
    torch.testing.assert_close(
        pinball_loss(pred, target, quantiles=(0.5,)),
        0.5 * torch.nn.functional.l1_loss(pred[:, 0], target),
    )


@pytest.mark.parametrize("tau", [0.1, 0.25, 0.9])
def test_pinball_minimiser_over_a_constant_is_the_empirical_quantile(tau):
    # The pinball risk of a constant is piecewise linear and convex with kinks at the data, so
    # its minimum over the data points is the global one: the ceil(N·τ)-th smallest value.
    g = torch.Generator().manual_seed(3)
    y = torch.randn(201, generator=g, dtype=torch.float64).exp()  # skewed: mean ≠ quantiles
    risks = torch.stack(
        [pinball_loss(c.expand(201, 1), y, quantiles=(tau,)) for c in y.reshape(-1, 1)]
    )
    best = y[risks.argmin()]
    expected = y.sort().values[math.ceil(201 * tau) - 1]
    assert best == expected
    # Gradient descent on a free constant reaches it too.
    c = y.mean().reshape(1, 1).clone().requires_grad_(True)
    opt = torch.optim.SGD([c], lr=0.5)
    for step in range(800):
        for group in opt.param_groups:
            group["lr"] = 2.0 / (1 + step) ** 0.6
        opt.zero_grad()
        pinball_loss(c.expand(201, 1), y, quantiles=(tau,)).backward()
        opt.step()
    lo, hi = y.sort().values[math.ceil(201 * tau) - 2 : math.ceil(201 * tau)]
    assert lo - 0.05 <= c.item() <= hi + 0.05


def test_pinball_equals_the_scaled_pytorch_forecasting_and_neuralforecast_conventions():
    # pytorch-forecasting (not installed here) QuantileLoss.loss: errors = target − pred,
    # 2·max((q − 1)·errors, q·errors) per element, then the mean over all elements. Transcribed:
    g = torch.Generator().manual_seed(4)
    taus = [0.1, 0.5, 0.9]
    pred = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    target = torch.randn(4, 5, generator=g, dtype=torch.float64)
    q = torch.tensor(taus, dtype=torch.float64)
    errors = target[..., None] - pred
    pf = (2 * torch.max((q - 1) * errors, q * errors)).mean()
    torch.testing.assert_close(pf, 2 * pinball_loss(pred, target, quantiles=taus))
    # neuralforecast MQLoss (not installed): losses = (1 / len(q4)) · (q·relu(y − ŷ) +
    # (1 − q)·relu(ŷ − y)) with q4 the [1, 1, 1, Q] view (len 1), summed over everything and
    # divided by the summed [B, h, N, 1] weights: Σ over quantiles, mean over the rest.
    nf = (q * errors.clamp(min=0) + (1 - q) * (-errors).clamp(min=0)).sum(-1).mean()
    torch.testing.assert_close(nf, 3 * pinball_loss(pred, target, quantiles=taus))


def test_sort_option_scores_the_sorted_quantiles_and_never_increases_the_loss():
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(50, 4, generator=g, dtype=torch.float64)
    target = torch.randn(50, generator=g, dtype=torch.float64)
    taus = (0.1, 0.4, 0.6, 0.9)
    sorted_loss = pinball_loss(pred, target, quantiles=taus, non_crossing="sort", reduction="none")
    torch.testing.assert_close(sorted_loss, _naive_pinball(pred.sort(-1).values, target, taus))
    raw = pinball_loss(pred, target, quantiles=taus, reduction="none")
    # Rearrangement inequality: sorting the predictions along τ lowers Σ_k ρ_τk for every y.
    assert (sorted_loss <= raw + 1e-12).all()
    assert (sorted_loss < raw - 1e-6).any()


def test_increments_parametrisation_is_monotone_and_scored_as_such():
    g = torch.Generator().manual_seed(6)
    raw = 5 * torch.randn(30, 7, 5, generator=g, dtype=torch.float64)
    q = monotone_quantiles(raw, "increments")
    assert (q.diff(dim=-1) > 0).all()
    # q_1 = x_1, q_k = x_1 + Σ_{j=2..k} softplus(x_j), written out.
    sp = torch.log1p(torch.exp(raw[..., 1:]))
    manual = torch.cat([raw[..., :1], raw[..., :1] + sp.cumsum(-1)], dim=-1)
    torch.testing.assert_close(q, manual)
    target = torch.randn(30, 7, generator=g, dtype=torch.float64)
    taus = (0.1, 0.3, 0.5, 0.7, 0.9)
    got = pinball_loss(raw, target, quantiles=taus, non_crossing="increments", reduction="none")
    assert got.shape == (30, 7)
    torch.testing.assert_close(got, _naive_pinball(manual, target, taus))
    assert torch.equal(monotone_quantiles(raw, "none"), raw)


def test_pinball_rejects_mismatched_shapes_and_levels():
    with pytest.raises(ValueError, match="len\\(quantiles\\)"):
        pinball_loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="target"):
        pinball_loss(torch.zeros(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="input"):
        pinball_loss(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match="increasing"):
        PinballLoss(quantiles=(0.9, 0.1))
    with pytest.raises(ValueError, match="non_crossing"):
        monotone_quantiles(torch.zeros(2, 3), "clip")


def _naive_penalty(pred, lam):
    rows = pred.reshape(-1, pred.shape[-1]).tolist()
    out = [lam * sum(max(0.0, a - b) for a, b in itertools.pairwise(r)) for r in rows]
    return torch.tensor(out, dtype=torch.float64).reshape(pred.shape[:-1])


def test_crossing_penalty_matches_naive_reference_and_vanishes_on_monotone_input():
    g = torch.Generator().manual_seed(7)
    pred = torch.randn(5, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    got = quantile_crossing_penalty_loss(pred, lam=0.3, reduction="none")
    torch.testing.assert_close(got, _naive_penalty(pred.detach(), 0.3))
    assert torch.autograd.gradcheck(
        lambda p: quantile_crossing_penalty_loss(p, lam=0.3, reduction="none"), (pred,)
    )
    monotone = pred.detach().sort(-1).values
    assert (quantile_crossing_penalty_loss(monotone, reduction="none") == 0).all()
    assert get_loss("quantile_crossing_penalty")(monotone) == 0
    torch.testing.assert_close(
        QuantileCrossingPenaltyLoss(lam=0.3, reduction="sum")(pred.detach()),
        _naive_penalty(pred.detach(), 0.3).sum(),
    )


def test_crossing_penalty_is_the_riemann_sum_of_the_negative_derivative():
    # ∫_0^1 max(0, −∂g/∂τ) dτ for g(τ) = sin(2πτ) is the total decrease of g: 2.
    tau = torch.linspace(0, 1, 2001, dtype=torch.float64)
    g = torch.sin(2 * math.pi * tau).unsqueeze(0)
    torch.testing.assert_close(
        quantile_crossing_penalty_loss(g), torch.tensor(2.0, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_crossing_penalty_needs_two_quantiles():
    with pytest.raises(ValueError, match="2 quantiles"):
        quantile_crossing_penalty_loss(torch.zeros(3, 1))
