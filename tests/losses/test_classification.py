"""Family A classification losses: parity with torch / timm and naive references.

Peers (test-only): `torch.nn.functional.cross_entropy`, `timm.loss.LabelSmoothingCrossEntropy` /
`SoftTargetCrossEntropy` / `PolyCrossEntropy`. Losses without a peer are checked against float64
references written straight from the paper's formula. The focal losses are in `test_focal.py`.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lightning_losses.functional as LF
from lightning_losses.losses import (
    LabelSmoothingCrossEntropyLoss,
    LogitAdjustedLoss,
    PolyLoss,
    SphericalZLoss,
    SquentropyLoss,
    StableMaxCrossEntropyLoss,
    class_balanced_weights,
)
from lightning_losses.losses.classification import log_stablemax
from tests.losses._helpers import DTYPES, assert_value_and_grad, randint, randn

SHAPES = [(8, 5), (4, 3, 6), (2, 4, 3, 5)]  # [N, C], [N, C, L], [N, C, H, W]


def _target(shape, seed=1):
    n, c, *rest = shape
    return randint(c, n, *rest, seed=seed)


# -- cross-entropy family vs torch / timm -----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_ce_matches_torch(dtype, shape, smoothing):
    x = randn(*shape, dtype=dtype)
    y = _target(shape)
    w = torch.rand(shape[1], generator=torch.Generator().manual_seed(2), dtype=dtype) + 0.5
    for weight in (None, w):
        for reduction in ("none", "mean", "sum"):
            assert_value_and_grad(
                lambda z, weight=weight, reduction=reduction: LF.cross_entropy(
                    z, y, weight=weight, label_smoothing=smoothing, reduction=reduction
                ),
                lambda z, weight=weight, reduction=reduction: F.cross_entropy(
                    z, y, weight=weight, label_smoothing=smoothing, reduction=reduction
                ),
                x,
            )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(8, 5), (32, 100)])
@pytest.mark.parametrize("smoothing", [0.1, 0.25])
def test_label_smoothing_ce_matches_timm(dtype, n, c, smoothing):
    from timm.loss import LabelSmoothingCrossEntropy as TimmLSCE

    x = randn(n, c, dtype=dtype)
    y = randint(c, n)
    # timm smooths with ε·mean_k(-log p_k), torch with ε/C per class: the same formula.
    assert_value_and_grad(
        lambda z: LabelSmoothingCrossEntropyLoss(smoothing=smoothing)(z, y),
        lambda z: TimmLSCE(smoothing=smoothing)(z, y),
        x,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(8, 5), (16, 50)])
def test_soft_target_ce_matches_timm(dtype, n, c):
    from timm.loss import SoftTargetCrossEntropy

    x = randn(n, c, dtype=dtype)
    soft = torch.softmax(randn(n, c, dtype=dtype, seed=7), dim=-1)
    assert_value_and_grad(
        lambda z: LF.cross_entropy(z, soft), lambda z: SoftTargetCrossEntropy()(z, soft), x
    )


# -- PolyLoss --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_poly_epsilon_zero_equals_cross_entropy(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = _target(shape)
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
    """Float64 Poly-N from the formula: Σ_k t_k w_k (-log p_k) + Σ_j ε_j (1 - Σ_k t_k p_k)^j · w_t."""
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


# -- squentropy ------------------------------------------------------------------------------------


def test_squentropy_is_cross_entropy_when_wrong_logits_are_zero():
    y = randint(6, 8)
    z = F.one_hot(y, 6).double() * randn(8, 1, dtype=torch.float64)
    torch.testing.assert_close(
        LF.squentropy_loss(z, y, reduction="none"), F.cross_entropy(z, y, reduction="none")
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_squentropy_matches_naive_reference(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = _target(shape)
    c = shape[1]

    def reference(z):
        zz = z.double().movedim(1, -1).reshape(-1, c)
        yy = y.reshape(-1)
        ce = torch.logsumexp(zz, 1) - zz.gather(1, yy[:, None]).squeeze(1)
        sq = sum((zz[:, k] ** 2) * (yy != k) for k in range(c)) / (c - 1)
        return (ce + sq).reshape(y.shape).to(dtype)

    assert_value_and_grad(lambda z: SquentropyLoss(reduction="none")(z, y), reference, x)


# -- StableMax -------------------------------------------------------------------------------------


def _s(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x + 1, 1 / (1 - torch.where(x < 0, x, torch.zeros_like(x))))


def test_stablemax_is_continuous_at_zero_and_normalised():
    eps = torch.tensor([-1e-9, 0.0, 1e-9], dtype=torch.float64)
    torch.testing.assert_close(_s(eps), torch.ones(3, dtype=torch.float64), atol=2e-9, rtol=0)
    z = randn(7, 9, dtype=torch.float64, scale=5.0)
    p = log_stablemax(z).exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(p, _s(z) / _s(z).sum(-1, keepdim=True))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_stablemax_ce_matches_naive_reference(dtype, shape):
    x = randn(*shape, dtype=dtype, scale=3.0)
    y = _target(shape)

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


# -- logit adjustment ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_logit_adjusted_matches_shifted_cross_entropy(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = _target(shape)
    c = shape[1]
    counts = torch.arange(1, c + 1, dtype=dtype) ** 2
    priors = counts / counts.sum()
    view = (1, c) + (1,) * (len(shape) - 2)
    for tau in (0.5, 1.0):
        assert_value_and_grad(
            lambda z, tau=tau: LF.logit_adjusted_loss(z, y, counts, tau=tau, reduction="none"),
            lambda z, tau=tau: F.cross_entropy(
                z + tau * priors.log().view(view), y, reduction="none"
            ),
            x,
        )
    # tau = 0 and uniform priors are plain CE.
    ce = F.cross_entropy(x, y)
    torch.testing.assert_close(LF.logit_adjusted_loss(x, y, priors, tau=0.0), ce)
    torch.testing.assert_close(LF.logit_adjusted_loss(x, y, torch.full((c,), 3.0, dtype=dtype)), ce)


def test_logit_adjusted_priors_at_construction_or_call():
    x, y = randn(6, 4), randint(4, 6)
    priors = torch.tensor([0.4, 0.3, 0.2, 0.1])
    soft = torch.softmax(randn(6, 4, seed=3), 1)
    a = LogitAdjustedLoss(class_priors=priors, label_smoothing=0.1)(x, soft)
    b = LogitAdjustedLoss(label_smoothing=0.1)(x, soft, class_priors=priors)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, F.cross_entropy(x + priors.log(), soft, label_smoothing=0.1))
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss()(x, y)
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss()(x, y, class_priors=torch.ones(3))
    assert "class_priors" in LogitAdjustedLoss(class_priors=priors).state_dict()


# -- one-vs-rest -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_vs_rest_is_summed_binary_cross_entropy(dtype):
    x = randn(9, 5, dtype=dtype)
    y = randint(5, 9)
    assert_value_and_grad(
        lambda z: LF.one_vs_rest_loss(z, y, reduction="none"),
        lambda z: F.binary_cross_entropy_with_logits(
            z, F.one_hot(y, 5).to(dtype), reduction="none"
        ).sum(1),
        x,
    )


# -- class-balanced weights ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["inverse", "sqrt", "effective"])
def test_class_balanced_weights_uniform_counts_give_ones(mode):
    torch.testing.assert_close(class_balanced_weights([7, 7, 7, 7], mode=mode), torch.ones(4))


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(1, 5000), min_size=2, max_size=12), beta=st.floats(0.0, 0.9999))
def test_class_balanced_weights_match_formulas(counts, beta):
    n = torch.tensor(counts, dtype=torch.float64)
    c = len(counts)
    refs = {
        "inverse": 1 / n,
        "sqrt": 1 / n.sqrt(),
        "effective": (1 - beta) / (1 - beta**n) if beta > 0 else torch.ones_like(n),
    }
    for mode, ref in refs.items():
        w = class_balanced_weights(counts, mode=mode, beta=beta, dtype=torch.float64)
        torch.testing.assert_close(w, ref * c / ref.sum(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(w.sum(), torch.tensor(float(c), dtype=torch.float64))


def test_class_balanced_weights_plug_into_cross_entropy_and_reject_bad_counts():
    w = class_balanced_weights([100, 10, 1])
    x, y = randn(12, 3), randint(3, 12)
    torch.testing.assert_close(LF.cross_entropy(x, y, weight=w), F.cross_entropy(x, y, weight=w))
    with pytest.raises(ValueError, match="counts"):
        class_balanced_weights([3, 0, 2])
    with pytest.raises(ValueError, match="mode"):
        class_balanced_weights([3, 2], mode="log")
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights([3, 2], mode="effective", beta=1.0)


def test_stablemax_gradient_at_zero_logits_is_the_smooth_one():
    # s'(0) = 1 from both sides: at all-zero logits dL/dz = p - onehot with p uniform, like CE.
    z = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 3])
    LF.stablemax_cross_entropy(z, y, reduction="sum").backward()
    torch.testing.assert_close(
        z.grad, torch.full((2, 4), 0.25, dtype=torch.float64) - F.one_hot(y, 4).double()
    )


# -- spherical Z-loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_spherical_z_loss_matches_formula(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = _target(shape)

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


@pytest.mark.parametrize("fn", [LF.cross_entropy, LF.poly_loss, LF.focal_loss, LF.squentropy_loss])
def test_mean_over_only_ignored_targets_is_zero_with_zero_gradient(fn):
    z = randn(3, 4).requires_grad_(True)
    loss = fn(z, torch.full((3,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (z.grad == 0).all()


# -- Poly-1 vs timm --------------------------------------------------------------------------------


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


# -- spherical Z-loss in float16 -------------------------------------------------------------------


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


# -- logit adjustment: priors checks ---------------------------------------------------------------


def test_logit_adjusted_priors_checks_and_integer_counts():
    x, y = randn(6, 3), randint(3, 6)
    counts = [30, 6, 1]
    torch.testing.assert_close(
        LogitAdjustedLoss(class_priors=counts)(x, y),
        F.cross_entropy(x + torch.tensor(counts, dtype=torch.float32).log(), y),
    )
    torch.testing.assert_close(
        LF.logit_adjusted_loss(x, y, torch.tensor(counts)),
        F.cross_entropy(x + torch.tensor(counts, dtype=torch.float32).log(), y),
    )
    with pytest.raises(ValueError, match="class_priors must be finite and > 0"):
        LF.logit_adjusted_loss(x, y, torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss(class_priors=[1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss(class_priors=[[1.0, 2.0]])
    # validate_args=False skips the (host-syncing) positivity check, not the shape check.
    LF.logit_adjusted_loss(x, y, torch.tensor([1.0, 0.5, 2.0]), validate_args=False)
    with pytest.raises(ValueError, match="class_priors"):
        LF.logit_adjusted_loss(x, y, torch.ones(4), validate_args=False)


def test_log_stablemax_is_public_in_functional():
    z = randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(LF.log_stablemax(z), log_stablemax(z))
    torch.testing.assert_close(LF.log_stablemax(z.T, dim=0), log_stablemax(z, dim=-1).T)
