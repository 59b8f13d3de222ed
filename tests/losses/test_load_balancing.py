"""The Switch / Mixtral load-balancing loss: parity with `transformers`' Mixtral, the per-token
decomposition behind `reduction="none"`, the module, clear errors.

Peer: `transformers.models.mixtral.modeling_mixtral.load_balancing_loss_func` (one layer).
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.functional import load_balancing_loss
from lightning_losses.losses import LoadBalancingLoss
from lightning_losses.mixins import build_criterion


def test_balance_loss_matches_transformers_mixtral_and_float64_gradient():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    torch.manual_seed(0)
    logits = torch.randn(2 * 9, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    probs = logits.softmax(-1)
    idx = probs.topk(2, dim=-1).indices
    ours = load_balancing_loss(probs, idx, mask.reshape(-1).bool())
    ref = load_balancing_loss_func((logits.float(),), 6, 2, mask)
    torch.testing.assert_close(ours.float(), ref, atol=1e-6, rtol=1e-6)
    ref_nomask = load_balancing_loss_func((logits.float(),), 6, 2, None)
    torch.testing.assert_close(load_balancing_loss(probs, idx).float(), ref_nomask)
    # Balanced routing gives K.
    uniform = torch.full((8, 4), 0.25)
    assert load_balancing_loss(uniform, torch.tensor([[0, 1], [2, 3]] * 4)).item() == 2.0
    # Gradient: naive float64 N·Σ f_i P_i with f constant.
    (g,) = torch.autograd.grad(ours, logits)
    keep = mask.reshape(-1).double()
    f = torch.zeros(6, dtype=torch.float64)
    for t in range(18):
        for e in idx[t]:
            f[e] += keep[t]
    f = f / keep.sum()

    def naive(lg):
        p = (lg.softmax(-1) * keep[:, None]).sum(0) / keep.sum()
        return 6 * (f * p).sum()

    (g_ref,) = torch.autograd.grad(naive(logits), logits)
    torch.testing.assert_close(g, g_ref)


def test_per_token_terms_average_to_the_loss_and_masked_tokens_are_zero():
    torch.manual_seed(1)
    probs = torch.randn(10, 5).softmax(-1)
    idx = probs.topk(2, dim=-1).indices
    mask = torch.ones(10, dtype=torch.bool)
    mask[7:] = False
    terms = load_balancing_loss(probs, idx, mask, reduction="none")
    assert terms.shape == (10,) and (terms[7:] == 0).all() and (terms[:7] > 0).all()
    loss = load_balancing_loss(probs, idx, mask)
    torch.testing.assert_close(terms[:7].mean(), loss)
    torch.testing.assert_close(load_balancing_loss(probs, idx, mask, reduction="sum"), terms.sum())
    # ℓ_t = N Σ_i f_i p_{t,i}, with f the selection share over the real tokens.
    f = torch.bincount(idx[:7].reshape(-1), minlength=5).float() / 7
    torch.testing.assert_close(terms[:7], 5 * probs[:7] @ f)
    # No real token: 0, not NaN.
    none_real = load_balancing_loss(probs, idx, torch.zeros(10, dtype=torch.bool))
    assert none_real.item() == 0.0


def test_module_equals_functional_and_its_element_mask_is_the_token_mask():
    torch.manual_seed(2)
    probs = torch.randn(6, 4).softmax(-1)
    idx = probs.topk(1, dim=-1).indices
    mask = torch.tensor([1, 1, 1, 1, 0, 0])
    loss = LoadBalancingLoss()
    torch.testing.assert_close(loss(probs, idx, mask), load_balancing_loss(probs, idx, mask))
    torch.testing.assert_close(loss(probs, idx, token_mask=mask), loss(probs, idx, mask))
    per_token = build_criterion("load_balancing")
    assert per_token.reduction == "none"
    assert per_token(probs, idx, mask).shape == (6,)
    assert per_token.element_mask(probs, idx, mask).tolist() == [True] * 4 + [False] * 2
    assert per_token.element_mask(probs, idx, token_mask=mask.bool()).sum() == 4
    assert per_token.element_mask(probs, idx) is None


def test_low_precision_is_computed_in_float32():
    probs = torch.full((4, 2), 0.5, dtype=torch.bfloat16)
    out = load_balancing_loss(probs, torch.tensor([[0], [1], [0], [1]]))
    assert out.dtype == torch.float32 and out.item() == 1.0


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="topk_idx"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(5, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="router_probs"):
        load_balancing_loss(torch.rand(4), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="token_mask"):
        load_balancing_loss(
            torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), torch.ones(5, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="topk_idx contains expert index 3 outside"):
        load_balancing_loss(torch.rand(4, 3), torch.full((4, 1), 3))
    with pytest.raises(TypeError, match="router_probs"):
        load_balancing_loss(torch.ones(4, 3, dtype=torch.long), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="topk_idx"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="reduction"):
        load_balancing_loss(torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), reduction="x")


def test_precounted_selections_give_the_same_loss_and_gradient():
    """A router that already counted the selections (for its load tracking) passes them on."""
    from lightning_losses.losses.language.load_balancing import expert_selection_counts

    torch.manual_seed(0)
    probs = torch.randn(12, 5, dtype=torch.float64).softmax(-1).requires_grad_()
    idx = torch.randint(0, 5, (12, 2))
    mask = torch.rand(12) > 0.3
    direct = load_balancing_loss(probs, idx, mask, reduction="none")
    counts = expert_selection_counts(idx, 5, mask)
    naive = torch.zeros(5)
    for t in range(12):
        for k in range(2):
            naive[idx[t, k]] += float(mask[t])
    torch.testing.assert_close(counts, naive)
    given = load_balancing_loss(probs, idx, mask, reduction="none", selection_counts=counts)
    torch.testing.assert_close(given, direct)
    (g1,) = torch.autograd.grad(direct.sum(), probs)
    (g2,) = torch.autograd.grad(given.sum(), probs)
    torch.testing.assert_close(g1, g2)
    with pytest.raises(ValueError, match="selection_counts"):
        load_balancing_loss(probs, idx, mask, selection_counts=counts[:4])
