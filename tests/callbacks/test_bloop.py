"""Bloop (EMA gradient projection): functional core vs float64 references, callback end to end.

References are naive float64 implementations written from the paper's update (*Careful with that
Scalpel*, Hsieh et al., ICML 2024, arXiv:2402.02998; reference code apple/ml-bloop):
$m \\leftarrow (1-\\alpha)m + \\alpha g$ ($m_1 = g_1$), $c = \\langle h,m\\rangle/(\\lVert
m\\rVert^2 + 10^{-7})$ over all parameters, $d = g + \\lambda(h - cm)$.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import Bloop, EMAGradientProjection, bloop_direction
from lightning_losses.callbacks.bloop import (
    EMA_STATE_KEY,
    ema_update_,
    projection_coefficients,
)
from lightning_losses.mixins import LossMixin
from tests._lightning import quiet_trainer

LR = 0.3
N, B, STEPS = 16, 8, 4


# --------------------------------------------------------------------------------- functional
def _rand_lists(seed: int, shapes=((3, 4), (4,), (2, 2, 2))):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]


def _naive_direction(g, h, m, lbda, *, per_tensor=False, barrier=False, eps=1e-7):
    g, h, m = ([t.double() for t in ts] for ts in (g, h, m))
    if per_tensor:
        cs = [(hi * mi).sum() / ((mi * mi).sum() + eps) for hi, mi in zip(h, m)]
    else:
        flat_h, flat_m = (
            torch.cat([t.reshape(-1) for t in h]),
            torch.cat([t.reshape(-1) for t in m]),
        )
        cs = [(flat_h @ flat_m) / (flat_m @ flat_m + eps)] * len(g)
    if barrier:
        cs = [torch.clamp(c, max=1.0 / lbda) for c in cs]
    return [gi + lbda * (hi - c * mi) for gi, hi, mi, c in zip(g, h, m, cs)]


@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("barrier", [False, True])
def test_bloop_direction_matches_float64_reference(per_tensor, barrier):
    g, h, m = _rand_lists(0)
    h = [0.5 * t + 4.0 * mi for t, mi in zip(h, m)]  # a large positive c, so the barrier binds
    lbda = 0.4
    out = bloop_direction(
        g, h, m, lbda, scope="per_tensor" if per_tensor else "global", dynamic_barrier=barrier
    )
    ref = _naive_direction(g, h, m, lbda, per_tensor=per_tensor, barrier=barrier)
    for o, r in zip(out, ref, strict=True):
        assert o.dtype == torch.float32
        torch.testing.assert_close(o.double(), r, atol=1e-6, rtol=1e-6)
    c = projection_coefficients(h, m, scope="per_tensor" if per_tensor else "global")
    assert (c > 1.0 / lbda).all()  # the barrier case really clips


def test_flat_tensor_equals_list_and_keeps_dtype():
    g, h, m = (torch.cat([t.reshape(-1) for t in ts]) for ts in _rand_lists(1))
    lists = _rand_lists(1)
    flat = bloop_direction(g, h, m, 0.1)
    listed = bloop_direction(*lists, 0.1)
    torch.testing.assert_close(flat, torch.cat([t.reshape(-1) for t in listed]))
    half = bloop_direction(g.half(), h.half(), m.half(), 0.1)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()


def test_projected_component_is_orthogonal_to_ema():
    g, h, m = _rand_lists(2)
    lbda = 0.7
    d = bloop_direction(g, h, m, lbda, eps=0.0)
    pi = [(di - gi) / lbda for di, gi in zip(d, g)]
    dot = sum((p.double() * mi.double()).sum() for p, mi in zip(pi, m))
    norm = (
        sum((p.double() ** 2).sum() for p in pi).sqrt()
        * sum((mi.double() ** 2).sum() for mi in m).sqrt()
    )
    assert abs(float(dot / norm)) < 1e-6
    # h is changed only along m: the removed part is parallel to m.
    removed = [hi - p for hi, p in zip(h, pi)]
    c = projection_coefficients(h, m, eps=0.0)
    for r, mi in zip(removed, m):
        torch.testing.assert_close(r, c * mi, atol=1e-5, rtol=1e-5)


def test_special_cases_lambda_zero_and_h_along_m():
    g, h, m = _rand_lists(3)
    for o, gi in zip(bloop_direction(g, h, m, 0.0), g):
        torch.testing.assert_close(o, gi)
    # h parallel to m has no orthogonal part: d = g.
    for o, gi in zip(bloop_direction(g, [2.5 * mi for mi in m], m, 0.5), g):
        torch.testing.assert_close(o, gi, atol=1e-5, rtol=1e-5)
    # m = 0: c = 0 (the eps keeps it finite), d = g + λh.
    zeros = [torch.zeros_like(t) for t in m]
    for o, gi, hi in zip(bloop_direction(g, h, zeros, 0.5), g, h):
        torch.testing.assert_close(o, gi + 0.5 * hi)


def test_reduce_fn_sums_shards_like_one_vector():
    # Two "ranks" holding halves of each tensor: the reduced coefficient equals the full one.
    g, h, m = (torch.cat([t.reshape(-1) for t in ts]) for ts in _rand_lists(4))
    half = g.numel() // 2
    parts = [slice(0, half), slice(half, None)]
    partial_sums = [torch.stack([h[s] @ m[s], m[s] @ m[s], h[s] @ h[s]])[None] for s in parts]
    other = partial_sums[1]
    d0 = bloop_direction(g[parts[0]], h[parts[0]], m[parts[0]], 0.3, reduce_fn=lambda t: t + other)
    full = bloop_direction(g, h, m, 0.3)
    torch.testing.assert_close(d0, full[parts[0]], atol=1e-6, rtol=1e-6)
    # Without the other shard's sums the coefficient (and the direction) would differ.
    local = bloop_direction(g[parts[0]], h[parts[0]], m[parts[0]], 0.3)
    assert (local - full[parts[0]]).abs().max() > 1e-3


def test_ema_update_in_place():
    m, g = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 4.0])
    out = ema_update_(m, g, 0.25)
    assert out is m
    torch.testing.assert_close(m, torch.tensor([0.75 * 1 + 0.25 * 3, 0.75 * -2 + 0.25 * 4]))
    ema_update_(m, g, 1.0)
    torch.testing.assert_close(m, g)


def test_bad_arguments_are_named():
    g, h, m = _rand_lists(5)
    with pytest.raises(ValueError, match="lbda"):
        bloop_direction(g, h, m, -1.0)
    with pytest.raises(ValueError, match="scope"):
        bloop_direction(g, h, m, 0.1, scope="layer")
    with pytest.raises(ValueError, match=r"h\[1\]"):
        bloop_direction(g, [h[0], h[2], h[1]], m, 0.1)
    with pytest.raises(ValueError, match="ema must hold 3"):
        bloop_direction(g, h, m[:2], 0.1)
    with pytest.raises(TypeError, match="g must be a tensor"):
        bloop_direction("g", h, m, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        ema_update_(m, g, 1.5)
    with pytest.raises(ValueError, match="ema"):
        EMAGradientProjection(ema=0.0)
    with pytest.raises(TypeError, match="dynamic_barrier"):
        EMAGradientProjection(dynamic_barrier="yes")
    with pytest.raises(ValueError, match="init"):
        EMAGradientProjection(init="random")
    with pytest.raises(ValueError, match="aux_weights"):
        EMAGradientProjection(aux_weights={})
    assert Bloop is EMAGradientProjection


# ---------------------------------------------------------------------------------- callback
def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 5, generator=g), torch.randint(3, (N,), generator=g)


def _init_net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))


def _aux(logits):
    return 0.5 * logits.square().mean()


class Model(LossMixin, LightningModule):
    def __init__(self, use_aux=True, optimizer="sgd", extra_aux=False):
        super().__init__()
        self.net = _init_net()
        self.configure_criterion("cross_entropy")
        self.use_aux, self.optimizer, self.extra_aux = use_aux, optimizer, extra_aux

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        aux = {"l2": _aux(logits)} if self.use_aux else {}
        if self.extra_aux:
            aux["bias"] = self.net[2].bias.sum() ** 2
        return self.compute_loss(logits, y, aux=aux).to_dict()

    def configure_optimizers(self):
        if self.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=0.05)
        return torch.optim.SGD(self.parameters(), lr=LR)


def _loader(batch_size=B):
    return DataLoader(TensorDataset(*_data()), batch_size=batch_size, shuffle=False)


def _fit(model, callbacks, max_steps=STEPS, ckpt_path=None, batch_size=B, **kw):
    trainer = quiet_trainer(
        max_steps=max_steps, callbacks=callbacks, enable_checkpointing=False, **kw
    )
    trainer.fit(model, _loader(batch_size), ckpt_path=ckpt_path)
    return trainer, {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def _reference(ema, lbda, steps=STEPS, *, project=True, aux_weight=1.0, zeros=False):
    """Naive float64 Bloop + SGD on the same batches."""
    net = _init_net().double()
    params = list(net.parameters())
    x, y = _data()
    x = x.double()
    m = [torch.zeros_like(p) for p in params] if zeros else None
    for k in range(steps):
        i = (k * B) % N
        logits = net(x[i : i + B])
        g = torch.autograd.grad(F.cross_entropy(logits, y[i : i + B]), params, retain_graph=True)
        h = [aux_weight * t for t in torch.autograd.grad(_aux(logits), params)]
        m = (
            [gi.clone() for gi in g]
            if m is None
            else [(1 - ema) * a + ema * b for a, b in zip(m, g)]
        )
        c = sum((a * b).sum() for a, b in zip(h, m)) / (sum((b * b).sum() for b in m) + 1e-7)
        c = c if project else 0.0
        with torch.no_grad():
            for p, gi, hi, mi in zip(params, g, h, m):
                p -= LR * (gi + lbda * (hi - c * mi))
    return {k: v.detach() for k, v in net.state_dict().items()}


def _close(a, b, atol=1e-6):
    for k in b:
        torch.testing.assert_close(a[k].double(), b[k].double(), atol=atol, rtol=1e-5, msg=k)


def _gap(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in b)


class _AuxOnlySpy(EMAGradientProjection):
    """Records, at every step, whether the aux objectives were found to reach a parameter alone."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.aux_only = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.aux_only.append(self._aux_only)
        super().on_before_optimizer_step(trainer, pl_module, optimizer)


