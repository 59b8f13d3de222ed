"""ArcFace, CosFace and NormalizedSoftmax (`losses/metric/margin_softmax.py`).

References: pytorch-metric-learning (value and gradient, for the embeddings and the centres,
with the same centres copied into both; PML stores them transposed, `[D, C]`, and takes the
ArcFace margin in degrees), and closed forms written from the papers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

import lightning_losses.functional as LF
from lightning_losses.losses import ArcFaceLoss, CosFaceLoss, NormalizedSoftmaxLoss

C, D = 7, 5


def data(n: int = 12, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, D, generator=g, dtype=dtype)
    y = torch.randint(0, C, (n,), generator=g)
    return x, y


CASES = {
    "arcface": (
        lambda: ArcFaceLoss(C, D, margin=0.5, scale=64.0),
        lambda: pml_losses.ArcFaceLoss(C, D, margin=float(np.degrees(0.5)), scale=64),
    ),
    "arcface_small_scale": (
        lambda: ArcFaceLoss(C, D, margin=0.3, scale=8.0),
        lambda: pml_losses.ArcFaceLoss(C, D, margin=float(np.degrees(0.3)), scale=8),
    ),
    "cosface": (
        lambda: CosFaceLoss(C, D),
        lambda: pml_losses.CosFaceLoss(C, D, margin=0.35, scale=64),
    ),
    "normalized_softmax": (
        lambda: NormalizedSoftmaxLoss(C, D),
        lambda: pml_losses.NormalizedSoftmaxLoss(C, D, temperature=0.05),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_pml_value_and_gradients_for_embeddings_and_centres(case):
    make_ours, make_pml = CASES[case]
    torch.manual_seed(0)
    ours, pml = make_ours().double(), make_pml().double()
    with torch.no_grad():
        ours.weight.normal_()  # away from the tiny init so that margins matter
        pml.W.copy_(ours.weight.T)
    x, y = data()
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = ours(x1, y), pml(x2, y)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    ga = torch.autograd.grad(a, [x1, ours.weight])
    gb = torch.autograd.grad(b, [x2, pml.W])
    torch.testing.assert_close(ga[0], gb[0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ga[1], gb[1].T, rtol=1e-9, atol=1e-12)


def test_arcface_target_logit_convention():
    m = 0.5
    theta = torch.linspace(0.0, math.pi, 101, dtype=torch.float64)
    got = LF.arcface_target_logit(theta.cos(), m)
    expected = torch.where(theta <= math.pi - m, (theta + m).cos(), theta.cos() - m * math.sin(m))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    # Monotonically non-increasing in theta over the whole range (the point of the convention).
    assert (got[1:] <= got[:-1] + 1e-12).all()


def test_arcface_gradient_is_finite_when_an_embedding_is_its_centre():
    centres = torch.randn(C, D)
    for sign in (1.0, -1.0):  # theta = 0 and theta = pi
        x = (sign * centres[[2, 4]]).clone().requires_grad_(True)
        w = centres.clone().requires_grad_(True)
        out = LF.arcface_loss(x, torch.tensor([2, 4]), w)
        gx, gw = torch.autograd.grad(out, [x, w])
        assert torch.isfinite(out) and torch.isfinite(gx).all() and torch.isfinite(gw).all()


def naive_margin_ce(x, y, w, target_fn, scale):
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    rows = []
    for i in range(x.shape[0]):
        logits = [
            scale * (target_fn(cos[i, k]) if k == y[i] else cos[i, k]) for k in range(w.shape[0])
        ]
        rows.append(-(logits[y[i]] - torch.logsumexp(torch.stack(logits), 0)))
    return torch.stack(rows)


@pytest.mark.parametrize("name", ["arcface", "cosface", "normalized_softmax"])
def test_match_naive_reference_and_gradcheck_centres(name):
    x, y = data(n=4, seed=1)
    y = y % 4
    w = torch.randn(4, D, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    if name == "arcface":
        fn = lambda a, b: LF.arcface_loss(a, y, b, margin=0.4, scale=10.0, reduction="none")  # noqa: E731
        target, s = (lambda c: torch.cos(torch.acos(c) + 0.4)), 10.0
    elif name == "cosface":
        fn = lambda a, b: LF.cosface_loss(a, y, b, margin=0.2, scale=10.0, reduction="none")  # noqa: E731
        target, s = (lambda c: c - 0.2), 10.0
    else:
        fn = lambda a, b: LF.normalized_softmax_loss(a, y, b, temperature=0.25, reduction="none")  # noqa: E731
        target, s = (lambda c: c), 4.0
    torch.testing.assert_close(fn(x, w), naive_margin_ce(x, y, w, target, s))
    assert torch.autograd.gradcheck(
        fn, (x.clone().requires_grad_(True), w.clone().requires_grad_(True)), eps=1e-6, atol=1e-5
    )


def test_limits_zero_margin():
    x, y = data(seed=3)
    w = torch.randn(C, D, dtype=torch.float64)
    plain = LF.normalized_softmax_loss(x, y, w, temperature=1 / 16)
    torch.testing.assert_close(LF.cosface_loss(x, y, w, margin=0.0, scale=16.0), plain)
    torch.testing.assert_close(LF.arcface_loss(x, y, w, margin=0.0, scale=16.0), plain)
    # ...and the normalised softmax is cross-entropy of the scaled cosines.
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    torch.testing.assert_close(plain, F.cross_entropy(16.0 * cos, y))


def test_owned_vs_passed_centres():
    x, y = data(dtype=torch.float32)
    owned = ArcFaceLoss(num_classes=C, embedding_size=D)
    assert isinstance(owned.weight, torch.nn.Parameter) and owned.weight.shape == (C, D)
    assert [n for n, _ in owned.named_parameters()] == ["weight"]
    assert "weight" in owned.state_dict()
    torch.testing.assert_close(owned(x, y), LF.arcface_loss(x, y, owned.weight.detach()))
    with pytest.raises(ValueError, match="weight"):
        owned(x, y, torch.randn(C, D))
    free = ArcFaceLoss()
    assert free.weight is None and not list(free.parameters())
    with pytest.raises(ValueError, match="weight"):
        free(x, y)
    with pytest.raises(ValueError, match="weight"):
        free(x, y, torch.randn(C, D + 1))
    with pytest.raises(ValueError, match="labels"):
        owned(x, torch.full_like(y, C))
    assert "num_classes=7" in repr(owned)


def test_centres_are_trained_through_the_module():
    loss = CosFaceLoss(num_classes=3, embedding_size=4, scale=8.0)
    x = torch.randn(6, 4)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    opt = torch.optim.SGD(loss.parameters(), lr=0.5)
    before = loss(x, y).item()
    for _ in range(20):
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
    assert loss(x, y).item() < before


def test_ignore_index_rows():
    x, y = data(dtype=torch.float32)
    y = y.clone()
    y[[1, 4]] = -100
    w = torch.randn(C, D)
    none = LF.cosface_loss(x, y, w, reduction="none")
    assert (none[[1, 4]] == 0).all()
    keep = y != -100
    torch.testing.assert_close(LF.cosface_loss(x, y, w), LF.cosface_loss(x[keep], y[keep], w))
    # all ignored: 0, not NaN
    assert LF.arcface_loss(x, torch.full_like(y, -100), w).item() == 0.0
