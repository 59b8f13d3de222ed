"""The prior-entropy (source-free adaptation) loss against the authors' EntKLProp, transcribed."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import entropy as scipy_kl

from lightning_losses import get_loss
from lightning_losses.functional import prior_entropy_minimization_loss
from lightning_losses.losses import PriorEntropyMinimizationLoss


def _entklprop(probs, prior, weights, power=1.0, lamb_se=1.0, lamb_consprior=1.0):
    """`EntKLProp.__call__` + `norm_soft_size` of mathilde-b/SFDA in float64, written out per
    image / class / pixel (prior given as proportions, as with their `curi` size prior)."""
    b, c = probs.shape[:2]
    flat = probs.reshape(b, c, -1).tolist()
    npix = len(flat[0][0])
    # norm_soft_size: p / (max_c p + 1e-10), to the power, summed, normalised over classes.
    est = []
    for i in range(b):
        amax = [max(flat[i][k][s] for k in range(c)) + 1e-10 for s in range(npix)]
        sizes = [sum((flat[i][k][s] / amax[s]) ** power for s in range(npix)) for k in range(c)]
        total = sum(sizes) + 1e-10
        est.append([v / total for v in sizes])
    cons = 0.0
    for i in range(b):
        for k in range(c):
            cons += est[i][k] * (math.log(est[i][k] + 1e-10) - math.log(prior[i][k] + 1e-10))
    cons /= b
    se, mass = 0.0, 0.0
    for i in range(b):
        for k in range(c):
            for s in range(npix):
                p = flat[i][k][s]
                se -= weights[k] * p * math.log(p + 1e-10)
                mass += p
    se /= mass + 1e-10
    return lamb_se * se + lamb_consprior * cons


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (0.1, 0.9, 0.5)])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_matches_the_authors_entklprop(weights, power):
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(3, 3, 5, 4, generator=g, dtype=torch.float64)
    prior = torch.rand(3, 3, generator=g, dtype=torch.float64) + 0.05
    prior = prior / prior.sum(1, keepdim=True)
    want = _entklprop(logits.softmax(1), prior.tolist(), weights, power=power)
    got = prior_entropy_minimization_loss(
        logits, prior, weight=torch.tensor(weights, dtype=torch.float64), power=power
    )
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-9)
    # λ scales the KL term only.
    no_kl = _entklprop(logits.softmax(1), prior.tolist(), weights, power=power, lamb_consprior=0)
    got = prior_entropy_minimization_loss(
        logits, prior, weight=torch.tensor(weights, dtype=torch.float64), power=power, lam=0.0
    )
    assert got.item() == pytest.approx(no_kl, rel=1e-9, abs=1e-9)


def test_kl_direction_is_predicted_to_prior_and_plain_mean_option():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64)
    prior = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    p = logits.softmax(1)
    ent = -(p * p.log()).sum(1).mean((1, 2))
    for by_max in (True, False):
        q = p / p.amax(1, keepdim=True) if by_max else p
        est = q.sum((2, 3)) / q.sum((1, 2, 3))[:, None]
        if not by_max:  # the papers' plain mean softmax
            torch.testing.assert_close(est, p.mean((2, 3)))
        kl = torch.tensor([scipy_kl(est[i].numpy(), prior[i].numpy()) for i in range(2)])
        got = prior_entropy_minimization_loss(
            logits, prior, normalize_by_max=by_max, eps=0.0, reduction="none"
        )
        torch.testing.assert_close(got, ent + kl.to(got.dtype))
        reverse = torch.tensor([scipy_kl(prior[i].numpy(), est[i].numpy()) for i in range(2)])
        assert not torch.allclose(got, ent + reverse.to(got.dtype))


def test_confident_prediction_matching_the_prior_is_zero():
    logits = torch.full((1, 3, 2, 5), -40.0, dtype=torch.float64)
    labels = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 2]])  # proportions 0.3, 0.4, 0.3
    logits[0].scatter_(0, labels[None], 40.0)
    prior = torch.tensor([0.3, 0.4, 0.3], dtype=torch.float64)
    assert prior_entropy_minimization_loss(logits, prior).abs() < 1e-9  # eps = 1e-10 in the sums
    # A wrong prior costs KL(τ̂ ‖ τ) exactly; the entropy is still 0.
    wrong = torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)
    want = scipy_kl([0.3, 0.4, 0.3], wrong.tolist())
    assert prior_entropy_minimization_loss(logits, wrong).item() == pytest.approx(want, rel=1e-9)


def test_gradients_shared_prior_reductions_and_3d():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: prior_entropy_minimization_loss(x, prior, reduction="none"), (logits,)
    )
    per_image = prior_entropy_minimization_loss(logits, prior, reduction="none")
    rows = prior_entropy_minimization_loss(logits, prior.expand(2, 3), reduction="none")
    torch.testing.assert_close(per_image, rows)
    torch.testing.assert_close(prior_entropy_minimization_loss(logits, prior), per_image.mean())
    torch.testing.assert_close(
        prior_entropy_minimization_loss(logits, prior, reduction="sum"), per_image.sum()
    )
    # Saturated logits: finite value and gradient (exact log-softmax entropy).
    big = (1e4 * torch.randn(2, 3, 4, 4, generator=g)).requires_grad_()
    out = prior_entropy_minimization_loss(big, prior.float())
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(big.grad).all()


def test_class_built_by_name_and_errors_name_the_argument():
    loss = get_loss("ent_kl_prop", weight=torch.tensor([0.1, 0.9]))
    assert type(loss) is PriorEntropyMinimizationLoss
    logits, prior = torch.zeros(2, 2, 4, 4), torch.tensor([0.5, 0.5])
    torch.testing.assert_close(
        loss(logits, prior),
        prior_entropy_minimization_loss(logits, prior, weight=torch.tensor([0.1, 0.9])),
    )
    with pytest.raises(ValueError, match="prior"):
        loss(logits, torch.tensor([0.5, 0.3, 0.2]))
    with pytest.raises(ValueError, match="prior"):
        loss(logits, torch.tensor([1.5, -0.5]))
    with pytest.raises(ValueError, match="weight"):
        prior_entropy_minimization_loss(
            torch.zeros(2, 3, 4), torch.ones(3) / 3, weight=torch.ones(2)
        )
    with pytest.raises(ValueError, match="input"):
        loss(torch.zeros(2, 1, 4, 4), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="weight"):
        PriorEntropyMinimizationLoss(weight=torch.tensor([1.0, -1.0]))