def test_callback_matches_float64_reference():
    cb = _AuxOnlySpy(ema=0.3, lbda=0.5)
    _, params = _fit(Model(), [cb], log_every_n_steps=1)
    _close(params, _reference(0.3, 0.5))
    assert cb.steps == STEPS
    assert cb.aux_only == [False] * STEPS  # main reaches every parameter: a plain main backward
    # The EMA is in the optimizer state, one tensor per parameter.
    assert set(cb.last_stats) == {"coef", "cos", "ema_norm", "aux_grad_norm"}
    assert -1.0 <= float(cb.last_stats["cos"]) <= 1.0
    # Without the projection (mixed g + λh) the result differs clearly.
    assert _gap(_reference(0.3, 0.5, project=False), params) > 1e-3


def test_acts_on_the_optimizers_parameters():
    # The parameters come from the optimizers (under FSDP2 module.parameters() can list
    # all-gathered copies during the backward); one that no optimizer steps is left alone.
    class HeadOnly(Model):
        def configure_optimizers(self):
            return torch.optim.SGD(self.net[2].parameters(), lr=LR)

    class Spy(EMAGradientProjection):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.seen = list(self._params or [])
            super().on_before_optimizer_step(trainer, pl_module, optimizer)

    cb = Spy(ema=0.3, lbda=0.5)
    trainer, params = _fit(HeadOnly(), [cb], max_steps=1)
    stepped = trainer.optimizers[0].param_groups[0]["params"]
    assert [id(p) for p in cb.seen] == [id(p) for p in stepped]
    first = _init_net()
    torch.testing.assert_close(params["0.weight"], first[0].weight)
    assert _gap({"2.weight": first[2].weight}, {"2.weight": params["2.weight"]}) > 1e-3


