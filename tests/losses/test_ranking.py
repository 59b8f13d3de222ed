"""Family tests for the ranking losses: BPR, SimpleX CCL, sampled softmax, pointwise BCE.

References are written from the source formulas (recbole / RecBox are too heavy to install):

* RecBole `recbole/model/loss.py`:

      class BPRLoss(nn.Module):
          def __init__(self, gamma=1e-10): ...
          def forward(self, pos_score, neg_score):
              loss = -torch.log(self.gamma + torch.sigmoid(pos_score - neg_score)).mean()

* reczoo/RecBox `CosineContrastiveLoss(margin, negative_weight)` (SimpleX):

      pos_loss = torch.relu(1 - y_pred[:, 0])
      neg_loss = torch.relu(y_pred[:, 1:] - margin)
      if negative_weight: loss = pos_loss + neg_loss.mean(dim=-1) * negative_weight
      else:               loss = pos_loss + neg_loss.sum(dim=-1)
      loss = loss.mean()

BPR and sampled softmax have hand-fused forward/backward passes (for speed): their values
and gradients are compared with autograd through the reference formulas for every reduction, and
the memory they keep for backward is checked.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lightning_losses.functional as LF
from lightning_losses import get_loss
from lightning_losses.losses import (
    BinaryCrossEntropyRecLoss,
    BPRLoss,
    CosineContrastiveLoss,
    InputKind,
    SampledSoftmaxLoss,
)

REDUCTIONS = ("none", "mean", "sum")


def scores(n=7, k=4, seed=0, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.randn(n, generator=g, dtype=dtype) * scale).requires_grad_(True)
    neg = (torch.randn(n, k, generator=g, dtype=dtype) * scale).requires_grad_(True)
    return pos, neg


def grads(out, *xs):
    return torch.autograd.grad(out, xs)


def reduce(rows, reduction):
    return {"none": rows, "mean": rows.mean(), "sum": rows.sum()}[reduction]


def assert_same_value_and_grads(ours, ref, inputs, **tol):
    """Values agree, and so do the gradients of a random projection of the output."""
    torch.testing.assert_close(ours, ref, **tol)
    proj = torch.randn(ours.shape, generator=torch.Generator().manual_seed(7), dtype=ours.dtype)
    for a, b in zip(
        grads((ours * proj).sum(), *inputs), grads((ref * proj).sum(), *inputs), strict=True
    ):
        torch.testing.assert_close(a, b, **tol)


def saved_bytes(fn, *inputs):
    """Bytes of the tensors autograd keeps for backward, the inputs' own storages excluded."""
    seen = {}

    def pack(x):
        s = x.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn(*inputs)
    for x in inputs:
        seen.pop(x.untyped_storage().data_ptr(), None)
    return out, sum(seen.values())


def recbole_bpr_rows(pos, neg, gamma):
    return -torch.log(gamma + torch.sigmoid(pos[:, None] - neg)).mean(1)


def recbox_ccl(y_pred, margin, negative_weight):
    pos_loss = torch.relu(1 - y_pred[:, 0])
    neg_loss = torch.relu(y_pred[:, 1:] - margin)
    if negative_weight:
        loss = pos_loss + neg_loss.mean(dim=-1) * negative_weight
    else:
        loss = pos_loss + neg_loss.sum(dim=-1)
    return loss.mean()


def test_ranking_losses_declare_ranking_inputs_and_no_class_target():
    for cls in (BPRLoss, CosineContrastiveLoss, SampledSoftmaxLoss, BinaryCrossEntropyRecLoss):
        assert cls.input_kind == InputKind.RANKING and cls.target_arg is None
        assert cls().element_mask(torch.zeros(3), torch.zeros(3, 2)) is None


