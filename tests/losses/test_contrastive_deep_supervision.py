"""Contrastive deep supervision (Zhang et al., ECCV 2022, arXiv:2207.05306) against peers.

Reference: the authors' training step (`CIFAR/train.py`): for every level, the two views'
L2-normalised embeddings go through SupCon (HobbitLong's, temperature 0.07) with weight 0.1,
summed over the levels. Each level is computed here with pytorch-metric-learning's `SupConLoss`
(the views concatenated along the batch, labels repeated), which equals HobbitLong's with
`base_temperature = temperature`, and with a naive float64 SupCon written from the formula.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

from lightning_losses import get_loss
from lightning_losses.functional import contrastive_deep_supervision_loss
from lightning_losses.losses import ContrastiveDeepSupervisionLoss


def _naive_supcon(z, y, tau):
    """HobbitLong's SupCon on `[N, V, D]` (every view an anchor), scaled by tau / tau_base = 1."""
    n, v, _ = z.shape
    feats = F.normalize(torch.cat(z.unbind(1)), dim=1)  # views stacked along the batch
    labels = y.repeat(v)
    total, count = 0.0, 0
    for i in range(n * v):
        sims = [float(feats[i] @ feats[a]) / tau for a in range(n * v) if a != i]
        log_den = math.log(sum(math.exp(s) for s in sims))
        pos = [
            float(feats[i] @ feats[p]) / tau - log_den
            for p in range(n * v)
            if p != i and labels[p] == labels[i]
        ]
        total += -sum(pos) / len(pos)
        count += 1
    return total / count


def _levels(seed=0, n=6, dims=(8, 16, 32)):
    g = torch.Generator().manual_seed(seed)
    levels = [torch.randn(n, 2, d, generator=g, dtype=torch.float64) for d in dims]
    y = torch.randint(0, 3, (n,), generator=g)
    return levels, y


def test_matches_the_authors_step_with_pml_and_a_naive_supcon():
    levels, y = _levels()
    got = contrastive_deep_supervision_loss(levels, y)
    pml = pml_losses.SupConLoss(temperature=0.07)
    want = sum(0.1 * pml(torch.cat(z.unbind(1)), y.repeat(2)) for z in levels)
    torch.testing.assert_close(got, want)
    naive = sum(0.1 * _naive_supcon(z, y, 0.07) for z in levels)
    assert float(got) == pytest.approx(naive, rel=1e-10)


def test_gradients_reach_every_level_and_explicit_weights_apply():
    levels, y = _levels(1)
    levels = [z.requires_grad_(True) for z in levels]
    out = contrastive_deep_supervision_loss(levels, y, weights=[1.0, 0.0, 0.5])
    out.backward()
    assert levels[0].grad.abs().sum() > 0 and levels[2].grad.abs().sum() > 0
    assert (levels[1].grad == 0).all()
    pml = pml_losses.SupConLoss(temperature=0.07)
    want = sum(
        w * pml(torch.cat(z.detach().unbind(1)), y.repeat(2))
        for w, z in zip((1.0, 0.0, 0.5), levels, strict=True)
    )
    torch.testing.assert_close(out.detach(), want)


def test_self_supervised_variant_and_reductions():
    levels, _ = _levels(2)
    pml = pml_losses.NTXentLoss(temperature=0.07)
    n = levels[0].shape[0]
    ids = torch.arange(n).repeat(2)
    want = sum(0.1 * pml(torch.cat(z.unbind(1)), ids) for z in levels)
    torch.testing.assert_close(contrastive_deep_supervision_loss(levels), want)
    none = contrastive_deep_supervision_loss(levels, reduction="none")
    assert none.shape == (n, 2)
    torch.testing.assert_close(none.mean(), contrastive_deep_supervision_loss(levels))


def test_module_registry_and_errors():
    levels, y = _levels(3)
    crit = get_loss("cds", level_weight=0.2)
    assert isinstance(crit, ContrastiveDeepSupervisionLoss)
    torch.testing.assert_close(crit(levels, y), 2 * contrastive_deep_supervision_loss(levels, y))
    with pytest.raises(ValueError, match="weights"):
        contrastive_deep_supervision_loss(levels, y, weights=[0.1, 0.1])
    with pytest.raises(ValueError, match=r"input\[1\]"):
        contrastive_deep_supervision_loss([levels[0], levels[1][:-1]], y)
    with pytest.raises(TypeError, match="input"):
        contrastive_deep_supervision_loss([], y)
    with pytest.raises(TypeError, match=r"input\[0\]"):
        contrastive_deep_supervision_loss([levels[0].long()], y)
    with pytest.raises(ValueError, match=r"input\[0\]"):
        contrastive_deep_supervision_loss([levels[0][:, :, :, None]], y)


def test_single_view_levels_are_supcon_on_n_by_d():
    levels, y = _levels(4)
    flat = [z[:, 0] for z in levels]
    pml = pml_losses.SupConLoss(temperature=0.07)
    want = sum(0.1 * pml(z, y) for z in flat)
    torch.testing.assert_close(contrastive_deep_supervision_loss(flat, y), want)
