"""RIDG's rationale invariance (Chen et al., ICCV 2023, arXiv:2308.11158) against the authors' loop.

The reference follows the authors' `RIDG.update` step by step, in float64: rationales
`W[k] * f` for every class row `k`, per-class batch means with boolean indexing, the bank copied
on a class's first sight and moved by `(1 - m) * bank + m * mean` afterwards (before the loss),
and the loss `((R - bank[c]) ** 2).sum(D).mean()` summed over the classes of the batch.
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.nn import RationaleInvariance, rationale_invariance_loss, rationales


class _AuthorsRIDG:
    def __init__(self, c, d, momentum):
        self.bank = torch.zeros(c, c, d, dtype=torch.float64)
        self.init = torch.ones(c, dtype=torch.bool)
        self.c, self.m = c, momentum

    def loss(self, features, weight, y):
        rational = torch.zeros(self.c, features.shape[0], features.shape[1], dtype=torch.float64)
        for i in range(self.c):
            rational[i] = weight[i] * features
        total = 0
        for cls in torch.unique(y):
            mean = rational[:, y == cls].mean(dim=1).detach()
            if self.init[cls]:
                self.bank[cls] = mean
                self.init[cls] = False
            else:
                self.bank[cls] = (1 - self.m) * self.bank[cls] + self.m * mean
            diff = rational[:, y == cls] - self.bank[cls].unsqueeze(1)
            total = total + (diff**2).sum(dim=2).mean()
        return total


def test_matches_the_authors_loop_over_several_steps_with_gradients():
    c, d = 4, 6
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(c, d, generator=g, dtype=torch.float64, requires_grad=True)
    ours = RationaleInvariance(c, d, momentum=0.3).double()
    ref = _AuthorsRIDG(c, d, momentum=0.3)
    for step in range(5):
        n = 7
        feats = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, c - (step == 0), (n,), generator=g)  # class 3 first seen later
        want = ref.loss(feats, weight, y)
        w_grads = torch.autograd.grad(want, (feats, weight))
        got = ours(feats, weight, y)
        g_grads = torch.autograd.grad(got, (feats, weight))
        torch.testing.assert_close(got, want)
        for a, b in zip(g_grads, w_grads, strict=True):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(ours.bank, ref.bank)
        torch.testing.assert_close(ours.seen, ~ref.init)


def test_identical_rationales_within_each_class_give_zero():
    c, d = 3, 5
    weight = torch.randn(c, d)
    protos = torch.randn(c, d)
    y = torch.tensor([0, 0, 0, 1, 1, 2])
    ridg = RationaleInvariance(c, d)
    # First sight: the bank is the batch mean, equal to every sample's rationale.
    assert float(ridg(protos[y], weight, y)) == pytest.approx(0.0, abs=1e-12)  # mean round-off
    # Later batches of the same rationales keep the EMA at the same point.
    assert float(ridg(protos[y], weight, y)) == pytest.approx(0.0, abs=1e-12)


def test_rationales_sum_to_the_logits_and_the_functional_core():
    fc = torch.nn.Linear(5, 3)
    f = torch.randn(4, 5)
    r = rationales(f, fc.weight)
    torch.testing.assert_close(r.sum(-1) + fc.bias, fc(f))
    means = torch.randn(3, 3, 5)
    y = torch.tensor([0, 2, 2, 1])
    # Naive: classes 0 and 1 have one sample each, class 2 two; mean over rows and samples.
    want = sum(((r[y == k] - means[k]) ** 2).sum(-1).mean() for k in range(3) if (y == k).any())
    torch.testing.assert_close(rationale_invariance_loss(r, y, means), want)


def test_eval_mode_does_not_move_the_bank_and_state_dict_resumes():
    c, d = 3, 4
    weight = torch.randn(c, d)
    ridg = RationaleInvariance(c, d, momentum=0.5)
    x, y = torch.randn(6, d), torch.tensor([0, 1, 2, 0, 1, 2])
    ridg(x, weight, y)
    bank = ridg.bank.clone()
    ridg.eval()
    ridg(torch.randn(6, d), weight, y)
    torch.testing.assert_close(ridg.bank, bank)
    resumed = RationaleInvariance(c, d, momentum=0.5)
    resumed.load_state_dict(ridg.state_dict())
    ridg.train()
    x2 = torch.randn(6, d)
    torch.testing.assert_close(resumed(x2, weight, y), ridg(x2, weight, y))
    torch.testing.assert_close(resumed.bank, ridg.bank)
    assert set(ridg.state_dict()) == {"bank", "seen"}


def test_bad_arguments_raise_naming_them():
    ridg = RationaleInvariance(3, 4)
    with pytest.raises(ValueError, match="momentum"):
        RationaleInvariance(3, 4, momentum=0.0)
    with pytest.raises(TypeError, match="num_classes"):
        RationaleInvariance(3.0, 4)
    with pytest.raises(ValueError, match="weight"):
        ridg(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="features"):
        ridg(torch.randn(2, 5), torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="target"):
        ridg(torch.randn(2, 4), torch.randn(3, 4), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="target"):
        ridg(torch.randn(2, 4), torch.randn(3, 4), torch.tensor([0.0, 1.0]))
