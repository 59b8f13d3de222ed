"""The label-noise-robust losses (`losses/robust/`): limits, symmetry, ranges, authors' code.

The references for RCE / NCE / NFL / APL reproduce the formulas of the authors' code
(`HanxunH/Active-Passive-Losses`, `loss.py`): RCE clamps softmax to `[1e-7, 1]` and the one-hot
to `[1e-4, 1]`; NFL takes its focal weights from `.data` (detached).
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
    ActivePassiveLoss,
    CompSumLoss,
    GeneralizedCrossEntropyLoss,
    NormalizedFocalLoss,
    SymmetricCrossEntropyLoss,
)
from lightning_losses.losses._classification import prepare_classification
from tests.losses._helpers import DTYPES, assert_value_and_grad, randint, randn


def _p_y(z, y):
    return torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)


# -- official-code references (written from the formulas of loss.py) ---------------------------


def official_rce(z, y, scale=1.0):
    pred = torch.clamp(torch.softmax(z, 1), min=1e-7, max=1.0)
    one_hot = torch.clamp(F.one_hot(y, z.shape[1]).to(z.dtype), min=1e-4, max=1.0)
    return scale * (-(pred * torch.log(one_hot)).sum(1))


def official_nce(z, y, scale=1.0):
    log_p = F.log_softmax(z, 1)
    one_hot = F.one_hot(y, z.shape[1]).to(z.dtype)
    return scale * (-(one_hot * log_p).sum(1)) / (-log_p.sum(1))


def official_nfl(z, y, gamma=0.5, scale=1.0):
    log_p = F.log_softmax(z, 1)
    normalizer = (-((1 - log_p.detach().exp()) ** gamma) * log_p).sum(1)
    log_pt = log_p.gather(1, y[:, None]).squeeze(1)
    pt = log_pt.detach().exp()
    return scale * (-((1 - pt) ** gamma) * log_pt) / normalizer


def official_mae(z, y, scale=1.0):
    return scale * (1 - _p_y(z, y))


# -- GCE ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_gce_limits(dtype):
    x = randn(10, 7, dtype=dtype)
    y = randint(7, 10)
    # q -> 0: (1 - p^q)/q -> -log p.
    assert_value_and_grad(
        lambda z: LF.generalized_cross_entropy(z, y, q=1e-4, reduction="none"),
        lambda z: F.cross_entropy(z, y, reduction="none"),
        x,
        rtol=2e-3,
        atol=1e-3,
    )
    # q = 1: MAE 1 - p_y.
    assert_value_and_grad(
        lambda z: LF.generalized_cross_entropy(z, y, q=1.0, reduction="none"),
        lambda z: 1 - _p_y(z, y),
        x,
    )


@pytest.mark.parametrize("q", [0.3, 0.7])
def test_gce_matches_formula(q):
    x = randn(4, 5, 3, dtype=torch.float64)
    y = randint(5, 4, 3)
    p_y = lambda z: torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)  # noqa: E731
    assert_value_and_grad(
        lambda z: GeneralizedCrossEntropyLoss(q=q, reduction="none")(z, y),
        lambda z: (1 - p_y(z) ** q) / q,
        x,
    )


# -- comp-sum ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_comp_sum_special_cases(dtype):
    x = randn(12, 6, dtype=dtype)
    y = randint(6, 12)
    cases = {
        1.0: lambda z: F.cross_entropy(z, y, reduction="none"),
        1.7: lambda z: LF.generalized_cross_entropy(z, y, q=0.7, reduction="none"),
        2.0: lambda z: 1 - _p_y(z, y),
        0.0: lambda z: 1 / _p_y(z, y) - 1,
        # u = Σ_{k≠y} exp(z_k - z_y); Φ_τ(u) = ((1 + u)^{1-τ} - 1) / (1 - τ)
        0.5: lambda z: ((1 + (torch.exp(z - z.gather(1, y[:, None])).sum(1) - 1)) ** 0.5 - 1) / 0.5,
    }
    for tau, ref in cases.items():
        assert_value_and_grad(
            lambda z, tau=tau: CompSumLoss(tau=tau, reduction="none")(z, y),
            ref,
            x,
            rtol=1e-4,
            atol=1e-5,
        )


def test_comp_sum_is_continuous_in_tau_at_one():
    x, y = randn(5, 4, dtype=torch.float64), randint(4, 5)
    near = LF.comp_sum_loss(x, y, tau=1.0 + 1e-7, reduction="none")
    torch.testing.assert_close(near, F.cross_entropy(x, y, reduction="none"), rtol=1e-5, atol=1e-6)


# -- NCE / NFL: symmetry and range -------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 6), c=st.integers(2, 12), seed=st.integers(0, 1000), scale=st.floats(0.1, 20.0)
)
def test_normalized_losses_are_symmetric_and_in_range(n, c, seed, scale):
    z = randn(n, c, dtype=torch.float64, seed=seed, scale=scale)
    for fn in (
        lambda y: LF.normalized_cross_entropy(z, y, reduction="none"),
        lambda y: LF.normalized_focal_loss(z, y, gamma=0.5, reduction="none"),
        lambda y: LF.normalized_focal_loss(
            z, y, gamma=2.0, detach_focal_weights=False, reduction="none"
        ),
    ):
        per_label = torch.stack([fn(torch.full((n,), j)) for j in range(c)], 1)
        assert (per_label >= 0).all() and (per_label <= 1).all()
        torch.testing.assert_close(per_label.sum(1), torch.ones(n, dtype=torch.float64))


@pytest.mark.parametrize("shift", [0.0, 1e4, -1e4])
def test_nce_float32_matches_float64_formula_at_large_logits(shift):
    # The fused forward reads log p from one softmax (log p_k = z_k - max z + log p_max): large
    # logits of either sign must not cancel in the row sum Σ_k log p_k.
    g = torch.Generator().manual_seed(0)
    z32 = (torch.randn(8, 50, generator=g) * 5 + shift).requires_grad_(True)
    y = torch.randint(0, 50, (8,), generator=g)
    z64 = z32.detach().double().requires_grad_(True)
    log_p = z64.log_softmax(1)
    ref = log_p.gather(1, y[:, None]).squeeze(1) / log_p.sum(1)
    ours = LF.normalized_cross_entropy(z32, y, reduction="none")
    torch.testing.assert_close(ours.double(), ref.detach(), rtol=1e-5, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.sum(), z32)
    (g_ref,) = torch.autograd.grad(ref.sum(), z64)
    torch.testing.assert_close(g_ours.double(), g_ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nce_and_nfl_match_official_code(dtype):
    x = randn(16, 10, dtype=dtype)
    y = randint(10, 16)
    assert_value_and_grad(
        lambda z: LF.normalized_cross_entropy(z, y, scale=2.0, reduction="none"),
        lambda z: official_nce(z, y, 2.0),
        x,
    )
    for gamma in (0.5, 2.0):
        # detach_focal_weights=True (default) reproduces the official gradient, weights detached.
        assert_value_and_grad(
            lambda z, gamma=gamma: LF.normalized_focal_loss(z, y, gamma=gamma, reduction="none"),
            lambda z, gamma=gamma: official_nfl(z, y, gamma),
            x,
        )
    # gamma = 0 is NCE.
    assert_value_and_grad(
        lambda z: LF.normalized_focal_loss(z, y, gamma=0.0, reduction="none"),
        lambda z: official_nce(z, y),
        x,
    )


def test_nfl_detached_gradient_differs_from_the_true_derivative_and_gradchecks_when_not_detached():
    x = randn(3, 4, dtype=torch.float64).requires_grad_(True)
    y = randint(4, 3)
    full = NormalizedFocalLoss(gamma=2.0, detach_focal_weights=False).double()
    assert torch.autograd.gradcheck(lambda z: full(z, y), (x,))
    detached = NormalizedFocalLoss(gamma=2.0)
    torch.testing.assert_close(detached(x, y), full(x, y))  # same value
    (g_det,) = torch.autograd.grad(detached(x, y), x)
    (g_full,) = torch.autograd.grad(full(x, y), x)
    assert not torch.allclose(g_det, g_full)


# -- RCE / MAE / SCE ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_rce_and_mae_match_official_code(dtype):
    x = randn(16, 10, dtype=dtype)  # moderate logits: softmax > 1e-7, so the pred clamp is inactive
    y = randint(10, 16)
    assert_value_and_grad(
        lambda z: LF.reverse_cross_entropy(z, y, scale=0.5, reduction="none"),
        lambda z: official_rce(z, y, 0.5),
        x,
        rtol=1e-5,
        atol=1e-5,
    )
    assert_value_and_grad(
        lambda z: LF.mean_absolute_error_loss(z, y, reduction="none"),
        lambda z: official_mae(z, y),
        x,
    )
    # The paper's A = -4 via log_zero.
    torch.testing.assert_close(
        LF.reverse_cross_entropy(x, y, log_zero=-4.0, reduction="none"), 4 * (1 - _p_y(x, y))
    )


def test_rce_closed_form_deviates_from_clamped_official_by_at_most_c_1e7_a():
    x = randn(8, 6, dtype=torch.float64, scale=30.0)  # tiny probabilities: the clamp matters
    y = randint(6, 8)
    diff = (LF.reverse_cross_entropy(x, y, reduction="none") - official_rce(x, y)).abs()
    assert (diff <= 6 * 1e-7 * 9.22).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha,beta", [(0.1, 1.0), (6.0, 0.1), (1.0, 0.0)])
def test_sce_matches_official_formula(dtype, alpha, beta):
    x = randn(12, 10, dtype=dtype)
    y = randint(10, 12)
    assert_value_and_grad(
        lambda z: SymmetricCrossEntropyLoss(alpha=alpha, beta=beta, reduction="none")(z, y),
        lambda z: alpha * F.cross_entropy(z, y, reduction="none") + official_rce(z, y, beta),
        x,
        rtol=1e-5,
        atol=1e-5,
    )


# -- APL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "active,passive", [("nce", "rce"), ("nce", "mae"), ("nfl", "rce"), ("nfl", "mae")]
)
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (10.0, 0.1)])
def test_apl_matches_official_code(dtype, active, passive, alpha, beta):
    x = randn(20, 10, dtype=dtype)
    y = randint(10, 20)
    act = {"nce": official_nce, "nfl": official_nfl}[active]
    pas = {"rce": official_rce, "mae": official_mae}[passive]
    # Official NCEandRCE etc.: alpha * Active(scale=1).mean() + beta * Passive(scale=1).mean().
    ours = ActivePassiveLoss(active=active, passive=passive, alpha=alpha, beta=beta)
    assert_value_and_grad(
        lambda z: ours(z, y),
        lambda z: alpha * act(z, y).mean() + beta * pas(z, y).mean(),
        x,
        rtol=1e-5,
        atol=1e-5,
    )


# -- LDR-KL ------------------------------------------------------------------------------------


def official_ldr_kl(z, y, threshold=2.0, lam=1.0):
    """From the authors' `LDRLoss_V1` forward (softplus, mean-normalise, max-shifted LSE)."""
    one_hot = F.one_hot(y, z.shape[1]).to(z.dtype)
    s = F.softplus(z)
    s = s / s.mean(1, keepdim=True)
    diff = (threshold * (1 - one_hot) + s - (s * one_hot).sum(1, keepdim=True)) / lam
    m = diff.max(1, keepdim=True).values.detach()
    return (lam * (torch.log(torch.exp(diff - m).mean(1, keepdim=True)) + m)).squeeze(1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam,margin", [(1.0, 2.0), (0.5, 0.1), (3.0, 1.0)])
def test_ldr_kl_matches_authors_code(dtype, lam, margin):
    x = randn(16, 10, dtype=dtype)
    y = randint(10, 16)
    assert_value_and_grad(
        lambda z: LF.ldr_kl_loss(z, y, lam=lam, margin=margin, reduction="none"),
        lambda z: official_ldr_kl(z, y, margin, lam),
        x,
        rtol=1e-5,
        atol=1e-5,
    )


def test_ldr_kl_limits():
    x = randn(8, 5, dtype=torch.float64)
    y = randint(5, 8)
    raw = dict(normalize_scores=False, reduction="none")
    # λ = 1, no margin, raw logits: log mean_k exp(z_k - z_y) = CE - log C.
    torch.testing.assert_close(
        LF.ldr_kl_loss(x, y, lam=1.0, margin=0.0, **raw),
        F.cross_entropy(x, y, reduction="none") - math.log(5),
    )
    # λ -> ∞: the mean margin; λ -> 0: the max margin (Crammer-Singer).
    gap = x - x.gather(1, y[:, None]) + 0.5 * (1 - F.one_hot(y, 5).double())
    torch.testing.assert_close(
        LF.ldr_kl_loss(x, y, lam=1e6, margin=0.5, **raw), gap.mean(1), rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(
        LF.ldr_kl_loss(x, y, lam=1e-4, margin=0.5, **raw), gap.max(1).values, rtol=0, atol=5e-4
    )
    # Normalised scores lie in [0, C], so the loss is bounded by C + margin whatever the logits.
    big = randn(8, 5, dtype=torch.float64, scale=1e3)
    assert (LF.ldr_kl_loss(big, y, margin=2.0, reduction="none") <= 5 + 2.0 + 1e-9).all()


# -- the shared log p_y helper (ClassificationBatch.log_p_target) ------------------------------


def _autograd_log_p_y(z, y):
    return F.log_softmax(z, -1).gather(-1, y[:, None]).squeeze(-1)


def _fused_log_p_y(z, y):
    return prepare_classification(z, y).log_p_target()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [0.1, 3.0, 1e4])
def test_log_p_target_matches_log_softmax_in_value_and_gradient(dtype, scale):
    x = randn(32, 7, dtype=dtype, scale=scale)
    if scale == 1e4:  # every sign pattern, ties of the max included
        x = torch.sign(x) * 1e4
    y = randint(7, 32)
    assert_value_and_grad(
        lambda z: _fused_log_p_y(z, y), lambda z: _autograd_log_p_y(z, y), x, **tol_for(dtype)
    )


def tol_for(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}


def test_log_p_target_handles_masked_classes_and_a_target_that_is_not_the_max():
    x = torch.tensor([[0.0, -math.inf, 3.0, 1.0], [5.0, 2.0, -math.inf, -1.0]], dtype=torch.float64)
    y = torch.tensor([3, 1])
    assert_value_and_grad(
        lambda z: _fused_log_p_y(z, y), lambda z: _autograd_log_p_y(z, y), x, rtol=1e-12, atol=1e-12
    )


def test_log_p_target_is_twice_differentiable():
    x = randn(4, 5, dtype=torch.float64).requires_grad_(True)
    y = randint(5, 4)
    assert torch.autograd.gradgradcheck(lambda z: _fused_log_p_y(z, y), (x,))
    # Through a loss: a gradient penalty equals the one autograd gives for the textbook formula.
    for fn, ref in (
        (
            lambda z: LF.generalized_cross_entropy(z, y, q=0.7),
            lambda z: ((1 - _p_y(z, y) ** 0.7) / 0.7).mean(),
        ),
        (lambda z: LF.mean_absolute_error_loss(z, y), lambda z: (1 - _p_y(z, y)).mean()),
    ):
        penalties = []
        for f in (fn, ref):
            (g,) = torch.autograd.grad(f(x), x, create_graph=True)
            (gg,) = torch.autograd.grad(g.square().sum(), x)
            penalties.append(gg)
        torch.testing.assert_close(penalties[0], penalties[1])


def test_log_p_target_reads_the_log_probs_cache_and_leaves_it_correct():
    x = randn(6, 5, dtype=torch.float64)
    y = randint(5, 6)
    batch = prepare_classification(x, y)
    first = batch.log_p_target()  # fused path: the cache stays empty
    assert batch._log_probs is None
    torch.testing.assert_close(batch.log_probs(), F.log_softmax(x, -1))
    cached = batch.log_p_target()  # now read from the cache
    torch.testing.assert_close(first, cached)
    torch.testing.assert_close(cached, _autograd_log_p_y(x, y))


# -- speed contract: saved-tensor memory never above the naive formula -------------------------


def _saved_bytes(fn, x):
    """Bytes of the distinct storages autograd saves for backward (the input not counted)."""
    z = x.clone().requires_grad_(True)
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() != z.untyped_storage().data_ptr():
            seen[(storage.data_ptr(), storage.nbytes())] = storage  # kept alive: no address reuse
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(z)
    out.backward()
    return sum(key[1] for key in seen)


def naive_gce(z, y, q=0.7):
    return ((1 - _p_y(z, y) ** q) / q).mean()


NAIVE = {
    # registry name: (ours, the naive formula it must not exceed in saved bytes)
    "prob_mae": (
        lambda z, y: LF.mean_absolute_error_loss(z, y),
        lambda z, y: (1 - _p_y(z, y)).mean(),
    ),
    "gce": (lambda z, y: LF.generalized_cross_entropy(z, y), naive_gce),
    "comp_sum": (
        lambda z, y: LF.comp_sum_loss(z, y, tau=1.5),
        lambda z, y: ((_p_y(z, y) ** 0.5 - 1) / -0.5).mean(),
    ),
    "normalized_ce": (
        lambda z, y: LF.normalized_cross_entropy(z, y),
        lambda z, y: official_nce(z, y).mean(),
    ),
    "nfl": (lambda z, y: LF.normalized_focal_loss(z, y), lambda z, y: official_nfl(z, y).mean()),
    "rce": (lambda z, y: LF.reverse_cross_entropy(z, y), lambda z, y: official_rce(z, y).mean()),
    "sce": (
        lambda z, y: LF.symmetric_cross_entropy(z, y),
        lambda z, y: 0.1 * F.cross_entropy(z, y) + official_rce(z, y).mean(),
    ),
    "apl": (
        lambda z, y: LF.active_passive_loss(z, y),
        lambda z, y: official_nce(z, y).mean() + official_rce(z, y).mean(),
    ),
    "ldr_kl": (lambda z, y: LF.ldr_kl_loss(z, y), lambda z, y: official_ldr_kl(z, y).mean()),
}


@pytest.mark.parametrize("name", sorted(NAIVE))
def test_saved_tensor_memory_is_at_most_the_naive_formulas(name):
    x, y = randn(256, 100), randint(100, 256)
    ours, naive = NAIVE[name]
    torch.testing.assert_close(ours(x, y), naive(x, y), rtol=1e-4, atol=1e-5)
    mine, theirs = _saved_bytes(lambda z: ours(z, y), x), _saved_bytes(lambda z: naive(z, y), x)
    # Allowed on top: O(N) bookkeeping (the valid-row mask, one [N] row result), ≤ 8 bytes a
    # row; the [N, C] tensors (400 bytes a row here, 4000 at C=1000) must not exceed the naive.
    assert mine <= theirs + 8 * x.shape[0], (
        f"{name}: saves {mine} bytes, the naive formula {theirs}"
    )


def test_target_only_losses_save_one_probability_matrix():
    # GCE, MAE, RCE, SCE and comp-sum keep p [M, C] and nothing else of that size.
    x, y = randn(256, 100), randint(100, 256)
    matrix = 256 * 100 * 4
    for name in ("prob_mae", "gce", "rce", "sce", "comp_sum"):
        saved = _saved_bytes(lambda z, name=name: NAIVE[name][0](z, y), x)
        assert matrix <= saved < matrix + 256 * 100, (name, saved)


# -- contract details owned by the family ------------------------------------------------------


def test_renamed_registry_names_and_classes():
    from lightning_losses import get_loss, get_loss_class
    from lightning_losses.losses import MeanAbsoluteErrorLoss, NormalizedCrossEntropyLoss

    assert get_loss_class("prob_mae") is MeanAbsoluteErrorLoss
    assert get_loss_class("normalized_ce") is NormalizedCrossEntropyLoss
    assert get_loss_class("normalized_cross_entropy") is NormalizedCrossEntropyLoss
    for old in ("nce", "mae"):
        with pytest.raises(KeyError, match="renamed"):
            get_loss(old)
    import lightning_losses.losses as LL

    for gone in ("GeneralizedCrossEntropy", "NormalizedCrossEntropy", "ReverseCrossEntropy"):
        assert not hasattr(LL, gone)


def test_active_passive_repr_shows_the_chosen_terms():
    text = repr(ActivePassiveLoss(active="nfl", passive="mae", alpha=10.0, beta=0.1))
    assert "active='nfl'" in text and "passive='mae'" in text and "alpha=10.0" in text
    assert ActivePassiveLoss().hparams["active"] == "nce"


@pytest.mark.parametrize(
    "fn,flag",
    [(LF.normalized_focal_loss, "detach_focal_weights"), (LF.ldr_kl_loss, "normalize_scores")],
)
def test_bool_flags_reject_strings_and_ints_in_the_functional_too(fn, flag):
    x, y = randn(3, 4), randint(4, 3)
    for bad in ("False", 0, 1):
        with pytest.raises(TypeError, match=flag):
            fn(x, y, **{flag: bad})


def test_losses_on_dense_inputs_match_the_flattened_rows():
    # [N, C, T] logits: the class dimension is 1, the result has shape [N, T].
    x, y = randn(3, 5, 4, dtype=torch.float64), randint(5, 3, 4)
    flat_x, flat_y = x.movedim(1, -1).reshape(-1, 5), y.reshape(-1)
    for fn in (
        LF.generalized_cross_entropy,
        LF.mean_absolute_error_loss,
        LF.normalized_cross_entropy,
        LF.active_passive_loss,
        LF.ldr_kl_loss,
    ):
        dense = fn(x, y, reduction="none")
        assert dense.shape == (3, 4)
        torch.testing.assert_close(dense.reshape(-1), fn(flat_x, flat_y, reduction="none"))


@pytest.mark.parametrize(
    "fn",
    [
        LF.generalized_cross_entropy,
        LF.mean_absolute_error_loss,
        LF.reverse_cross_entropy,
        LF.symmetric_cross_entropy,
        lambda z, y, **kw: LF.comp_sum_loss(z, y, tau=0.5, **kw),
        LF.normalized_cross_entropy,
        LF.active_passive_loss,
        lambda z, y, **kw: LF.active_passive_loss(z, y, active="nce", passive="mae", **kw),
    ],
    ids=["gce", "prob_mae", "rce", "sce", "comp_sum", "normalized_ce", "apl", "apl_nce_mae"],
)
def test_fused_backwards_are_twice_differentiable(fn):
    # Gradient penalties / meta-learning (create_graph=True) must see the true second derivative.
    x = randn(4, 5, dtype=torch.float64).requires_grad_(True)
    y = randint(5, 4)
    assert torch.autograd.gradgradcheck(lambda z: fn(z, y, reduction="none"), (x,))
