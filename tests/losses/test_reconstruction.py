"""The reconstruction losses against naive float64 references written from the formulas."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_losses import get_loss
from lightning_losses.functional import norm_pix_loss
from lightning_losses.losses import NormPixLoss
from lightning_losses.mixins import build_criterion


def _naive_norm_pix(pred, target, normalize, eps=1e-6):
    """Per-patch loss `[N, L]` from the formula, in Python floats (float64)."""
    n, length, p = target.shape
    out = torch.zeros(n, length, dtype=torch.float64)
    for i in range(n):
        for j in range(length):
            t = [float(v) for v in target[i, j]]
            if normalize:
                mu = sum(t) / p
                var = sum((v - mu) ** 2 for v in t) / (p - 1)  # unbiased
                t = [(v - mu) / math.sqrt(var + eps) for v in t]
            out[i, j] = sum((float(pred[i, j, k]) - t[k]) ** 2 for k in range(p)) / p
    return out


@pytest.mark.parametrize("normalize", [True, False])
def test_norm_pix_loss_matches_naive_reference_and_gradient(normalize):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    ref = _naive_norm_pix(pred.detach(), target, normalize)
    got = norm_pix_loss(pred, target, normalize=normalize, reduction="none")
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(norm_pix_loss(pred, target, normalize=normalize), ref.mean())
    torch.testing.assert_close(
        norm_pix_loss(pred, target, normalize=normalize, reduction="sum"), ref.sum()
    )
    # Gradient: d/dpred mean_k (pred - t)^2 = 2 (pred - t_normalised) / P, checked numerically.
    assert torch.autograd.gradcheck(
        lambda p: norm_pix_loss(p, target, normalize=normalize, reduction="none"), (pred,)
    )


def test_norm_pix_loss_eps_enters_the_variance():
    target = torch.tensor([[[0.0, 2.0]]], dtype=torch.float64)  # mean 1, unbiased variance 2
    pred = torch.zeros(1, 1, 2, dtype=torch.float64)
    got = norm_pix_loss(pred, target, eps=2.0, reduction="none")
    # Normalised target ±1/sqrt(2 + 2) = ±0.5: the squared error is 0.25 per pixel.
    torch.testing.assert_close(got, torch.tensor([[0.25]], dtype=torch.float64))
    torch.testing.assert_close(got, _naive_norm_pix(pred, target, True, eps=2.0))


def test_norm_pix_loss_blank_patch_is_finite_and_half_is_upcast():
    target = torch.zeros(1, 2, 4)
    target[0, 1] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    loss = norm_pix_loss(torch.zeros(1, 2, 4), target, reduction="none")
    assert torch.isfinite(loss).all() and loss[0, 0] == 0  # a blank patch normalises to zeros
    assert loss[0, 1] == pytest.approx(0.75, rel=1e-5)  # ±1 / sqrt(1/3 + eps), squared: 3/4
    half = norm_pix_loss(torch.zeros(1, 2, 4).half(), target.half(), reduction="none")
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, loss, atol=1e-3, rtol=0)


def test_norm_pix_class_matches_functional_and_is_built_by_name():
    g = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 4, 6, generator=g), torch.rand(3, 4, 6, generator=g)
    for kwargs in ({}, {"normalize": False, "eps": 1e-3}):
        for reduction in ("none", "mean", "sum"):
            torch.testing.assert_close(
                NormPixLoss(**kwargs, reduction=reduction)(pred, target),
                norm_pix_loss(pred, target, **kwargs, reduction=reduction),
            )
    built = get_loss("norm_pix", normalize=False)
    assert type(built) is NormPixLoss and built.normalize is False
    criterion = build_criterion({"name": "norm_pix"})
    assert criterion.reduction == "none" and criterion(pred, target).shape == (3, 4)
    assert NormPixLoss().element_mask(pred, target) is None  # every patch counts by default


def test_norm_pix_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="target must have the same shape"):
        norm_pix_loss(torch.zeros(1, 2, 4), torch.zeros(1, 2, 3))
    with pytest.raises(TypeError, match="input must be a floating"):
        norm_pix_loss(torch.zeros(1, 2, 4, dtype=torch.long), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match=r"input must have shape \[N, L, P\]"):
        norm_pix_loss(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="P ≥ 2"):
        norm_pix_loss(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1))
    # Without normalisation a single pixel per patch is fine: plain MSE.
    assert norm_pix_loss(torch.zeros(1, 2, 1), torch.ones(1, 2, 1), normalize=False) == 1
    with pytest.raises(TypeError, match="normalize"):
        NormPixLoss(normalize=1)
    with pytest.raises(ValueError, match="eps"):
        NormPixLoss(eps=-1e-6)
