"""KL-DRO instance reweighting (Sow et al., ICLR 2024, arXiv:2308.00311).

References: the closed form $w = \\mathrm{softmax}(\\ell/\\lambda)$ is checked against a direct
numerical maximisation of $\\sum_i w_i\\ell_i - \\lambda \\mathrm{KL}(w \\| u)$ over the simplex
(float64 mirror ascent written in the test), plus its limits (mean, max) and the trained
gradient $\\sum_i w_i \\nabla \\ell_i$.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import KLDROReweighting, kl_dro_loss, kl_dro_weights
from lightning_losses.mixins import LossMixin
from tests._lightning import quiet_trainer


def _objective(w, losses, lam):
    n = losses.numel()
    return (w * losses).sum() - lam * (w * torch.log(w * n)).sum()


def _maximise(losses, lam, steps=3000, lr=0.5):
    # Mirror (exponentiated-gradient) ascent on the simplex, float64.
    n = losses.numel()
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(steps):
        grad = losses - lam * (torch.log(w * n) + 1)
        w = w * torch.exp(lr * grad / max(lam, 1.0))
        w = w / w.sum()
    return w


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), lam=st.sampled_from([0.3, 1.0, 3.0]))
def test_closed_form_maximises_the_kl_regularised_objective(seed, lam):
    gen = torch.Generator().manual_seed(seed)
    losses = torch.rand(6, generator=gen, dtype=torch.float64) * 3
    w = kl_dro_weights(losses, lam).double()
    ref = _maximise(losses, lam)
    torch.testing.assert_close(w, ref, atol=1e-5, rtol=1e-4)
    # and no random point of the simplex does better
    for _ in range(20):
        v = torch.distributions.Dirichlet(torch.ones(6, dtype=torch.float64)).sample()
        assert _objective(v, losses, lam) <= _objective(w, losses, lam) + 1e-9


def test_limits_mean_and_max():
    losses = torch.tensor([0.2, 1.5, 0.7, 3.0])
    torch.testing.assert_close(kl_dro_loss(losses, lam=1e6), losses.mean(), atol=1e-5, rtol=0)
    torch.testing.assert_close(kl_dro_loss(losses, lam=1e-4), losses.max())
    torch.testing.assert_close(kl_dro_weights(torch.full((5,), 2.0), 0.1), torch.full((5,), 0.2))


def test_gradient_is_the_weighted_sum_of_per_sample_gradients():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    losses = x.square()
    kl_dro_loss(losses, lam=0.7).backward()
    w = torch.softmax(x.detach().square() / 0.7, 0)
    torch.testing.assert_close(x.grad, w * 2 * x.detach())


def test_non_finite_losses_get_weight_zero_and_leave_the_loss_finite():
    losses = torch.tensor([1.0, math.inf, math.nan, 2.0])
    w = kl_dro_weights(losses, 1.0)
    assert w[1] == 0 and w[2] == 0 and math.isclose(float(w.sum()), 1.0, rel_tol=1e-6)
    assert torch.isfinite(kl_dro_loss(losses, 1.0))
    assert torch.equal(kl_dro_weights(torch.tensor([math.nan, math.inf]), 1.0), torch.zeros(2))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((torch.ones(2, 2), 1.0), ValueError, "1-D"),
        ((torch.ones(3), 0.0), ValueError, "lam"),
        ((torch.ones(3), -1.0), ValueError, "lam"),
        ((torch.ones(3, dtype=torch.long), 1.0), TypeError, "losses"),
        (([1.0, 2.0], 1.0), TypeError, "losses"),
    ],
)
def test_invalid_arguments(args, error, match):
    with pytest.raises(error, match=match):
        kl_dro_weights(*args)


class Model(LossMixin, LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(6, 4)
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.compute_loss(self.net(x), y).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_callback_step_is_the_kl_dro_weighted_gradient():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(16, 6, generator=g), torch.randint(4, (16,), generator=g)
    model = Model()
    cb = KLDROReweighting(lam=0.5)
    trainer = quiet_trainer(max_steps=2, callbacks=[cb], enable_checkpointing=False)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    ref = Model().double()
    for k in range(2):
        xb, yb = x[8 * k : 8 * k + 8].double(), y[8 * k : 8 * k + 8]
        losses = F.cross_entropy(ref.net(xb), yb, reduction="none")
        w = torch.softmax(losses.detach() / 0.5, 0)
        grads = torch.autograd.grad((w * losses).sum(), list(ref.net.parameters()))
        with torch.no_grad():
            for p, gr in zip(ref.net.parameters(), grads, strict=True):
                p -= 0.5 * gr
    for a, b in zip(model.net.parameters(), ref.net.parameters(), strict=True):
        torch.testing.assert_close(a.double(), b, atol=1e-6, rtol=1e-5)
    assert 1.0 <= float(trainer.callback_metrics["kl_dro/effective_n"]) <= 8.0


def test_callback_requires_loss_mixin():
    class Plain(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(6, 4)

        def training_step(self, batch, batch_idx):
            return self.net(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(TensorDataset(torch.randn(4, 6), torch.zeros(4)), batch_size=2)
    trainer = quiet_trainer(max_steps=1, callbacks=[KLDROReweighting()], enable_checkpointing=False)
    with pytest.raises(TypeError, match="LossModel"):
        trainer.fit(Plain(), data)
