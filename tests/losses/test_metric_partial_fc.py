"""Partial FC (`losses/metric/partial_fc.py`): the full ArcFace / CosFace at `sample_rate=1`,
and ArcFace over exactly the sampled centres otherwise.
"""

from __future__ import annotations

import pytest
import torch

import lightning_losses.functional as LF
from lightning_losses.losses import PartialFCLoss

C, D = 7, 5


def data(n=12, seed=0, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=dtype) * scale, torch.randint(
        0, C, (n,), generator=g
    )


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_partial_fc_full_rate_equals_full_margin_loss(kind):
    x, y = data()
    w = torch.randn(C, D, dtype=torch.float64)
    full = LF.arcface_loss if kind == "arcface" else LF.cosface_loss
    m = 0.5 if kind == "arcface" else 0.35
    a1, w1 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    a2, w2 = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    ours = LF.partial_fc_loss(a1, y, w1, sample_rate=1.0, margin_loss=kind, margin=m)
    ref = full(a2, y, w2, margin=m)
    torch.testing.assert_close(ours, ref)
    for g1, g2 in zip(torch.autograd.grad(ours, [a1, w1]), torch.autograd.grad(ref, [a2, w2])):
        torch.testing.assert_close(g1, g2)


def test_partial_fc_sampling_subset_reference_and_seeding():
    num_classes = 50
    x, _ = data(n=6)
    y = torch.tensor([3, 3, 17, 40, 17, 8])
    w = torch.randn(num_classes, D, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(1)
    index, remapped = LF.sample_centres(y, num_classes, 0.2, generator=g)
    assert index.numel() == 10 and set(y.tolist()) <= set(index.tolist())
    assert (index[remapped] == y).all() and (index.sort().values == index).all()
    # Reference: ArcFace over the sampled centres only, with the labels' positions in the subset.
    out = LF.partial_fc_loss(x, y, w, sample_rate=0.2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, LF.arcface_loss(x, remapped, w.detach()[index]))
    (gw,) = torch.autograd.grad(out, w)
    unsampled = torch.ones(num_classes, dtype=torch.bool)
    unsampled[index] = False
    assert (gw[unsampled] == 0).all() and gw[index].abs().sum() > 0
    # The module's seed makes the draws reproducible.
    a, b = (
        PartialFCLoss(num_classes, D, sample_rate=0.2, seed=3),
        PartialFCLoss(num_classes, D, sample_rate=0.2, seed=3),
    )
    b.load_state_dict(a.state_dict())
    x32 = x.float()
    torch.testing.assert_close(a(x32, y), b(x32, y))
    # More batch classes than slots: only the batch's classes.
    index, _ = LF.sample_centres(y, num_classes, 0.01)
    assert index.tolist() == [3, 8, 17, 40]
