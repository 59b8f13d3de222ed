"""z-loss (CATALOG F01) against a float64 reference written from the formula and its closed forms.

Peer: `liger_kernel.transformers.LigerCrossEntropyLoss(lse_square_scale=c, return_z_loss=True)`
computes the same `c · mean(LSE(z)²)` over non-ignored tokens, but it is a Triton GPU kernel and
cannot run here; the reference below reproduces that formula. The vocabulary is dimension 1
(`[N, V, *]`, as `F.cross_entropy`); Hugging Face logits `[B, T, V]` go in as a transposed view.
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.functional import z_loss
from lightning_losses.losses import InputKind, ZLoss


def reference(logits, target, coeff, ignore_index=-100):
    """`logits [N, V, *]`: c·(log Σ_v e^z)² per position, mean over non-ignored positions."""
    lse = torch.log(torch.exp(logits.double()).sum(1))
    valid = target != ignore_index
    return coeff * (lse[valid] ** 2).mean(), coeff * lse**2 * valid


@pytest.mark.parametrize("shape", [(6, 11), (2, 11, 5), (2, 11, 3, 2)])
def test_matches_float64_reference_with_vocabulary_at_dim_1(shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g) * 3
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    target.view(-1)[1] = -100
    mean_ref, none_ref = reference(logits, target, 1e-2)
    torch.testing.assert_close(z_loss(logits.double(), target, coeff=1e-2), mean_ref)
    none = ZLoss(coeff=1e-2, reduction="none")(logits.double(), target)
    assert none.shape == target.shape
    torch.testing.assert_close(none, none_ref)
    torch.testing.assert_close(
        z_loss(logits.double(), target, coeff=1e-2, reduction="sum"), none_ref.sum()
    )


def test_hugging_face_layout_is_a_transposed_view():
    # [B, T, V] logits (vocabulary last in memory) -> [B, V, T]: same value as the per-token
    # formula over the last dimension, and the vocabulary is NOT read from the last axis.
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)  # B=2, T=5, V=7
    labels = torch.randint(0, 7, (2, 5), generator=g)
    labels[0, 3:] = -100
    per_token = logits.logsumexp(-1).square() * 0.1
    valid = labels != -100
    out = z_loss(logits.transpose(1, 2), labels, coeff=0.1, reduction="none")
    torch.testing.assert_close(out, per_token * valid)
    torch.testing.assert_close(
        z_loss(logits.transpose(1, 2), labels, coeff=0.1), per_token[valid].mean()
    )
    with pytest.raises(ValueError, match="target"):
        z_loss(logits, labels, coeff=0.1)  # [B, T, V] read as V = T = 5: shapes disagree


def test_zero_when_logits_are_normalised():
    logits = torch.randn(4, 9).log_softmax(1)  # log Z = 0
    assert z_loss(logits, coeff=1.0).abs() < 1e-10


def test_gradient_closed_form():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    coeff = 0.3
    z_loss(logits, coeff=coeff).backward()
    lse = logits.detach().logsumexp(1, keepdim=True)
    expected = 2 * coeff * lse * logits.detach().softmax(1) / (5 * 3)
    torch.testing.assert_close(logits.grad, expected)


def test_without_target_every_position_counts():
    logits = torch.randn(2, 4, 3)
    out = z_loss(logits, coeff=1.0, reduction="none")
    assert out.shape == (2, 3)
    torch.testing.assert_close(out, logits.logsumexp(1) ** 2)


def test_ignored_positions_get_zero_gradient_even_when_non_finite():
    logits = torch.randn(3, 6, 4, dtype=torch.float64)
    target = torch.randint(0, 6, (3, 4))
    target[1, 2] = -100
    logits[1, :, 2] = float("nan")
    logits = logits.requires_grad_(True)
    out = z_loss(logits, target, coeff=0.5)
    (grad,) = torch.autograd.grad(out, logits)
    assert torch.isfinite(out) and torch.isfinite(grad).all()
    assert (grad[1, :, 2] == 0).all() and grad.abs().sum() > 0


def test_bad_target_is_reported():
    with pytest.raises(ValueError, match="target must have shape"):
        z_loss(torch.randn(2, 4, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="target"):
        z_loss(torch.randn(2, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="target contains"):
        z_loss(torch.randn(2, 4), torch.tensor([0, 4]))
    # validate_args=False skips the host-syncing range check (the value ignores the id).
    out = z_loss(torch.zeros(2, 4), torch.tensor([0, 4]), coeff=1.0, validate_args=False)
    torch.testing.assert_close(out, torch.tensor(4.0).log().square())
    with pytest.raises(ValueError, match="input must have shape"):
        z_loss(torch.randn(4), coeff=1.0)


def test_declares_sequences_and_masks_ignored_tokens():
    loss = ZLoss()
    assert ZLoss.input_kind == InputKind.SEQUENCES
    target = torch.tensor([[1, -100, 2]])
    mask = loss.element_mask(torch.zeros(1, 4, 3), target)
    assert mask.tolist() == [[True, False, True]]
    assert loss.element_mask(torch.zeros(1, 4, 3)) is None
    with pytest.raises(TypeError, match="ignore_index"):
        z_loss(torch.zeros(2, 3), torch.tensor([0, 1]), ignore_index=1.5)