# ------------------------------------------------------------------------------------ BPR
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [1e-10, 1e-2, 0.3])
def test_bpr_reproduces_recbole_values_and_gradients(gamma, reduction):
    pos, neg = scores(k=5, scale=3.0)
    ours = LF.bpr_loss(pos, neg, gamma=gamma, reduction=reduction)
    ref = reduce(recbole_bpr_rows(pos, neg, gamma), reduction)
    assert_same_value_and_grads(ours, ref, (pos, neg))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bpr_gamma_zero_is_softplus_of_negative_margin(reduction):
    pos, neg = scores(k=3, scale=3.0)
    ours = LF.bpr_loss(pos, neg, gamma=0.0, reduction=reduction)
    ref = reduce(F.softplus(-(pos[:, None] - neg)).mean(1), reduction)
    assert_same_value_and_grads(ours, ref, (pos, neg))


def test_bpr_one_dim_negatives_are_recboles_call():
    pos, neg = scores(k=1)
    for gamma in (1e-10, 0.0):
        ours = BPRLoss(gamma=gamma)(pos, neg[:, 0])
        ref = -torch.log(gamma + torch.sigmoid(pos - neg[:, 0])).mean()
        assert_same_value_and_grads(ours, ref, (pos, neg))


def test_bpr_float32_matches_float64_reference():
    pos, neg = scores(n=64, k=16, dtype=torch.float32, scale=4.0)
    for reduction in REDUCTIONS:
        ours = LF.bpr_loss(pos, neg, reduction=reduction)
        ref = reduce(recbole_bpr_rows(pos.double(), neg.double(), 1e-10), reduction)
        torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-6)


def test_bpr_gamma_bounds_the_loss_for_hopeless_pairs():
    # -log(sigma(-1e4) + gamma) = -log(gamma): RecBole's guard, computed without overflow.
    pos = torch.tensor([-1e4], requires_grad=True)
    neg = torch.tensor([1e4], requires_grad=True)
    out = LF.bpr_loss(pos, neg, gamma=1e-10)
    torch.testing.assert_close(out, torch.tensor(23.0259), atol=1e-3, rtol=0)
    out.backward()
    assert pos.grad == 0 and neg.grad == 0  # flat there, as RecBole's formula
    assert LF.bpr_loss(torch.tensor([-1e4]), torch.tensor([1e4]), gamma=0.0) == 2e4


@pytest.mark.parametrize("gamma", [1e-10, 0.0])
def test_bpr_finite_at_extreme_scores_with_the_right_gradient_sign(gamma):
    pos = torch.tensor([1e4, -1e4, 0.0], requires_grad=True)
    neg = torch.tensor([[-1e4, 1e4], [1e4, -1e4], [0.0, 0.0]], requires_grad=True)
    out = LF.bpr_loss(pos, neg, gamma=gamma, reduction="sum")
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(pos.grad).all()
    assert torch.isfinite(neg.grad).all()
    # Row 2: Δ = 0, dℓ/dΔ = −σ(0)²/(σ(0)+γ)·… < 0 → raising the positive lowers the loss.
    assert pos.grad[2] < 0 and (neg.grad[2] > 0).all()


def test_bpr_multiple_negatives_is_mean_over_pairs():
    pos, neg = scores(k=3)
    rows = torch.stack([LF.bpr_loss(pos, neg[:, j], reduction="none") for j in range(3)], 1)
    torch.testing.assert_close(LF.bpr_loss(pos, neg, reduction="none"), rows.mean(1))


def test_bpr_saves_one_score_sized_tensor_half_of_recboles():
    pos, neg = scores(n=256, k=8, dtype=torch.float32)
    one = neg.numel() * neg.element_size()
    _, ours = saved_bytes(lambda p, n: LF.bpr_loss(p, n), pos, neg)
    _, ref = saved_bytes(lambda p, n: recbole_bpr_rows(p, n, 1e-10).mean(), pos, neg)
    assert ours <= one + 4096 and ref >= 2 * one, (ours, ref)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["bpr", "bpr_gamma0", "bce_rec", "sampled_softmax"])
