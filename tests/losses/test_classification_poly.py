"""Poly-1 / Poly-N loss (`losses/classification/poly.py`).

Peers: `torch.nn.functional.cross_entropy` (`epsilon=0`), timm's `PolyCrossEntropy` (same
`epsilon` and `smoothing`), and a float64 reference written from the paper's formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import (
    PolyLoss,
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
def test_poly_epsilon_zero_equals_cross_entropy(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = class_target(shape)
    y.view(-1)[::3] = -100
    w = torch.rand(shape[1], generator=torch.Generator().manual_seed(2), dtype=dtype) + 0.5
    soft = torch.softmax(randn(*shape, dtype=dtype, seed=5), dim=1)
    for target in (y, soft):
        for weight in (None, w):
            for smoothing in (0.0, 0.2):
                for reduction in ("none", "mean", "sum"):
                    kw = dict(weight=weight, label_smoothing=smoothing, reduction=reduction)
                    assert_value_and_grad(
                        lambda z, target=target, kw=kw: LF.poly_loss(z, target, epsilon=0.0, **kw),
                        lambda z, target=target, kw=kw: F.cross_entropy(z, target, **kw),
                        x,
                    )


def _poly_reference(z, y, coeffs, weight=None, smoothing=0.0, soft=None):
    """Float64 Poly-N: Σ_k t_k w_k (-log p_k) + Σ_j ε_j (1 - Σ_k t_k p_k)^j · w_t."""
    z = z.double()
    c = z.shape[1]
    t = soft.double() if soft is not None else F.one_hot(y, c).double()
    t = t * (1 - smoothing) + smoothing / c
    p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
    w = torch.ones(c, dtype=torch.float64) if weight is None else weight.double()
    ce = -(t * w * torch.log(p)).sum(1)
    p_t = (t * p).sum(1)
    poly = sum(e * (1 - p_t) ** (j + 1) for j, e in enumerate(coeffs))
    return ce + poly * (t * w).sum(1)


@pytest.mark.parametrize("coeffs", [(1.0,), (2.0,), (-1.0,), (1.0, 0.5, -0.25)])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_poly_matches_float64_reference(coeffs, weighted, smoothing):
    x = randn(10, 6, dtype=torch.float64)
    y = randint(6, 10)
    w = (
        torch.rand(6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) + 0.5
        if weighted
        else None
    )
    eps = coeffs[0] if len(coeffs) == 1 else list(coeffs)
    assert_value_and_grad(
        lambda z: LF.poly_loss(
            z, y, epsilon=eps, weight=w, label_smoothing=smoothing, reduction="none"
        ),
        lambda z: _poly_reference(z, y, coeffs, w, smoothing),
        x,
    )
    soft = torch.softmax(randn(10, 6, dtype=torch.float64, seed=9), 1)
    assert_value_and_grad(
        lambda z: LF.poly_loss(z, soft, epsilon=eps, weight=w, reduction="none"),
        lambda z: _poly_reference(z, y, coeffs, w, soft=soft),
        x,
    )
    module = PolyLoss(epsilon=eps, weight=w, label_smoothing=smoothing, reduction="none")
    torch.testing.assert_close(module(x, y), _poly_reference(x, y, coeffs, w, smoothing))


def test_poly_gradient_wrt_p_t_is_minus_inverse_p_t_minus_epsilon():
    # L(p_t) = -log p_t + ε(1 - p_t) ⇒ dL/dp_t = -1/p_t - ε; by the chain rule through softmax,
    # dL/dz_k = (-1/p_y - ε) · p_y (δ_ky - p_k).
    eps = 1.7
    z = randn(5, 4, dtype=torch.float64).requires_grad_(True)
    y = randint(4, 5)
    LF.poly_loss(z, y, epsilon=eps, reduction="sum").backward()
    p = torch.softmax(z.detach(), 1)
    p_y = p.gather(1, y[:, None])
    expected = (-1 / p_y - eps) * p_y * (F.one_hot(y, 4) - p)
    torch.testing.assert_close(z.grad, expected)


def test_poly_n_rejects_bad_coefficients():
    with pytest.raises(ValueError, match="epsilon"):
        PolyLoss(epsilon=[-1.5, 1.0])
    with pytest.raises(ValueError, match="epsilon"):
        PolyLoss(epsilon=[])
    with pytest.raises(TypeError, match=r"epsilon\[1\]"):
        PolyLoss(epsilon=[1.0, "x"])


def test_poly_default_is_timm_poly_cross_entropy_at_epsilon_one():
    # timm's PolyCrossEntropy defaults to epsilon=2.0; epsilon=1.0 there reproduces our default.
    from timm.loss import PolyCrossEntropy

    x, y = randn(12, 7, dtype=torch.float32), randint(7, 12)  # timm computes in float32
    assert_value_and_grad(
        lambda z: PolyLoss()(z, y), lambda z: PolyCrossEntropy(epsilon=1.0)(z, y), x
    )
    assert not torch.allclose(PolyLoss()(x, y), PolyCrossEntropy()(x, y))


@pytest.mark.parametrize("epsilon", [2.0, -1.0])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_poly_matches_timm_poly_cross_entropy(epsilon, smoothing):
    from timm.loss import PolyCrossEntropy

    x = randn(12, 7, dtype=torch.float32)
    y = randint(7, 12)
    assert_value_and_grad(
        lambda z: PolyLoss(epsilon=epsilon, label_smoothing=smoothing, reduction="none")(z, y),
        lambda z: PolyCrossEntropy(epsilon=epsilon, smoothing=smoothing, reduction="none")(z, y),
        x,
    )
    soft = torch.softmax(randn(12, 7, seed=4), 1)
    assert_value_and_grad(
        lambda z: LF.poly_loss(z, soft, epsilon=epsilon),
        lambda z: PolyCrossEntropy(epsilon=epsilon)(z, soft),
        x,
    )


def test_poly_n_coefficients_are_stored_as_a_tuple():
    loss = PolyLoss(epsilon=[1.0, 0.5])
    assert loss.epsilon == (1.0, 0.5) and loss.hparams["epsilon"] == (1.0, 0.5)
    assert "epsilon=(1.0, 0.5)" in repr(loss)
    assert PolyLoss(epsilon=2).epsilon == 2.0
