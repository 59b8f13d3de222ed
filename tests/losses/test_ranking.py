"""Family tests for the ranking losses: BPR, SimpleX CCL, sampled softmax, pointwise BCE.

References are written from the source formulas (recbole / RecBox are too heavy to install):

* RecBole ``recbole/model/loss.py``::

      class BPRLoss(nn.Module):
          def __init__(self, gamma=1e-10): ...
          def forward(self, pos_score, neg_score):
              loss = -torch.log(self.gamma + torch.sigmoid(pos_score - neg_score)).mean()

* reczoo/RecBox ``CosineContrastiveLoss(margin, negative_weight)`` (SimpleX)::

      pos_loss = torch.relu(1 - y_pred[:, 0])
      neg_loss = torch.relu(y_pred[:, 1:] - margin)
      if negative_weight: loss = pos_loss + neg_loss.mean(dim=-1) * negative_weight
      else:               loss = pos_loss + neg_loss.sum(dim=-1)
      loss = loss.mean()
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
    BPRLoss,
    CosineContrastiveLoss,
    SampledSoftmaxLoss,
)


def scores(n=7, k=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, generator=g, dtype=dtype).requires_grad_(True)
    neg = torch.randn(n, k, generator=g, dtype=dtype).requires_grad_(True)
    return pos, neg


def grads(out, *xs):
    return torch.autograd.grad(out, xs)


def recbole_bpr(pos, neg, gamma=1e-10):
    return -torch.log(gamma + torch.sigmoid(pos - neg)).mean()


def recbox_ccl(y_pred, margin, negative_weight):
    pos_loss = torch.relu(1 - y_pred[:, 0])
    neg_loss = torch.relu(y_pred[:, 1:] - margin)
    if negative_weight:
        loss = pos_loss + neg_loss.mean(dim=-1) * negative_weight
    else:
        loss = pos_loss + neg_loss.sum(dim=-1)
    return loss.mean()


# ------------------------------------------------------------------------------------ BPR
def test_bpr_equals_softplus_of_negative_margin_with_gradients():
    pos, neg = scores()
    ours = LF.bpr_loss(pos, neg, gamma=0.0, reduction="none")
    ref = F.softplus(-(pos.unsqueeze(1) - neg)).mean(1)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(grads(ours.sum(), pos, neg), grads(ref.sum(), pos, neg), strict=True):
        torch.testing.assert_close(a, b)


def test_bpr_reproduces_recbole_including_gamma_and_gradients():
    pos, neg = scores(k=1)
    neg1 = neg[:, 0]
    for gamma in (1e-10, 1e-2, 0.3):
        ours = BPRLoss(gamma=gamma)(pos, neg1)
        ref = recbole_bpr(pos, neg1, gamma)
        torch.testing.assert_close(ours, ref)
        for a, b in zip(grads(ours, pos, neg), grads(ref, pos, neg), strict=True):
            torch.testing.assert_close(a, b)


def test_bpr_gamma_bounds_the_loss_for_hopeless_pairs():
    # -log(sigma(-1e4) + gamma) = -log(gamma): RecBole's guard, computed without overflow.
    out = LF.bpr_loss(torch.tensor([-1e4]), torch.tensor([1e4]), gamma=1e-10)
    torch.testing.assert_close(out, torch.tensor(23.0259), atol=1e-3, rtol=0)
    assert LF.bpr_loss(torch.tensor([-1e4]), torch.tensor([1e4]), gamma=0.0) == 2e4


def test_bpr_multiple_negatives_is_mean_over_pairs():
    pos, neg = scores(k=3)
    rows = torch.stack([LF.bpr_loss(pos, neg[:, j], reduction="none") for j in range(3)], 1)
    torch.testing.assert_close(LF.bpr_loss(pos, neg, reduction="none"), rows.mean(1))


# ------------------------------------------------------------------------------------ CCL
@pytest.mark.parametrize("margin,negative_weight", [(0.8, None), (0.5, 2.0), (0.0, None)])
def test_ccl_matches_recbox_formula_with_gradients(margin, negative_weight):
    g = torch.Generator().manual_seed(3)
    pos = (torch.rand(9, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    neg = (torch.rand(9, 6, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    ours = CosineContrastiveLoss(margin=margin, negative_weight=negative_weight)(pos, neg)
    ref = recbox_ccl(torch.cat([pos.unsqueeze(1), neg], 1), margin, negative_weight)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(grads(ours, pos, neg), grads(ref, pos, neg), strict=True):
        torch.testing.assert_close(a, b)


def test_ccl_is_zero_for_perfect_scores():
    pos, neg = torch.ones(4), torch.full((4, 5), 0.2)
    assert LF.cosine_contrastive_loss(pos, neg, margin=0.8) == 0


# ---------------------------------------------------------------------- sampled softmax
@pytest.mark.parametrize("temperature", [1.0, 0.2, 3.0])
def test_sampled_softmax_equals_cross_entropy_on_concatenated_scores(temperature):
    pos, neg = scores(k=5)
    ours = LF.sampled_softmax_loss(pos, neg, temperature=temperature, reduction="none")
    logits = torch.cat([pos.unsqueeze(1), neg], 1) / temperature
    ref = F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long), reduction="none")
    torch.testing.assert_close(ours, ref)
    for a, b in zip(grads(ours.sum(), pos, neg), grads(ref.sum(), pos, neg), strict=True):
        torch.testing.assert_close(a, b)


def test_sampled_softmax_logq_correction_subtracts_log_q_from_negatives():
    pos, neg = scores(k=4)
    log_q = torch.log(torch.rand(neg.shape, generator=torch.Generator().manual_seed(1))).double()
    loss = SampledSoftmaxLoss(temperature=0.5, logq_correction=True, reduction="none")
    ours = loss(pos, neg, log_q)
    logits = torch.cat([pos.unsqueeze(1), neg - log_q], 1) / 0.5
    ref = -logits.log_softmax(1)[:, 0]
    torch.testing.assert_close(ours, ref)
    with pytest.raises(ValueError, match="neg_log_q"):
        loss(pos, neg)
    with pytest.raises(ValueError, match="neg_log_q"):
        SampledSoftmaxLoss()(pos, neg, log_q)
    with pytest.raises(ValueError, match="neg_log_q"):
        loss(pos, neg, log_q[:, :2])


# ------------------------------------------------------------------------------------ BCE
def test_bce_rec_matches_binary_cross_entropy_with_logits():
    pos, neg = scores(k=3)
    ours = LF.bce_rec_loss(pos, neg, reduction="none")
    pos_t = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), reduction="none")
    neg_t = F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="none")
    ref = pos_t + neg_t.mean(1)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(grads(ours.sum(), pos, neg), grads(ref.sum(), pos, neg), strict=True):
        torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------- shared
@pytest.mark.parametrize("name", ["bpr", "ccl", "sampled_softmax", "bce_rec"])
def test_one_dim_negatives_equal_single_column(name):
    pos, neg = scores(k=1)
    loss = get_loss(name, reduction="none")
    torch.testing.assert_close(loss(pos, neg[:, 0]), loss(pos, neg))


@pytest.mark.parametrize("name", ["bpr", "ccl", "sampled_softmax", "bce_rec"])
def test_shape_errors_name_the_argument(name):
    loss = get_loss(name)
    with pytest.raises(ValueError, match="neg_score"):
        loss(torch.zeros(3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="pos_score"):
        loss(torch.zeros(3, 1), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="neg_score"):
        loss(torch.zeros(3), torch.zeros(3, 2, 1))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), shift=st.floats(0.1, 5.0))
def test_ranking_losses_decrease_when_positive_score_rises(seed, shift):
    pos, neg = scores(n=5, k=3, seed=seed, dtype=torch.float32)
    pos, neg = pos.detach(), neg.detach()
    for name in ("bpr", "sampled_softmax", "bce_rec"):
        loss = get_loss(name, reduction="none")
        assert (loss(pos + shift, neg) < loss(pos, neg)).all(), name
