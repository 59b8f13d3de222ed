"""LossMixin's backward seam: a gradient handler gets the main loss and each aux objective apart."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks.base import BehaviourCallback, Role
from lightning_losses.mixins import GradientHandler, LossMixin
from tests._lightning import quiet_trainer


class Model(LossMixin, LightningModule):
    def __init__(self, with_aux=True):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(4, 3)
        self.with_aux = with_aux
        self.configure_criterion("cross_entropy")

    def aux_terms(self, logits):
        if not self.with_aux:
            return {}
        w = self.net.weight
        return {"logit_l2": 0.3 * logits.square().mean(), "weight_l1": 0.2 * w.abs().sum()}

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return self.compute_loss(logits, y, aux=self.aux_terms(logits)).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class ManualModel(Model):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        x, y = batch
        logits = self.net(x)
        out = self.compute_loss(logits, y, aux=self.aux_terms(logits))
        self.manual_loss_backward(out)
        self.grads.append([p.grad.clone() for p in self.parameters()])
        opt.step()


class SplitHandler(BehaviourCallback):
    """Bloop's DDP-safe pattern: aux gradients by autograd.grad, then one main backward."""

    role = Role.GRADIENT_HANDLER
    call_hint = "compute the loss with compute_loss"

    def __init__(self, keep_aux=True):
        super().__init__()
        self.keep_aux = keep_aux
        self.calls = []

    def backward(self, module, main, aux, *, accumulation_factor, scaler):
        params = [p for p in module.parameters() if p.requires_grad]
        self.calls.append((main.detach(), {k: v.detach() for k, v in aux.items()}))
        self.factors = [*getattr(self, "factors", []), accumulation_factor]
        aux_grads = None
        if aux and self.keep_aux:
            total = torch.stack(list(aux.values())).sum()
            aux_grads = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
        main.backward()
        if aux_grads is not None:
            for p, g in zip(params, aux_grads, strict=True):
                if g is not None:
                    p.grad += g


class GradRecorder(Callback):
    def __init__(self):
        self.grads = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads.append([p.grad.clone() for p in pl_module.parameters()])


def _loader():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def _grads(model, callbacks=(), accumulate=1, steps=1):
    rec = GradRecorder()
    trainer = quiet_trainer(
        max_steps=steps,
        enable_checkpointing=False,
        callbacks=[*callbacks, rec],
        accumulate_grad_batches=accumulate,
    )
    trainer.fit(model, _loader())
    return rec.grads, trainer


def _assert_same(a, b):
    for step_a, step_b in zip(a, b, strict=True):
        for ga, gb in zip(step_a, step_b, strict=True):
            torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-7)


def test_protocol_and_role():
    assert isinstance(SplitHandler(), GradientHandler)
    assert Role.GRADIENT_HANDLER == "gradient_handler"


def test_separate_main_and_aux_grads_sum_to_the_combined_grad_under_accumulation():
    combined, _ = _grads(Model(), accumulate=2)
    handler = SplitHandler()
    split, trainer = _grads(Model(), [handler], accumulate=2)
    _assert_same(split, combined)
    # One call per micro-batch, each scaled by 1/accumulate_grad_batches like Lightning's loss.
    assert handler.factors == [0.5, 0.5]
    main, aux = handler.calls[0]
    assert set(aux) == {"logit_l2", "weight_l1"}
    x, y = next(iter(_loader()))
    ref = Model()
    logits = ref.net(x)
    expected_main = nn.functional.cross_entropy(logits, y) * 0.5
    torch.testing.assert_close(main, expected_main.detach())
    torch.testing.assert_close(aux["weight_l1"], 0.5 * 0.2 * ref.net.weight.abs().sum().detach())
    # train/loss means the same thing with the handler: main + aux.
    m = trainer.callback_metrics
    torch.testing.assert_close(
        m["train/loss_step"],
        m["train/loss_main_step"] + m["train/logit_l2_step"] + m["train/weight_l1_step"],
    )


def test_a_handler_that_drops_the_aux_gives_exactly_the_main_only_grads():
    main_only, _ = _grads(Model(with_aux=False), steps=2)
    dropped, _ = _grads(Model(), [SplitHandler(keep_aux=False)], steps=2)
    _assert_same(dropped, main_only)
    with_aux, _ = _grads(Model(), steps=2)
    assert not torch.allclose(with_aux[0][0], main_only[0][0])  # the aux does change the grads


def test_manual_optimization_routes_through_the_same_handler():
    automatic, _ = _grads(Model(), [SplitHandler()], steps=2)
    model = ManualModel()
    model.grads = []
    handler = SplitHandler()
    quiet_trainer(max_steps=2, enable_checkpointing=False, callbacks=[handler]).fit(
        model, _loader()
    )
    _assert_same(model.grads, automatic)
    assert handler.factors == [1.0, 1.0] and len(handler.calls) == 2
    # Without a handler the manual path is plain manual_backward of the total loss.
    plain = ManualModel()
    plain.grads = []
    quiet_trainer(max_steps=2, enable_checkpointing=False).fit(plain, _loader())
    _assert_same(plain.grads, automatic)


def test_scaler_scales_the_parts_like_the_loss(monkeypatch):
    model = Model()
    x, y = next(iter(_loader()))
    out = model.compute_loss(model.net(x), y, aux=model.aux_terms(model.net(x)))
    handler = SplitHandler()
    model.__dict__[Role.GRADIENT_HANDLER] = handler
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    monkeypatch.setattr(Model, "_grad_scaler", lambda self: scaler)
    model.backward(out.loss)
    main, aux = handler.calls[0]
    torch.testing.assert_close(main, 8.0 * out.main.detach())
    torch.testing.assert_close(aux["logit_l2"], 8.0 * out.aux["logit_l2"].detach())


def test_handler_needs_the_loss_from_compute_loss():
    class Bypass(Model):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

    with pytest.raises(RuntimeError, match=r"did not compute its loss with\s+self\.compute_loss"):
        _grads(Bypass(), [SplitHandler()])


def test_handler_never_called_fails_after_the_first_step():
    class OwnBackward(Model):
        def backward(self, loss, *args, **kwargs):
            loss.backward()

    with pytest.raises(RuntimeError, match="never called it: compute the loss with compute_loss"):
        _grads(OwnBackward(), [SplitHandler()])
