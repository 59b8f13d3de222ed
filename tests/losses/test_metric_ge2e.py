"""GE2E loss (`losses/metric/ge2e.py`) against a naive float64 loop of the paper's equations."""

from __future__ import annotations

import pytest
import torch

import lightning_losses.functional as LF
from lightning_losses.losses import GE2ELoss

D = 5


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
    # w is clamped to its floor 1e-6 (the paper requires w > 0), not used as given.
    x = torch.randn(2, 2, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(LF.ge2e_loss(x, w=-1.0), LF.ge2e_loss(x, w=1e-6))
    assert not torch.allclose(LF.ge2e_loss(x, w=-1.0), LF.ge2e_loss(x, w=1.0))
