"""Prototypical loss (`losses/metric/prototypical.py`) against a naive float64 loop."""

from __future__ import annotations

import pytest
import torch

import lightning_losses.functional as LF
from lightning_losses.losses import PrototypicalLoss


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
