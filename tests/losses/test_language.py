"""z-loss (CATALOG F01) against a float64 reference written from the formula and its closed forms.

Peer: ``liger_kernel.transformers.LigerCrossEntropyLoss(lse_square_scale=c, return_z_loss=True)``
computes the same ``c · mean(LSE(z)²)`` over non-ignored tokens, but it is a Triton GPU kernel and
cannot run here; the reference below reproduces that formula.
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.functional import z_loss
from lightning_losses.losses import ZLoss


def reference(logits, target, coeff, ignore_index=-100):
    lse = torch.log(torch.exp(logits.double()).sum(-1))
    valid = target != ignore_index
    return coeff * (lse[valid] ** 2).mean(), coeff * lse**2 * valid


@pytest.mark.parametrize("shape", [(6, 11), (2, 5, 11)])
def test_matches_float64_reference(shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, generator=g) * 3
    target = torch.randint(0, shape[-1], shape[:-1], generator=g)
    target.view(-1)[1] = -100
    mean_ref, none_ref = reference(logits, target, 1e-2)
    torch.testing.assert_close(z_loss(logits.double(), target, coeff=1e-2), mean_ref)
    torch.testing.assert_close(
        ZLoss(coeff=1e-2, reduction="none")(logits.double(), target), none_ref
    )


def test_zero_when_logits_are_normalised():
    logits = torch.randn(4, 9).log_softmax(-1)  # log Z = 0
    assert z_loss(logits, coeff=1.0).abs() < 1e-10


def test_gradient_closed_form():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    coeff = 0.3
    z_loss(logits, coeff=coeff).backward()
    lse = logits.detach().logsumexp(-1, keepdim=True)
    expected = 2 * coeff * lse * logits.detach().softmax(-1) / logits.shape[0]
    torch.testing.assert_close(logits.grad, expected)


def test_without_target_every_position_counts():
    logits = torch.randn(2, 3, 4)
    torch.testing.assert_close(
        z_loss(logits, coeff=1.0, reduction="none"), logits.logsumexp(-1) ** 2
    )


def test_bad_target_shape_is_reported():
    with pytest.raises(ValueError, match="target must have shape"):
        z_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
