"""⊥Grad (Prieto et al., ICLR 2025, arXiv:2501.04697) against a float64 reference of the formula.

Reference per tensor (flattened): $g_\\perp = g - \\langle g,w\\rangle / (\\lVert w\\rVert^2 +
10^{-30})\\,w$, rescaled to $\\lVert g\\rVert$ when asked (the authors' `orthograd.py`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import SAM, PerpGrad, perpendicular_gradient
from tests._lightning import quiet_trainer


def _reference(w, g, rescale):
    w, g = w.double().reshape(-1), g.double().reshape(-1)
    out = g - (g @ w) / (w @ w + 1e-30) * w
    if rescale:
        out = out * g.norm() / (out.norm() + 1e-30)
    return out


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), rescale=st.booleans(), shape=st.sampled_from([(5,), (3, 4)]))
def test_projection_is_orthogonal_to_w_and_matches_reference(seed, rescale, shape):
    gen = torch.Generator().manual_seed(seed)
    w, g = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    out = perpendicular_gradient(w, g, rescale=rescale)
    assert out.shape == g.shape and out.dtype == g.dtype
    torch.testing.assert_close(
        out.reshape(-1).double(), _reference(w, g, rescale), atol=1e-5, rtol=1e-5
    )
    cos = (out.reshape(-1) @ w.reshape(-1)) / (out.norm() * w.norm())
    assert abs(float(cos)) < 1e-5
    if rescale:
        torch.testing.assert_close(out.norm(), g.norm())
    else:  # the projection is idempotent and leaves the orthogonal part unchanged
        torch.testing.assert_close(
            perpendicular_gradient(w, out, rescale=False), out, atol=1e-6, rtol=1e-5
        )


def test_known_values_and_special_cases():
    w = torch.tensor([1.0, 0.0])
    assert torch.equal(
        perpendicular_gradient(w, torch.tensor([3.0, 4.0]), rescale=False), torch.tensor([0.0, 4.0])
    )
    # g parallel to w: nothing is left, even with rescaling (no division blow-up)
    assert torch.equal(perpendicular_gradient(w, torch.tensor([2.0, 0.0])), torch.zeros(2))
    # w = 0 (zero-initialised bias): the gradient is unchanged
    g = torch.tensor([1.0, -2.0])
    assert torch.equal(perpendicular_gradient(torch.zeros(2), g), g)
    # bf16 gradients are projected in fp32 and returned in bf16
    out = perpendicular_gradient(w.bfloat16(), torch.tensor([3.0, 4.0]).bfloat16())
    assert out.dtype == torch.bfloat16


def test_invalid_arguments():
    with pytest.raises(ValueError, match="same shape"):
        perpendicular_gradient(torch.ones(2), torch.ones(3))
    with pytest.raises(TypeError, match="rescale"):
        PerpGrad(rescale=1)


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.05, weight_decay=0.0)


def _loader():
    g = torch.Generator().manual_seed(1)
    return DataLoader(
        TensorDataset(torch.randn(16, 5, generator=g), torch.randint(3, (16,), generator=g)),
        batch_size=8,
    )


@pytest.mark.parametrize("rescale", [True, False])
def test_callback_update_equals_manual_projected_adamw(rescale):
    model = Model()
    trainer = quiet_trainer(
        max_steps=2, callbacks=[PerpGrad(rescale=rescale)], enable_checkpointing=False
    )
    trainer.fit(model, _loader())
    ref = Model()
    opt = torch.optim.AdamW(ref.parameters(), lr=0.05, weight_decay=0.0)
    for x, y in _loader():
        opt.zero_grad()
        F.cross_entropy(ref.net(x), y).backward()
        for p in ref.parameters():
            p.grad = _reference(p.detach(), p.grad, rescale).reshape(p.shape).float()
        opt.step()
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert "perp_grad/cos" in trainer.callback_metrics


def test_callback_sees_the_restored_weights_after_sam():
    # SAM restores w in on_after_backward, so the projection is against w (not w + eps):
    # the applied update is orthogonal to the pre-step weights (plain SGD, rescale=False).
    class SGDModel(Model):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    model = SGDModel()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = quiet_trainer(
        max_steps=1, callbacks=[SAM(rho=0.5), PerpGrad(rescale=False)], enable_checkpointing=False
    )
    trainer.fit(model, _loader())
    for w0, p in zip(before, model.parameters(), strict=True):
        step = (p.detach() - w0).reshape(-1)
        assert abs(float(step @ w0.reshape(-1))) < 1e-6 * float(step.norm() * w0.norm()) + 1e-9