def test_a_parameter_only_the_aux_objective_reaches_is_trained_by_lambda_h():
    # A loss predictor: its parameter has no main gradient, so its direction is λh (m = 0 there).
    class Predictor(Model):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(2.0))

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            pred = self.scale * logits.detach().square().mean()
            aux = {"l2": _aux(logits), "pred": (pred - 1.0) ** 2}
            return self.compute_loss(logits, y, aux=aux).to_dict()

    for scope in ("global", "per_tensor"):
        model = Predictor()
        cb = _AuxOnlySpy(ema=0.3, lbda=0.5, scope=scope)
        _fit(model, [cb], max_steps=1)
        assert cb.aux_only == [True]  # found in the graph: the zero-seeded backward is used
        x, _ = _data()
        r = _init_net()(x[:B]).detach().double().square().mean()
        h = 2 * (2.0 * r - 1.0) * r  # d/ds (s r - 1)^2 at s = 2
        torch.testing.assert_close(model.scale.detach().double(), 2.0 - LR * 0.5 * h)


def test_zero_init_ema():
    _, params = _fit(Model(), [EMAGradientProjection(ema=0.3, lbda=0.5, init="zeros")])
    _close(params, _reference(0.3, 0.5, zeros=True))
    assert _gap(_reference(0.3, 0.5), params) > 1e-4


