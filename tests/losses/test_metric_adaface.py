"""AdaFace (`losses/metric/adaface.py`) against the authors' head.

Reference: a float64 port of the official AdaFace head (`mk-minchul/AdaFace`, `head.py`, class
`AdaFace`, quoted below), over several training steps (value, gradients and the running norm
statistics), and its CosFace / ArcFace limits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import AdaFaceLoss

C, D = 7, 5


def data(n=12, seed=0, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=dtype) * scale, torch.randint(
        0, C, (n,), generator=g
    )


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
