"""z-loss (`language/zloss.py`) and fused cross-entropy + z-loss against float64 references.

The references are written from the formulas, plus their closed forms and `F.cross_entropy`.

Peer: `liger_kernel.transformers.LigerCrossEntropyLoss(lse_square_scale=c, return_z_loss=True)`
computes the same `c · mean(LSE(z)²)` over non-ignored tokens, but it is a Triton GPU kernel and
cannot run here; the reference below reproduces that formula. The vocabulary is dimension 1
(`[N, V, *]`, as `F.cross_entropy`); Hugging Face logits `[B, T, V]` go in as a transposed view.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_losses.functional import cross_entropy, cross_entropy_with_z_loss, z_loss
from lightning_losses.losses import CrossEntropyWithZLoss, InputKind, LMLossOutput, ZLoss


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


# --------------------------------------------------------------------------------------------
# Fused cross-entropy + z-loss (one log-sum-exp, Liger's `lse_square_scale` form)
# --------------------------------------------------------------------------------------------


def ce_z_reference(logits, target, coeff, eps=0.0, ignore_index=-100):
    """Float64 from the formula, `logits [N, V, *]`: per-position (total, z), zero where ignored.

    CE = lse - (1-ε) z_y - ε/V Σ_v z_v ; z = c lse², lse = log Σ_v exp z_v (written out).
    """
    x = logits.double().movedim(1, -1)  # [N, *, V]
    lse = torch.log(torch.exp(x).sum(-1))
    valid = target != ignore_index
    z_y = x.gather(-1, torch.where(valid, target, 0)[..., None]).squeeze(-1)
    ce = lse - (1 - eps) * z_y - eps * x.sum(-1) / x.shape[-1]
    z = coeff * lse**2
    zero = torch.zeros((), dtype=torch.float64)
    return torch.where(valid, ce + z, zero), torch.where(valid, z, zero), valid


@pytest.mark.parametrize("shape", [(7, 13), (3, 13, 4)])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_fused_matches_float64_reference_value_and_gradient(shape, eps):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(*shape, generator=g, dtype=torch.float64) * 4).requires_grad_(True)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    target.view(-1)[2] = -100
    coeff = 0.05
    total_ref, z_ref, valid = ce_z_reference(logits, target, coeff, eps)
    for reduction in ("none", "sum", "mean"):
        out = cross_entropy_with_z_loss(
            logits,
            target,
            z_loss_coeff=coeff,
            label_smoothing=eps,
            reduction=reduction,
            return_z_loss=True,
        )
        if reduction == "none":
            exp_total, exp_z = total_ref, z_ref
        elif reduction == "sum":
            exp_total, exp_z = total_ref.sum(), z_ref.sum()
        else:
            exp_total, exp_z = total_ref.sum() / valid.sum(), z_ref.sum() / valid.sum()
        torch.testing.assert_close(out.loss, exp_total)
        torch.testing.assert_close(out.z_loss, exp_z)
    # Gradient of a random projection of the per-token totals (any upstream gradient).
    proj = torch.randn(total_ref.shape, generator=g, dtype=torch.float64)
    out = cross_entropy_with_z_loss(
        logits, target, z_loss_coeff=coeff, label_smoothing=eps, reduction="none"
    )
    (ours,) = torch.autograd.grad((out * proj).sum(), logits)
    (ref,) = torch.autograd.grad((total_ref * proj).sum(), logits)
    torch.testing.assert_close(ours, ref)
    assert (ours.movedim(1, -1)[~valid] == 0).all()


def test_fused_without_z_loss_is_torch_cross_entropy():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(9, 6, 5, generator=g, requires_grad=True)
    target = torch.randint(0, 6, (9, 5), generator=g)
    target[0, :3] = -100
    ours = cross_entropy_with_z_loss(logits, target, z_loss_coeff=0.0, label_smoothing=0.1)
    ref = F.cross_entropy(logits, target, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)
    (ga,) = torch.autograd.grad(ours, logits)
    (gb,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ga, gb)


def test_fused_equals_the_library_ce_plus_z_loss_and_its_z_part_is_z_loss():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 17, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 17, (2, 6), generator=g)
    target[1, 4:] = -100
    out = cross_entropy_with_z_loss(logits, target, z_loss_coeff=1e-3, return_z_loss=True)
    assert isinstance(out, LMLossOutput)
    torch.testing.assert_close(
        out.loss, cross_entropy(logits, target) + z_loss(logits, target, coeff=1e-3)
    )
    torch.testing.assert_close(out.z_loss, z_loss(logits, target, coeff=1e-3))


def test_fused_gradient_closed_form():
    # Without smoothing: d/dz [CE + c lse²] = p (1 + 2 c lse) - e_y.
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 8, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 8, (5,), generator=g)
    c = 0.3
    cross_entropy_with_z_loss(logits, target, z_loss_coeff=c, reduction="sum").backward()
    x = logits.detach()
    lse = x.logsumexp(1, keepdim=True)
    expected = x.softmax(1) * (1 + 2 * c * lse) - F.one_hot(target, 8).double()
    torch.testing.assert_close(logits.grad, expected)


def test_fused_uniform_logits_closed_form_and_module_logs_z_loss():
    # Zero logits: lse = log V, CE = log V, z = c (log V)²; the ignored token is left out.
    loss = CrossEntropyWithZLoss(z_loss_coeff=0.5, reduction="none")
    out = loss(torch.zeros(3, 7), torch.tensor([0, 6, -100]))
    log_v = torch.tensor(7.0).log()
    torch.testing.assert_close(out, torch.stack([log_v + 0.5 * log_v**2] * 2 + [log_v * 0]))
    torch.testing.assert_close(loss.last_z_loss, 0.5 * log_v**2)
    assert CrossEntropyWithZLoss.input_kind == InputKind.SEQUENCES
    assert loss.element_mask(torch.zeros(3, 7), torch.tensor([0, 6, -100])).tolist() == [
        True,
        True,
        False,
    ]


def test_fused_hugging_face_layout_and_bf16_upcast():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 5, 11, generator=g)  # [B, T, V]
    labels = torch.randint(0, 11, (2, 5), generator=g)
    ours = cross_entropy_with_z_loss(logits.transpose(1, 2), labels, z_loss_coeff=1e-2)
    flat = logits.reshape(-1, 11)
    ref = F.cross_entropy(flat, labels.reshape(-1)) + 1e-2 * flat.logsumexp(-1).square().mean()
    torch.testing.assert_close(ours, ref)
    low = cross_entropy_with_z_loss(logits.transpose(1, 2).bfloat16(), labels, z_loss_coeff=1e-2)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.03, rtol=0)


def test_fused_bad_arguments_are_named():
    with pytest.raises(ValueError, match="z_loss_coeff"):
        cross_entropy_with_z_loss(torch.zeros(2, 3), torch.tensor([0, 1]), z_loss_coeff=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyWithZLoss(label_smoothing=2.0)
    with pytest.raises(TypeError, match="target"):
        cross_entropy_with_z_loss(torch.zeros(2, 3), torch.tensor([[0.2, 0.3, 0.5]] * 2))
    with pytest.raises(ValueError, match="target contains"):
        cross_entropy_with_z_loss(torch.zeros(2, 3), torch.tensor([0, 3]))


def test_cross_entropy_with_z_loss_validates_a_reduction_set_after_construction():
    loss = CrossEntropyWithZLoss()
    loss.reduction = "avg"
    with pytest.raises(ValueError, match="reduction"):
        loss(torch.randn(4, 10), torch.randint(0, 10, (4,)))
