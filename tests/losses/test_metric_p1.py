"""Family tests for AdaFace, Partial FC, GE2E and the prototypical loss.

References: a float64 port of the official AdaFace head (`mk-minchul/AdaFace`, `head.py`,
class `AdaFace`, quoted below), the full ArcFace / CosFace for Partial FC at `sample_rate=1`,
and naive loops written from the GE2E and prototypical-network papers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import AdaFaceLoss, GE2ELoss, PartialFCLoss, PrototypicalLoss
from lightning_losses.losses.metric.partial_fc import sample_centres

C, D = 7, 5


def data(n=12, seed=0, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=dtype) * scale, torch.randint(
        0, C, (n,), generator=g
    )


# ----------------------------------------------------------------------------- AdaFace


def official_adaface(emb, label, kernel_cd, state, m=0.4, h=0.333, s=64.0, t_alpha=0.01):
    """The official forward (kernel stored [D, C] there), then CE; `state` = [mean, std] updated."""
    eps = 1e-3
    norms = torch.norm(emb, 2, 1, True)
    embbedings = emb / norms
    kernel = kernel_cd.T
    kernel_norm = kernel / torch.norm(kernel, 2, 0, True)
    cosine = torch.mm(embbedings, kernel_norm).clamp(-1 + eps, 1 - eps)
    safe_norms = torch.clip(norms, min=0.001, max=100).clone().detach()
    with torch.no_grad():
        mean, std = safe_norms.mean(), safe_norms.std()
        state[0] = mean * t_alpha + (1 - t_alpha) * state[0]
        state[1] = std * t_alpha + (1 - t_alpha) * state[1]
    margin_scaler = torch.clip((safe_norms - state[0]) / (state[1] + eps) * h, -1, 1)
    m_arc = torch.zeros(label.size()[0], cosine.size()[1], dtype=emb.dtype)
    m_arc.scatter_(1, label.reshape(-1, 1), 1.0)
    m_arc = m_arc * (m * margin_scaler * -1)
    theta_m = torch.clip(cosine.acos() + m_arc, min=eps, max=math.pi - eps)
    cosine = theta_m.cos()
    m_cos = torch.zeros(label.size()[0], cosine.size()[1], dtype=emb.dtype)
    m_cos.scatter_(1, label.reshape(-1, 1), 1.0)
    cosine = cosine - m_cos * (m + m * margin_scaler)
    return F.cross_entropy(cosine * s, label)


def test_adaface_matches_official_head_over_steps_value_gradient_and_buffers():
    torch.manual_seed(0)
    ours = AdaFaceLoss(C, D, t_alpha=0.3).double()
    with torch.no_grad():
        ours.weight.normal_()
    kernel = ours.weight.detach().clone().requires_grad_(True)
    state = [torch.tensor(20.0, dtype=torch.float64), torch.tensor(100.0, dtype=torch.float64)]
    for step in range(3):
        x, y = data(seed=step, scale=10.0 + 5 * step)
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        a = ours(x1, y)
        b = official_adaface(x2, y, kernel, state, t_alpha=0.3)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        ga = torch.autograd.grad(a, [x1, ours.weight])
        gb = torch.autograd.grad(b, [x2, kernel])
        torch.testing.assert_close(ga[0], gb[0], rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(ga[1], gb[1], rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(ours.batch_mean, state[0])
        torch.testing.assert_close(ours.batch_std, state[1])


def test_adaface_limits_cosface_and_arcface():
    x, y = data(scale=10.0)
    w = torch.randn(C, D, dtype=torch.float64)
    # h = 0 => z = 0 => CosFace(m).
    torch.testing.assert_close(
        LF.adaface_loss(x, y, w, h=0.0, margin=0.4, scale=16.0, reduction="none"),
        LF.cosface_loss(x, y, w, margin=0.4, scale=16.0, reduction="none"),
    )
    # A mean norm far above every norm => z = -1 => ArcFace(m) where theta + m <= pi - eps.
    ada = LF.adaface_loss(x, y, w, 1e4, 1.0, h=1.0, margin=0.4, scale=16.0, reduction="none")
    arc = LF.arcface_loss(x, y, w, margin=0.4, scale=16.0, reduction="none")
    theta = (F.normalize(x) * F.normalize(w)[y]).sum(1).acos()
    ok = theta + 0.4 <= math.pi - 1e-3
    assert ok.sum() >= 8
    torch.testing.assert_close(ada[ok], arc[ok], rtol=1e-6, atol=1e-6)


def test_adaface_gradcheck_of_the_centres_with_fixed_statistics():
    # The norm term z is detached by design (so no gradcheck w.r.t. the embeddings); the
    # centres enter only through the cosines.
    x, y = data(n=3, scale=10.0)
    y = y % 4
    w = torch.randn(4, D, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda c: LF.adaface_loss(x, y, c, 12.0, 4.0, scale=8.0, reduction="none"), (w,)
    )


def test_adaface_buffers_frozen_in_eval_and_single_row_keeps_std():
    loss = AdaFaceLoss(C, D)
    x, y = data(dtype=torch.float32, scale=30.0)
    loss.eval()
    loss(x, y)
    assert loss.batch_mean.item() == 20.0 and loss.batch_std.item() == 100.0
    loss.train()
    out = loss(x[:1], y[:1])
    assert torch.isfinite(out) and loss.batch_std.item() == 100.0 and loss.batch_mean.item() != 20.0
    assert {"batch_mean", "batch_std", "weight"} <= set(loss.state_dict())


# ----------------------------------------------------------------------------- Partial FC


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
    index, remapped = sample_centres(y, num_classes, 0.2, generator=g)
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
    index, _ = sample_centres(y, num_classes, 0.01)
    assert index.tolist() == [3, 8, 17, 40]


# ----------------------------------------------------------------------------- GE2E


def naive_ge2e(x, w, b, method):
    n, m, _ = x.shape
    e = [[x[j, i] / x[j, i].norm() for i in range(m)] for j in range(n)]
    cent = [sum(e[k]) / m for k in range(n)]
    rows = []
    for j in range(n):
        row = []
        for i in range(m):
            s = []
            for k in range(n):
                c = (sum(e[j]) - e[j][i]) / (m - 1) if k == j else cent[k]
                s.append(w * torch.dot(e[j][i], c) / c.norm() + b)
            s = torch.stack(s)
            if method == "softmax":
                row.append(-s[j] + torch.logsumexp(s, 0))
            else:
                others = [torch.sigmoid(s[k]) for k in range(n) if k != j]
                row.append(1 - torch.sigmoid(s[j]) + (max(others) if others else 0.0))
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("method", ["softmax", "contrast"])
def test_ge2e_matches_naive_loop_with_parameter_gradients(method):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, D, generator=g, dtype=torch.float64, requires_grad=True)
    loss = GE2ELoss(method=method, reduction="none").double()
    with torch.no_grad():
        loss.w.fill_(3.0)
        loss.b.fill_(-1.0)
    ours = loss(x)
    w = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ref = naive_ge2e(x2, w, b, method)
    torch.testing.assert_close(ours, ref)
    g1 = torch.autograd.grad(ours.sum(), [x, loss.w, loss.b])
    g2 = torch.autograd.grad(ref.sum(), [x2, w, b])
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a, c)


def test_ge2e_requires_two_utterances_and_single_speaker_is_finite():
    with pytest.raises(ValueError, match="M ≥ 2"):
        LF.ge2e_loss(torch.randn(3, 1, 4))
    with pytest.raises(ValueError, match="embeddings"):
        LF.ge2e_loss(torch.randn(3, 4))
    one = LF.ge2e_loss(torch.randn(1, 3, 4), method="contrast", reduction="none")
    assert one.shape == (1, 3) and torch.isfinite(one).all()
    # w is clamped positive
    assert torch.isfinite(LF.ge2e_loss(torch.randn(2, 2, 4), w=-1.0))


# ----------------------------------------------------------------------------- prototypical


def naive_proto(q, ql, s, sl, distance):
    classes = sorted(set(sl.tolist()))
    protos = [s[sl == c].mean(0) for c in classes]
    rows = []
    for i in range(q.shape[0]):
        if distance == "sqeuclidean":
            logits = torch.stack([-(q[i] - p).pow(2).sum() for p in protos])
        else:
            logits = torch.stack([torch.dot(q[i], p) / (q[i].norm() * p.norm()) for p in protos])
        rows.append(torch.logsumexp(logits, 0) - logits[classes.index(int(ql[i]))])
    return torch.stack(rows)


@pytest.mark.parametrize("distance", ["sqeuclidean", "cosine"])
def test_prototypical_matches_naive_loop_and_gradcheck(distance):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 3, generator=g, dtype=torch.float64)
    s = torch.randn(6, 3, generator=g, dtype=torch.float64)
    sl = torch.tensor([4, 4, 10, 2, 2, 2])  # uneven shots, arbitrary label values
    ql = torch.tensor([2, 10, 4, 2])
    fn = lambda a, b: LF.prototypical_loss(a, ql, b, sl, distance=distance, reduction="none")  # noqa: E731
    torch.testing.assert_close(fn(q, s), naive_proto(q, ql, s, sl, distance))
    assert torch.autograd.gradcheck(
        fn, (q.clone().requires_grad_(True), s.clone().requires_grad_(True))
    )


def test_prototypical_query_label_without_support_raises():
    with pytest.raises(ValueError, match="query_labels"):
        PrototypicalLoss()(
            torch.randn(2, 3), torch.tensor([0, 7]), torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
        )