def test_alpha_one_is_the_instantaneous_projection():
    _, params = _fit(Model(), [EMAGradientProjection(ema=1.0, lbda=0.5)])
    # ema=1: m = g at every step, so d = g + λ(h - <h,g>/|g|² g).
    _close(params, _reference(1.0, 0.5))
    assert _gap(_reference(0.3, 0.5), params) > 1e-4


def test_lambda_zero_is_plain_training():
    _, params = _fit(Model(), [EMAGradientProjection(lbda=0.0)])
    _, plain = _fit(Model(use_aux=False), [])
    for k in plain:
        torch.testing.assert_close(params[k], plain[k], atol=1e-7, rtol=0)


def test_gradient_accumulation_equals_one_big_batch():
    _, big = _fit(Model(), [EMAGradientProjection(ema=0.3, lbda=0.5)], max_steps=2)
    # The big-batch run uses rows [0, 16) in 2 steps of 8; here 4 micro-batches of 4.
    _, accum = _fit(
        Model(),
        [EMAGradientProjection(ema=0.3, lbda=0.5)],
        max_steps=2,
        batch_size=4,
        accumulate_grad_batches=2,
    )
    _close(accum, big)
    assert _gap(accum, _reference(0.3, 0.5, steps=2, project=False)) > 1e-4


def test_resume_equals_uninterrupted(tmp_path):
    # One full batch per epoch: Lightning resumes a fit that ended at an epoch end on the next
    # epoch, so both runs see the same batches.
    kw = dict(ema=0.2, lbda=0.5)

    def fit(max_steps, ckpt_path=None, cb=None):
        cb = cb or EMAGradientProjection(**kw)
        return _fit(Model(optimizer="adam"), [cb], max_steps, ckpt_path, batch_size=N)

    _, full = fit(STEPS)
    trainer, _ = fit(STEPS // 2)
    ckpt = tmp_path / "half.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    states = saved["optimizer_states"][0]["state"]
    assert len(states) == 4  # every parameter (two weights, two biases) has optimizer state
    assert all(EMA_STATE_KEY in s and "exp_avg" in s for s in states.values())
    cb = EMAGradientProjection(**kw)
    _, resumed = fit(STEPS, str(ckpt), cb)
    assert cb.steps == STEPS
    _close(resumed, full, atol=1e-7)
    # Resuming without the EMA (a fresh one initialised from the first gradient) differs.
    for s in states.values():
        del s[EMA_STATE_KEY]
    torch.save(saved, ckpt)
    _, fresh = fit(STEPS, str(ckpt))
    assert _gap(fresh, full) > 1e-6


def test_resume_with_other_config_warns(tmp_path):
    trainer, _ = _fit(Model(), [EMAGradientProjection(lbda=0.5)], max_steps=2)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)
    with pytest.warns(UserWarning, match="differs from the checkpoint"):
        _fit(Model(), [EMAGradientProjection(lbda=0.2)], max_steps=3, ckpt_path=str(ckpt))


