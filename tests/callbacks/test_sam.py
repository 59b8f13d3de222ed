"""SAM / ASAM callback (Foret et al., ICLR 2021, arXiv:2010.01412; Kwon et al., ICML 2021,
arXiv:2102.11600) against a naive float64 two-pass reference written from the formulas.

Reference per micro-batch $j$: $g = \\nabla L_j(w)$, $\\hat\\epsilon = \\rho T^2 g /
(\\lVert T g\\rVert + 10^{-12})$ with $T = 1$ or $|w| + \\eta$, $g_j = \\nabla L_j(w +
\\hat\\epsilon)$; the optimizer (SGD with momentum) steps with the mean of the $g_j$, clipped
by norm when asked (torch's `clip_grad_norm_`: coefficient `max / (norm + 1e-6)`, at most 1).
Tolerance: float32 runs vs float64, `atol=1e-6, rtol=1e-5`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import SAM, LossReweighting, loss_weights, sam_perturbation
from lightning_losses.mixins import LossMixin
from tests._lightning import quiet_trainer

LR, MOMENTUM = 0.1, 0.9


def _net(bn: bool = False, dropout: float = 0.0) -> torch.nn.Module:
    torch.manual_seed(3)
    layers: list[torch.nn.Module] = [torch.nn.Linear(6, 8)]
    if bn:
        layers.append(torch.nn.BatchNorm1d(8))
    layers.append(torch.nn.Tanh())
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(8, 3))
    return torch.nn.Sequential(*layers)


def _data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(n, 6, generator=g), torch.randint(3, (n,), generator=g)


class Model(LossMixin, LightningModule):
    def __init__(self, bn: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = _net(bn, dropout)
        self.configure_criterion("cross_entropy")
        self.calls = 0

    def training_step(self, batch, batch_idx):
        self.calls += 1
        x, y = batch
        return self.compute_loss(self.net(x), y).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)


def _fit(callbacks, *, batch=8, steps=3, model=None, **trainer_kw):
    model = model if model is not None else Model()
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)
    trainer = quiet_trainer(
        max_steps=steps, callbacks=callbacks, enable_checkpointing=False, **trainer_kw
    )
    trainer.fit(model, loader)
    return model, trainer


def _eps(params, grads, rho, adaptive, eta):
    t = [p.abs() + eta if adaptive else torch.ones_like(p) for p in params]
    norm = torch.sqrt(sum(((ti * g) ** 2).sum() for ti, g in zip(t, grads, strict=True)))
    return [rho * ti**2 * g / (norm + 1e-12) for ti, g in zip(t, grads, strict=True)]


def _reference(
    *, rho=0.05, adaptive=False, eta=0.0, interval=1, micro=8, accum=1, steps=3, clip=None
):
    net = _net().double()
    params = list(net.parameters())
    x, y = _data()
    x = x.double()
    buf = None
    for step in range(steps):
        total = [torch.zeros_like(p) for p in params]
        for j in range(accum):
            start = (step * accum + j) * micro
            xb, yb = x[start : start + micro], y[start : start + micro]
            g = torch.autograd.grad(F.cross_entropy(net(xb), yb), params)
            if step % interval == 0:
                eps = _eps([p.detach() for p in params], g, rho, adaptive, eta)
                with torch.no_grad():
                    for p, e in zip(params, eps, strict=True):
                        p += e
                g = torch.autograd.grad(F.cross_entropy(net(xb), yb), params)
                with torch.no_grad():
                    for p, e in zip(params, eps, strict=True):
                        p -= e
            total = [t + gi / accum for t, gi in zip(total, g, strict=True)]
        if clip is not None:
            norm = torch.sqrt(sum((t**2).sum() for t in total))
            coef = min(clip / (float(norm) + 1e-6), 1.0)
            total = [t * coef for t in total]
        buf = total if buf is None else [MOMENTUM * b + t for b, t in zip(buf, total, strict=True)]
        with torch.no_grad():
            for p, b in zip(params, buf, strict=True):
                p -= LR * b
    return [p.detach() for p in params]


def _assert_params(model, ref):
    for p, r in zip(model.net.parameters(), ref, strict=True):
        torch.testing.assert_close(p.detach().double(), r, atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------------ functional core
def test_perturbation_has_norm_rho_along_the_gradient():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    grads = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    eps, norm = sam_perturbation(params, grads, rho=0.3)
    flat_e = torch.cat([e.reshape(-1) for e in eps])
    flat_g = torch.cat([x.reshape(-1) for x in grads])
    assert math.isclose(float(flat_e.norm()), 0.3, rel_tol=1e-6)
    assert math.isclose(float(norm), float(flat_g.norm()), rel_tol=1e-6)
    torch.testing.assert_close(flat_e, 0.3 * flat_g / flat_g.norm())


@pytest.mark.parametrize("eta", [0.0, 0.01])
def test_adaptive_matches_the_formula_in_float64(eta):
    g = torch.Generator().manual_seed(1)
    params = [torch.randn(4, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    grads = [torch.randn(4, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    eps, _ = sam_perturbation(params, grads, rho=0.5, adaptive=True, eta=eta)
    ref = _eps(params, grads, 0.5, True, eta)
    for e, r in zip(eps, ref, strict=True):
        torch.testing.assert_close(e.double(), r, atol=1e-7, rtol=1e-6)
    # ASAM's neighbourhood is scale invariant: rescaling w by c > 0 (eta = 0) rescales eps by c.
    if eta == 0.0:
        scaled, _ = sam_perturbation(
            [2 * p for p in params], [g_ / 2 for g_ in grads], 0.5, adaptive=True
        )
        for e, s in zip(eps, scaled, strict=True):
            torch.testing.assert_close(s, 2 * e)


def test_zero_or_missing_gradient_gives_zero_perturbation():
    p = [torch.ones(3), torch.ones(2)]
    eps, norm = sam_perturbation(p, [torch.zeros(3), None], rho=0.05)
    assert float(norm) == 0.0 and all(bool((e == 0).all()) for e in eps)
    eps, _ = sam_perturbation(p, [torch.ones(3), None], rho=0.05)
    assert bool((eps[1] == 0).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rho": -0.1}, ValueError, "rho"),
        ({"rho": "big"}, TypeError, "rho"),
        ({"eta": -1.0}, ValueError, "eta"),
        ({"interval": 0}, ValueError, "interval"),
        ({"interval": 1.5}, TypeError, "interval"),
        ({"adaptive": 1}, TypeError, "adaptive"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SAM(**kwargs)


@pytest.mark.parametrize("adaptive", [False, True])
def test_sharded_perturbation_equals_the_whole_one(adaptive):
    # Two "ranks" hold the row halves of every parameter; sum_fn adds the other rank's partial,
    # as the all-reduce over the FSDP2 group would. The shards' eps must be the whole eps's rows.
    g = torch.Generator().manual_seed(2)
    params = [torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(6, generator=g)]
    params[1] = params[1].double()
    grads = [torch.randn_like(p) for p in params]
    kw = dict(rho=0.4, adaptive=adaptive, eta=0.01)
    whole, whole_norm = sam_perturbation(params, grads, **kw)
    halves = [[p[: len(p) // 2] for p in params], [p[len(p) // 2 :] for p in params]]
    ghalves = [[x[: len(x) // 2] for x in grads], [x[len(x) // 2 :] for x in grads]]
    t = [(p.abs() + 0.01) if adaptive else torch.ones_like(p) for p in params]
    partial = [
        sum(((gx * tx) ** 2).sum() for gx, tx in zip(gh, th, strict=True))
        for gh, th in zip(ghalves, ([x[: len(x) // 2] for x in t], [x[len(x) // 2 :] for x in t]))
    ]
    for r in range(2):

        def add_other(sq, other=partial[1 - r]):
            return sq + other

        eps, norm = sam_perturbation(halves[r], ghalves[r], **kw, sum_fn=add_other)
        torch.testing.assert_close(norm.double(), whole_norm.double())
        for e, w in zip(eps, whole, strict=True):
            half = len(w) // 2
            torch.testing.assert_close(e, w[:half] if r == 0 else w[half:])


def test_fsdp2_needs_the_synced_perturbation_and_other_sharding_is_refused():
    from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

    trainer = SimpleNamespace(strategy=ModelParallelStrategy())
    with pytest.raises(ValueError, match="sync_perturbation=True"):
        SAM().check_module(trainer, Model())
    SAM(sync_perturbation=True).check_module(trainer, Model())  # accepted
    trainer = SimpleNamespace(strategy=FSDPStrategy())
    with pytest.raises(ValueError, match="FSDPStrategy"):
        SAM(sync_perturbation=True).check_module(trainer, Model())


def test_mismatched_gradients_are_refused():
    with pytest.raises(ValueError, match="length"):
        sam_perturbation([torch.ones(2)], [], rho=0.1)
    with pytest.raises(ValueError, match="shape"):
        sam_perturbation([torch.ones(2)], [torch.ones(3)], rho=0.1)


# --------------------------------------------------------------------------- the trainer
@pytest.mark.parametrize(
    "kwargs", [{}, {"adaptive": True, "rho": 0.5}, {"adaptive": True, "rho": 0.5, "eta": 0.01}]
)
def test_update_equals_manual_two_pass_computation(kwargs):
    model, _ = _fit([SAM(**kwargs)])
    _assert_params(model, _reference(**kwargs))
    assert model.calls == 6  # two passes per step
    assert "training_step" not in model.__dict__  # teardown removed the wrapper


def test_rho_zero_with_dropout_and_batchnorm_is_the_base_optimizer():
    torch.manual_seed(11)
    base, _ = _fit([], model=Model(bn=True, dropout=0.3))
    torch.manual_seed(11)
    sam, _ = _fit([SAM(rho=0.0)], model=Model(bn=True, dropout=0.3))
    for (name, a), b in zip(base.state_dict().items(), sam.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6, msg=name)


def test_without_rng_replay_the_second_pass_draws_new_dropout_masks():
    torch.manual_seed(11)
    base, _ = _fit([], model=Model(dropout=0.3), steps=1)
    torch.manual_seed(11)
    sam, _ = _fit([SAM(rho=0.0, replay_rng=False)], model=Model(dropout=0.3), steps=1)
    pairs = zip(base.parameters(), sam.parameters(), strict=True)
    diff = max(float((a - b).detach().abs().max()) for a, b in pairs)
    assert diff > 1e-4


def test_batchnorm_running_stats_are_updated_by_the_first_pass_only():
    plain, _ = _fit([], model=Model(bn=True), steps=1)
    sam, _ = _fit([SAM(rho=0.5)], model=Model(bn=True), steps=1)
    bn_plain, bn_sam = plain.net[1], sam.net[1]
    assert torch.equal(bn_plain.running_mean, bn_sam.running_mean)
    assert torch.equal(bn_plain.running_var, bn_sam.running_var)
    assert int(bn_sam.num_batches_tracked) == 1
    assert bn_sam.momentum == bn_plain.momentum == 0.1
    # and the weights did move differently (the second pass saw w + eps)
    assert not torch.allclose(plain.net[0].weight, sam.net[0].weight)


def test_interval_takes_sam_steps_every_k_steps():
    model, _ = _fit([SAM(rho=0.2, interval=2)])
    _assert_params(model, _reference(rho=0.2, interval=2))
    assert model.calls == 5  # steps 0 and 2 twice, step 1 once


def test_gradient_clipping_acts_on_the_ascent_point_gradient():
    model, _ = _fit([SAM(rho=0.2)], gradient_clip_val=0.05)
    _assert_params(model, _reference(rho=0.2, clip=0.05))


def test_gradient_accumulation_perturbs_each_micro_batch():
    model, _ = _fit([SAM(rho=0.2)], batch=4, accumulate_grad_batches=2)
    _assert_params(model, _reference(rho=0.2, micro=4, accum=2))


def test_logged_loss_is_the_first_pass_loss_and_sharpness_is_logged():
    _, trainer = _fit([SAM(rho=0.2)], steps=1)
    net = _net()
    x, y = _data()
    with torch.no_grad():
        first = F.cross_entropy(net(x[:8]), y[:8])
    metrics = trainer.callback_metrics
    torch.testing.assert_close(metrics["train/loss"], first)
    assert float(metrics["sam/sharpness"]) > 0  # the ascent step raised the loss
    assert float(metrics["sam/skipped"]) == 0.0


def test_logging_through_lightning_module_log_counts_each_batch_once():
    class Logs(Model):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            # the unbound base method, as a mixin calling super().log does
            LightningModule.log(self, "ce", loss.detach(), on_step=False, on_epoch=True)
            self.log_dict({"ce_dict": loss.detach()}, on_step=False, on_epoch=True)
            return loss

    _, trainer = _fit([SAM(rho=0.2)], model=Logs(), steps=3)
    # pass-1 losses: replay the reference weights before each step
    x, y = _data()
    net = _net().double()
    firsts = []
    for step in range(3):
        params = _reference(rho=0.2, steps=step)
        with torch.no_grad():
            for p, r in zip(net.parameters(), params, strict=True):
                p.copy_(r)
            firsts.append(
                float(
                    F.cross_entropy(
                        net(x[step * 8 : step * 8 + 8].double()), y[step * 8 : step * 8 + 8]
                    )
                )
            )
    expected = sum(firsts) / 3
    assert math.isclose(float(trainer.callback_metrics["ce"]), expected, rel_tol=1e-5)
    assert math.isclose(float(trainer.callback_metrics["ce_dict"]), expected, rel_tol=1e-5)


def test_with_loss_reweighting_the_weights_come_from_the_first_pass():
    model, _ = _fit([LossReweighting(burnout_steps=0, kl_reg=0.5), SAM(rho=0.2)], steps=2)
    net = _net().double()
    params = list(net.parameters())
    x, y = _data()
    x = x.double()
    buf = None
    for step in range(2):
        xb, yb = x[step * 8 : step * 8 + 8], y[step * 8 : step * 8 + 8]
        losses = F.cross_entropy(net(xb), yb, reduction="none")
        w = loss_weights(losses.detach().float(), kl_reg=0.5).double()
        g = torch.autograd.grad((w * losses).sum(), params)
        eps = _eps([p.detach() for p in params], g, 0.2, False, 0.0)
        with torch.no_grad():
            for p, e in zip(params, eps, strict=True):
                p += e
        g = torch.autograd.grad((w * F.cross_entropy(net(xb), yb, reduction="none")).sum(), params)
        with torch.no_grad():
            for p, e in zip(params, eps, strict=True):
                p -= e
        buf = list(g) if buf is None else [MOMENTUM * b + t for b, t in zip(buf, g, strict=True)]
        with torch.no_grad():
            for p, b in zip(params, buf, strict=True):
                p -= LR * b
    _assert_params(model, [p.detach() for p in params])


class _Scaler:
    """A GradScaler stand-in: multiplies the loss by `scale`, counts `unscale_` calls."""

    def __init__(self, scale: float) -> None:
        self.scale_value = scale
        self.unscale_calls = 0

    def scale(self, t):
        return t * self.scale_value

    def get_scale(self) -> float:
        return self.scale_value

    def unscale_(self, optimizer) -> None:
        self.unscale_calls += 1


def _fit_with_scaler(scaler, rho=0.2):
    model = Model()
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)
    cb = SAM(rho=rho)
    trainer = quiet_trainer(max_steps=3, callbacks=[cb], enable_checkpointing=False)
    trainer.precision_plugin.scaler = scaler  # what SAM reads; Lightning's fp32 plugin ignores it
    trainer.fit(model, loader)
    return model, cb


def test_fp16_scaler_first_pass_is_unscaled_by_sam_without_unscale_():
    scaler = _Scaler(2.0**12)
    model, cb = _fit_with_scaler(scaler)
    _assert_params(model, _reference(rho=0.2))
    assert scaler.unscale_calls == 0 and cb.skipped == 0


def test_fp16_overflow_in_the_first_pass_skips_the_perturbation():
    model, cb = _fit_with_scaler(_Scaler(math.inf))
    _assert_params(model, _reference(rho=0.0))
    assert cb.skipped == 3


def test_manual_optimization_is_refused():
    class Manual(Model):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(ValueError, match="automatic optimization"):
        _fit([SAM()], model=Manual())


def test_state_dict_saves_the_configuration_and_warns_on_change():
    state = SAM(rho=0.1, interval=3).state_dict()
    assert state["config"]["rho"] == 0.1 and state["config"]["interval"] == 3
    with pytest.warns(UserWarning, match="rho = 0.1 in the checkpoint, 0.2 now"):
        SAM(rho=0.2, interval=3).load_state_dict(state)