def test_fused_losses_are_twice_differentiable(name, reduction):
    # create_graph=True (gradient penalties, meta-learning) must not silently drop the term.
    pos, neg = scores(n=4, k=3)
    if name == "bpr":
        ours = lambda p, n: LF.bpr_loss(p, n, gamma=0.05, reduction=reduction)  # noqa: E731
        ref = lambda p, n: reduce(recbole_bpr_rows(p, n, 0.05), reduction)  # noqa: E731
    elif name == "bpr_gamma0":
        ours = lambda p, n: LF.bpr_loss(p, n, gamma=0.0, reduction=reduction)  # noqa: E731
        ref = lambda p, n: reduce(F.softplus(n - p[:, None]).mean(1), reduction)  # noqa: E731
    elif name == "bce_rec":
        ours = lambda p, n: LF.bce_rec_loss(p, n, reduction=reduction)  # noqa: E731
        ref = lambda p, n: reduce(F.softplus(-p) + F.softplus(n).mean(1), reduction)  # noqa: E731
    else:
        ours = lambda p, n: LF.sampled_softmax_loss(  # noqa: E731
            p, n, temperature=0.7, reduction=reduction
        )
        ref = lambda p, n: cat_ce(p, n, 0.7, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradgradcheck(ours, (pos, neg))

    # BCE's positive and negative terms are separate: its penalty's gradient goes to pos.
    wrt = pos if name == "bce_rec" else neg

    def penalty(fn):  # d/d(wrt) of |d loss / d pos|²
        (gp,) = torch.autograd.grad(fn(pos, neg).sum(), pos, create_graph=True)
        return torch.autograd.grad(gp.square().sum(), wrt)[0]

    torch.testing.assert_close(penalty(ours), penalty(ref))


# ------------------------------------------------------------------------------------ CCL
@pytest.mark.parametrize("margin,negative_weight", [(0.8, None), (0.5, 2.0), (0.0, None)])
def test_ccl_matches_recbox_formula_with_gradients(margin, negative_weight):
    g = torch.Generator().manual_seed(3)
    pos = (torch.rand(9, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    neg = (torch.rand(9, 6, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    ours = CosineContrastiveLoss(margin=margin, negative_weight=negative_weight)(pos, neg)
    ref = recbox_ccl(torch.cat([pos.unsqueeze(1), neg], 1), margin, negative_weight)
    assert_same_value_and_grads(ours, ref, (pos, neg))


def test_ccl_is_zero_for_perfect_scores():
    pos, neg = torch.ones(4), torch.full((4, 5), 0.2)
    assert LF.cosine_contrastive_loss(pos, neg, margin=0.8) == 0


def test_ccl_hyperparameters_stored_under_their_names():
    loss = CosineContrastiveLoss(margin=0.5, negative_weight=2.0)
    assert loss.hparams == {"margin": 0.5, "negative_weight": 2.0}
    with pytest.raises(ValueError, match="negative_weight"):
        LF.cosine_contrastive_loss(torch.zeros(2), torch.zeros(2, 3), negative_weight=0.0)


# ---------------------------------------------------------------------- sampled softmax
def cat_ce(pos, neg, temperature=1.0, log_q=None, reduction="none"):
    neg = neg - log_q if log_q is not None else neg
    logits = torch.cat([pos[:, None], neg], 1) / temperature
    target = torch.zeros(len(pos), dtype=torch.long)
    return F.cross_entropy(logits, target, reduction=reduction)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("temperature", [1.0, 0.2, 3.0])
def test_sampled_softmax_equals_cross_entropy_on_concatenated_scores(temperature, reduction):
    pos, neg = scores(k=5, scale=2.0)
    ours = LF.sampled_softmax_loss(pos, neg, temperature=temperature, reduction=reduction)
    ref = cat_ce(pos, neg, temperature, reduction=reduction)
    assert_same_value_and_grads(ours, ref, (pos, neg))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sampled_softmax_logq_correction_subtracts_log_q_from_negatives(reduction):
    pos, neg = scores(k=4)
    g = torch.Generator().manual_seed(1)
    log_q = torch.log(torch.rand(neg.shape, generator=g)).double().requires_grad_(True)
    loss = SampledSoftmaxLoss(temperature=0.5, logq_correction=True, reduction=reduction)
    ours = loss(pos, neg, log_q)
    logits = torch.cat([pos.unsqueeze(1), neg - log_q], 1) / 0.5
    ref = reduce(-logits.log_softmax(1)[:, 0], reduction)
    # The gradient reaches neg_log_q too (−∂ℓ/∂s⁻), as through the expression.
    assert_same_value_and_grads(ours, ref, (pos, neg, log_q))


def test_sampled_softmax_neg_log_q_is_checked():
    pos, neg = scores(k=4)
    log_q = torch.full(neg.shape, -1.0, dtype=torch.float64)
    loss = SampledSoftmaxLoss(logq_correction=True)
    with pytest.raises(ValueError, match="neg_log_q"):
        loss(pos, neg)
    with pytest.raises(ValueError, match="neg_log_q"):
        SampledSoftmaxLoss()(pos, neg, log_q)
    with pytest.raises(ValueError, match="neg_log_q"):
        loss(pos, neg, log_q[:, :2])
    with pytest.raises(TypeError, match="neg_log_q"):
        loss(pos, neg, log_q.long())
    bad = log_q.clone()
    bad[0, 1] = float("-inf")  # an item that could never be sampled: a data bug
    with pytest.raises(ValueError, match="neg_log_q must be finite"):
        loss(pos, neg, bad)
    # validate_args=False skips the host-syncing finiteness check: NaN, as F.cross_entropy gives.
    out = SampledSoftmaxLoss(logq_correction=True, validate_args=False)(pos, neg, bad)
    assert torch.isnan(out) and torch.isnan(cat_ce(pos, neg, log_q=bad).mean())
    # A 1-D neg_log_q goes with 1-D negatives.
    one = LF.sampled_softmax_loss(pos, neg[:, 0], log_q[:, 0], logq_correction=True)
    torch.testing.assert_close(one, cat_ce(pos, neg[:, :1], log_q=log_q[:, :1]).mean())


@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_sampled_softmax_finite_and_exact_at_extreme_scores(temperature):
    pos = torch.tensor([1e4, -1e4, 0.0], requires_grad=True)
    neg = torch.tensor([[-1e4, 1e4], [1e4, -1e4], [0.0, 1e4]], requires_grad=True)
    ours = LF.sampled_softmax_loss(pos, neg, temperature=temperature, reduction="none")
    ref = cat_ce(pos, neg, temperature)
    assert torch.isfinite(ours).all()
    assert_same_value_and_grads(ours, ref, (pos, neg))


def test_sampled_softmax_saves_at_most_what_cross_entropy_saves():
    pos, neg = scores(n=256, k=31, dtype=torch.float32)
    _, ours = saved_bytes(lambda p, n: LF.sampled_softmax_loss(p, n), pos, neg)
    _, ref = saved_bytes(lambda p, n: cat_ce(p, n, reduction="mean"), pos, neg)
    assert ours <= ref, (ours, ref)
    assert ours <= neg.numel() * 4 + 8 * 256 + 4096


@pytest.mark.parametrize("name", ["bpr", "sampled_softmax"])
def test_fused_losses_mean_over_an_empty_batch_is_zero(name):
    pos, neg = torch.zeros(0, requires_grad=True), torch.zeros(0, 3, requires_grad=True)
    out = get_loss(name)(pos, neg)
    assert out == 0
    out.backward()
    assert pos.grad.shape == (0,) and neg.grad.shape == (0, 3)


# ------------------------------------------------------------------------------------ BCE
def test_bce_rec_matches_binary_cross_entropy_with_logits():
    pos, neg = scores(k=3)
    ours = LF.bce_rec_loss(pos, neg, reduction="none")
    pos_t = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="none")
    neg_t = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none")
    assert_same_value_and_grads(ours, pos_t + neg_t.mean(1), (pos, neg))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_rec_matches_float64_formula_at_extreme_scores_and_saves_nothing(reduction):
    # The fused softplus (one sigmoid, one log) against log(1 + e^x) written out in float64.
    pos = torch.tensor([-1e4, -30.0, -2.0, 0.0, 3.0, 30.0, 1e4], requires_grad=True)
    neg = torch.stack([pos.detach().flip(0), pos.detach() * 0.5], 1).requires_grad_(True)
    ours = LF.bce_rec_loss(pos, neg, reduction=reduction)

    def softplus64(x):  # log(1 + e^x) = log(e^0 + e^x), stable and smooth in float64
        return torch.logaddexp(x, torch.zeros_like(x))

    p64 = pos.detach().double().requires_grad_(True)
    n64 = neg.detach().double().requires_grad_(True)
    ref = reduce(softplus64(-p64) + softplus64(n64).mean(1), reduction)
    torch.testing.assert_close(ours.double(), ref.detach(), rtol=1e-6, atol=1e-6)
    w = torch.randn(ours.shape, generator=torch.Generator().manual_seed(3))
    g_ours = torch.autograd.grad((ours * w).sum(), (pos, neg))
    g_ref = torch.autograd.grad((ref * w.double()).sum(), (p64, n64))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-7)
    # Only references to the inputs are kept for backward (the slopes are recomputed).
    pos2, neg2 = scores(n=64, k=8, dtype=torch.float32)
    _, saved = saved_bytes(lambda p, n: LF.bce_rec_loss(p, n, reduction=reduction), pos2, neg2)
    assert saved <= 1024, saved


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bpr_gamma_zero_matches_float64_softplus_at_extreme_scores(reduction):
    pos = torch.tensor([-1e4, -20.0, 0.0, 20.0, 1e4], requires_grad=True)
    neg = torch.tensor([[1e4, 0.0], [-20.0, 25.0], [0.0, -3.0], [30.0, -30.0], [-1e4, 1e4]])
    neg.requires_grad_(True)
    ours = LF.bpr_loss(pos, neg, gamma=0.0, reduction=reduction)
    p64 = pos.detach().double().requires_grad_(True)
    n64 = neg.detach().double().requires_grad_(True)
    d = n64 - p64[:, None]
    ref = reduce(torch.logaddexp(d, torch.zeros_like(d)).mean(1), reduction)  # softplus
    torch.testing.assert_close(ours.double(), ref.detach(), rtol=1e-6, atol=1e-6)
    w = torch.randn(ours.shape, generator=torch.Generator().manual_seed(5))
    g_ours = torch.autograd.grad((ours * w).sum(), (pos, neg))
    g_ref = torch.autograd.grad((ref * w.double()).sum(), (p64, n64))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- shared
@pytest.mark.parametrize("name", ["bpr", "ccl", "sampled_softmax", "bce_rec"])
def test_one_dim_negatives_equal_single_column(name):
    pos, neg = scores(k=1)
    loss = get_loss(name, reduction="none")
    torch.testing.assert_close(loss(pos, neg[:, 0]), loss(pos, neg))


@pytest.mark.parametrize("name", ["bpr", "ccl", "sampled_softmax", "bce_rec"])
def test_mixed_precision_scores_are_promoted(name):
    pos, neg = scores(k=3)
    loss = get_loss(name, reduction="none")
    out = loss(pos.float(), neg)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, loss(pos.float().double(), neg))


@pytest.mark.parametrize("name", ["bpr", "ccl", "sampled_softmax", "bce_rec"])
def test_shape_errors_name_the_argument(name):
    loss = get_loss(name)
    with pytest.raises(ValueError, match="neg_score"):
        loss(torch.zeros(3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="pos_score"):
        loss(torch.zeros(3, 1), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="neg_score"):
        loss(torch.zeros(3), torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="neg_score"):
        loss(torch.zeros(3), torch.zeros(3, 0))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(0.1, 5.0))
def test_ranking_losses_decrease_when_positive_score_rises(seed, shift):
    pos, neg = scores(n=5, k=3, seed=seed, dtype=torch.float32)
    pos, neg = pos.detach(), neg.detach()
    for name in ("bpr", "sampled_softmax", "bce_rec"):
        loss = get_loss(name, reduction="none")
        assert (loss(pos + shift, neg) < loss(pos, neg)).all(), name