def test_aux_weights_select_and_weight_objectives():
    # h = 2 ∇l2; the unnamed "bias" objective is trained as part of the main loss.
    cb = EMAGradientProjection(ema=0.3, lbda=0.5, aux_weights={"l2": 2.0})
    _, params = _fit(Model(extra_aux=True), [cb], max_steps=2)
    net = _init_net().double()
    ps = list(net.parameters())
    x, y = _data()
    m = None
    for k in range(2):
        logits = net(x[k * B : (k + 1) * B].double())
        main = F.cross_entropy(logits, y[k * B : (k + 1) * B]) + net[2].bias.sum() ** 2
        g = torch.autograd.grad(main, ps, retain_graph=True)
        h = [2.0 * t for t in torch.autograd.grad(_aux(logits), ps)]
        m = list(g) if m is None else [0.7 * a + 0.3 * b for a, b in zip(m, g)]
        c = sum((a * b).sum() for a, b in zip(h, m)) / (sum((b * b).sum() for b in m) + 1e-7)
        with torch.no_grad():
            for p, gi, hi, mi in zip(ps, g, h, m):
                p -= LR * (gi + 0.5 * (hi - c * mi))
    _close(params, {k: v.detach() for k, v in net.state_dict().items()})
    with pytest.raises(ValueError, match="does not produce"):
        _fit(Model(), [EMAGradientProjection(aux_weights={"entropy": 1.0})], max_steps=1)


class _Scaler:
    """A GradScaler stand-in: multiplies the loss by `scale`, as AMP does before backward."""

    def __init__(self, scale):
        self.scale_value = scale

    def scale(self, t):
        return t * self.scale_value

    def get_scale(self):
        return self.scale_value


def test_fp16_aux_gradient_does_not_underflow():
    # An fp16 module whose aux gradient (≈ 1e-8) is below fp16's smallest subnormal (6e-8).
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2).half()
    with torch.no_grad():
        net.weight.fill_(1e-2)
    x = torch.ones(3, 4, dtype=torch.float16)

    class Half(LossMixin, LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

    module = Half()
    aux = 5e-7 * net.weight.float().square().sum()
    main = net(x).float().mean()
    exact = 2 * 5e-7 * 1e-2  # d aux / d w = 1e-8
    plain = torch.autograd.grad(aux.half(), net.weight, retain_graph=True)[0]
    assert float(plain.abs().max()) == 0.0  # the failure mode this test guards against
    cb = EMAGradientProjection()
    scaler = _Scaler(2.0**16)
    cb.backward(
        module,
        scaler.scale(main),
        {"l2": scaler.scale(aux)},
        accumulation_factor=1.0,
        scaler=scaler,
    )
    weight_buf = cb._aux[0]
    assert weight_buf.dtype == torch.float32
    torch.testing.assert_close(weight_buf, torch.full_like(weight_buf, exact), rtol=1e-2, atol=0)


def test_setup_errors_are_clear():
    class NoMixin(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _init_net()

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="LossMixin"):
        _fit(NoMixin(), [EMAGradientProjection()], max_steps=1)
    with pytest.raises(ValueError, match="at least one aux objective"):
        _fit(Model(use_aux=False), [EMAGradientProjection()], max_steps=1)


def test_fp16_overflow_in_main_gradient_leaves_the_ema_unchanged():
    class Plugin:
        scaler = _Scaler(1.0)

    class FakeTrainer:
        precision_plugin = Plugin()
        global_step = 0
        log_every_n_steps = 1

    module = Model()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    cb = EMAGradientProjection(log_stats=False)
    x, y = _data()

    def step(poison):
        out = module.compute_loss(
            module.net(x[:B]), y[:B], aux={"l2": _aux(module.net(x[:B]))}, log=False
        )
        cb.backward(module, out.main, out.aux, accumulation_factor=1.0, scaler=Plugin.scaler)
        if poison:
            module.net[0].weight.grad[0, 0] = float("inf")
        cb.on_before_optimizer_step(FakeTrainer(), module, opt)
        opt.zero_grad()

    step(False)
    before = {k: v.clone() for k, v in cb._ema.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(True)
    for k, v in cb._ema.items():
        torch.testing.assert_close(v, before[k])
    assert cb.steps == 1
