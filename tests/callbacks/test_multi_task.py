"""GradientAggregation (Jacobian descent callback): end to end against a float64 manual loop.

The reference recomputes, per SGD step and in float64, the gradient of each objective over all
parameters (the rows of the Jacobian), aggregates them with the pure functions of
`lightning_losses.multitask` (themselves checked against torchjd / conflictfree in
tests/multitask) and steps by hand. A `"mean"` run is also compared with plain Lightning training
on `(main + aux) / 2`, which involves no code of ours on the gradient path.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conflictfree.momentum_operator import PseudoMomentumOperator
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import GradientAggregation
from lightning_losses.mixins import LossMixin
from lightning_losses.multitask import aggregate
from tests._lightning import quiet_trainer

LR = 0.2
N, B, STEPS = 16, 8, 4


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 5, generator=g)
    return x, torch.randint(0, 3, (N,), generator=g), torch.randint(0, 2, (N,), generator=g)


def _init_net():
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh())
    return torch.nn.ModuleDict(
        {"trunk": trunk, "left": torch.nn.Linear(8, 3), "right": torch.nn.Linear(8, 2)}
    )


def _objectives(net, x, y1, y2):
    h = net["trunk"](x)
    return F.cross_entropy(net["left"](h), y1), F.cross_entropy(net["right"](h), y2), h


class Model(LossMixin, LightningModule):
    def __init__(self, extra_aux=False, half_sum=False):
        super().__init__()
        self.net = _init_net()
        self.configure_criterion("cross_entropy")
        self.extra_aux, self.half_sum = extra_aux, half_sum

    def training_step(self, batch, batch_idx):
        x, y1, y2 = batch
        h = self.net["trunk"](x)
        aux = {"right": F.cross_entropy(self.net["right"](h), y2)}
        if self.extra_aux:
            aux["l2"] = 0.1 * h.square().mean()
        if self.half_sum:  # plain training on (main + aux) / 2, no callback
            return 0.5 * (F.cross_entropy(self.net["left"](h), y1) + aux["right"])
        return self.compute_loss(self.net["left"](h), y1, aux=aux).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


def _fit(model, callbacks, max_steps=STEPS, batch_size=B, **kw):
    loader = DataLoader(TensorDataset(*_data()), batch_size=batch_size, shuffle=False)
    trainer = quiet_trainer(
        max_steps=max_steps, callbacks=callbacks, enable_checkpointing=False, **kw
    )
    trainer.fit(model, loader)
    return trainer, {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def _reference(method, steps=STEPS, *, extra_aux_in_main=False, shared=False, **kwargs):
    net = _init_net().double()
    params = list(net.parameters())
    trunk_ids = {id(p) for p in net["trunk"].parameters()}
    x, y1, y2 = _data()
    x = x.double()
    for k in range(steps):
        i = (k * B) % N
        main, right, h = _objectives(net, x[i : i + B], y1[i : i + B], y2[i : i + B])
        if extra_aux_in_main:
            main = main + 0.1 * h.square().mean()
        rows = []
        for obj in (main, right):
            grads = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(grads, params)
                    ]
                )
            )
        jac = torch.stack(rows)
        if shared:  # aggregate the trunk's columns; every head gets the sum of the rows
            cols = torch.cat([torch.full((p.numel(),), id(p) in trunk_ids) for p in params])
            d = jac.sum(0)
            d[cols] = aggregate(jac[:, cols], method, **kwargs)
        else:
            d = aggregate(jac, method, **kwargs)
        with torch.no_grad():
            offset = 0
            for p in params:
                p -= LR * d[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
    return {k: v.detach() for k, v in net.state_dict().items()}


def _close(a, b, atol=1e-5):
    for k in b:
        torch.testing.assert_close(a[k].double(), b[k].double(), atol=atol, rtol=1e-4, msg=k)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("upgrad", {}),
        ("mgda", {}),
        ("pcgrad", {}),
        ("config", {}),
        ("cagrad", {"c": 0.5}),
        ("nash_mtl", {}),
    ],
)
def test_callback_matches_float64_reference(method, kwargs):
    cb = GradientAggregation(method, aggregator_kwargs=kwargs)
    _, got = _fit(Model(), [cb], log_every_n_steps=1)
    _close(got, _reference(method, **kwargs))
    assert cb.steps == STEPS
    assert set(cb.last_stats) == {"weight_main", "weight_right", "min_cos"}


def test_mean_equals_plain_training_on_the_half_sum():
    _, got = _fit(Model(), [GradientAggregation("mean")])
    _, plain = _fit(Model(half_sum=True), [])
    _close(got, plain, atol=1e-6)


def test_custom_weighting_callable():
    cb = GradientAggregation(lambda gram: torch.tensor([1.0, 0.0], dtype=gram.dtype))
    _, got = _fit(Model(), [cb])
    # Weight (1, 0): only the main task trains; the right head gets a zero gradient.
    init = _init_net().state_dict()
    torch.testing.assert_close(got["right.weight"], init["right.weight"])
    assert not torch.equal(got["left.weight"], init["left.weight"])


def test_gradient_accumulation_equals_one_big_batch():
    _, big = _fit(Model(), [GradientAggregation("upgrad")], max_steps=2, batch_size=B)
    _, acc = _fit(
        Model(),
        [GradientAggregation("upgrad")],
        max_steps=2,
        batch_size=B // 2,
        accumulate_grad_batches=2,
    )
    _close(acc, big, atol=1e-6)


def test_tasks_subset_sends_other_aux_to_main():
    cb = GradientAggregation("upgrad", tasks=["right"])
    _, got = _fit(Model(extra_aux=True), [cb])
    _close(got, _reference("upgrad", extra_aux_in_main=True))


def test_bf16_autocast_on_cpu_trains_close_to_fp32():
    cb = GradientAggregation("upgrad")
    _, got = _fit(Model(), [cb], precision="bf16-mixed")
    ref = _reference("upgrad")
    for k in ref:
        assert torch.isfinite(got[k]).all()
        torch.testing.assert_close(got[k].double(), ref[k], atol=5e-2, rtol=5e-2, msg=k)
    assert cb.steps == STEPS


class _Scaler:
    """A GradScaler stand-in: multiplies the loss by `scale`, as AMP does before backward."""

    def __init__(self, scale):
        self.scale_value = scale

    def scale(self, t):
        return t * self.scale_value

    def get_scale(self):
        return self.scale_value


def test_fp16_scale_is_divided_out_of_the_task_rows():
    module = Model()
    x, y1, y2 = _data()
    main, right, _ = _objectives(module.net, x[:B], y1[:B], y2[:B])
    expected = torch.autograd.grad(
        right, list(module.net.parameters()), retain_graph=True, allow_unused=True
    )
    cb = GradientAggregation()
    scaler = _Scaler(2.0**12)
    cb.backward(
        module,
        scaler.scale(main),
        {"right": scaler.scale(right)},
        accumulation_factor=1.0,
        scaler=scaler,
    )
    flat = torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(expected, module.net.parameters())
        ]
    )
    torch.testing.assert_close(cb._flat[0], flat, atol=1e-7, rtol=1e-5)


def test_overflowed_task_row_is_dropped_with_a_warning():
    class FakeTrainer:
        global_step = 0
        log_every_n_steps = 1

    module = Model()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    x, y1, y2 = _data()
    main, right, _ = _objectives(module.net, x[:B], y1[:B], y2[:B])
    cb = GradientAggregation(log_stats=False)
    cb.backward(module, main, {"right": right}, accumulation_factor=1.0, scaler=None)
    main_grad = {n: p.grad.clone() for n, p in module.net.named_parameters() if p.grad is not None}
    cb._flat[0, 0] = float("inf")
    with pytest.warns(UserWarning, match="overflowed"):
        cb.on_before_optimizer_step(FakeTrainer(), module, opt)
    for n, p in module.net.named_parameters():
        if n in main_grad:
            torch.testing.assert_close(p.grad, main_grad[n])
    assert cb.steps == 0 and not cb._flat.any()


def test_errors_are_clear():
    class NoMixin(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _init_net()

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net["left"](self.net["trunk"](batch[0])), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="LossMixin"):
        _fit(NoMixin(), [GradientAggregation()], max_steps=1)
    with pytest.raises(ValueError, match="does not produce"):
        _fit(Model(), [GradientAggregation(tasks=["nope"])], max_steps=1)
    with pytest.raises(ValueError, match="aggregator"):
        GradientAggregation("sum")
    with pytest.raises(TypeError, match="aggregator"):
        GradientAggregation(3)
    with pytest.raises(ValueError, match="tasks"):
        GradientAggregation(tasks=["main"])
    with pytest.raises(ValueError, match="aggregator_kwargs"):
        GradientAggregation(lambda g: g[0], aggregator_kwargs={"c": 1.0})


def test_state_dict_round_trip_restores_pcgrad_order():
    cb = GradientAggregation("pcgrad", seed=3)
    torch.randperm(5, generator=cb.pcgrad_generator)
    state = cb.state_dict()
    expected = torch.randperm(5, generator=cb.pcgrad_generator)
    other = GradientAggregation("pcgrad", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same configuration: no warning
        other.load_state_dict(state)
    torch.testing.assert_close(torch.randperm(5, generator=other.pcgrad_generator), expected)


@pytest.mark.parametrize("method", ["upgrad", "mgda"])
def test_shared_aggregates_the_trunk_only(method):
    cb = GradientAggregation(method, shared="net.trunk")
    _, got = _fit(Model(), [cb])
    _close(got, _reference(method, shared=True))
    # Not the same as aggregating everything (the heads would be weighted too).
    with pytest.raises(AssertionError):
        _close(got, _reference(method))


def _momentum_reference(steps, alternate=True):
    # The authors' operator in a plain loop: one objective per step (or both), SGD on its output.
    net = _init_net()
    params = list(net.parameters())
    op = PseudoMomentumOperator(2)
    x, y1, y2 = _data()
    for k in range(steps):
        i = (k * B) % N
        objs = _objectives(net, x[i : i + B], y1[i : i + B], y2[i : i + B])[:2]
        idx = [k % 2] if alternate else [0, 1]
        rows = []
        for j in idx:
            grads = torch.autograd.grad(objs[j], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(grads, params)
                    ]
                )
            )
        d = op.calculate_gradient(idx, rows)
        with torch.no_grad():
            offset = 0
            for p in params:
                p -= LR * d[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
    return {k: v.detach() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("alternate", [True, False])
def test_momentum_config_matches_conflictfree(alternate):
    cb = GradientAggregation("momentum_config", aggregator_kwargs={"alternate": alternate})
    _, got = _fit(Model(), [cb], max_steps=6)
    _close(got, _momentum_reference(6, alternate), atol=1e-5)
    assert cb.momentum is not None and cb.momentum.t_grads == ([3, 3] if alternate else [6, 6])


def test_momentum_config_resumes_exactly(tmp_path):
    # One batch per epoch (the whole data set), so Lightning's data order does not depend on
    # where the run was resumed; only the callback's state can make the runs differ.
    full_cb = GradientAggregation("momentum_config")
    _, full = _fit(Model(), [full_cb], max_steps=6, batch_size=N)
    first_cb = GradientAggregation("momentum_config")
    trainer, _ = _fit(Model(), [first_cb], max_steps=3, batch_size=N)
    path = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(path)
    results = {}
    for keep_state in (True, False):
        if not keep_state:  # the same checkpoint without the momentum state
            ckpt = torch.load(path, weights_only=False)
            ckpt["callbacks"]["GradientAggregation"]["momentum"] = None
            torch.save(ckpt, path)
        cb = GradientAggregation("momentum_config")
        model = Model()
        loader = DataLoader(TensorDataset(*_data()), batch_size=N, shuffle=False)
        trainer = quiet_trainer(max_steps=6, callbacks=[cb], enable_checkpointing=False)
        trainer.fit(model, loader, ckpt_path=str(path))
        results[keep_state] = {k: v.detach() for k, v in model.net.state_dict().items()}
        assert cb.steps == 6
    _close(results[True], full, atol=1e-7)
    with pytest.raises(AssertionError):  # the momentum state matters
        _close(results[False], full, atol=1e-4)


def test_momentum_and_shared_errors():
    with pytest.raises(ValueError, match="beta_1"):
        GradientAggregation("momentum_config", aggregator_kwargs={"beta_1": 2.0})
    with pytest.raises(ValueError, match="shared"):
        GradientAggregation("momentum_config", shared="net.trunk")
    with pytest.raises(ValueError, match="shared"):
        GradientAggregation(shared="")
    with pytest.raises(ValueError, match="names no submodule"):
        _fit(Model(), [GradientAggregation(shared="net.nope")], max_steps=1)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [("upgrad", {}), ("mgda", {}), ("config", {}), ("cagrad", {"c": 0.5}), ("nash_mtl", {})],
)
def test_gramian_only_equals_the_jacobian_path(method, kwargs):
    cb = GradientAggregation(method, aggregator_kwargs=kwargs, gramian_only=True)
    _, got = _fit(Model(extra_aux=True), [cb], log_every_n_steps=1)
    jac_cb = GradientAggregation(method, aggregator_kwargs=kwargs)
    _, jac = _fit(Model(extra_aux=True), [jac_cb])
    _close(got, jac, atol=1e-5)
    torch.testing.assert_close(cb.last_weights, jac_cb.last_weights, atol=1e-5, rtol=1e-4)
    assert cb.steps == STEPS and set(cb.last_stats) == {
        "weight_main",
        "weight_right",
        "weight_l2",
        "min_cos",
    }


def test_gramian_only_matches_the_float64_reference():
    _, got = _fit(Model(), [GradientAggregation("upgrad", gramian_only=True)])
    _close(got, _reference("upgrad"))


def test_gramian_only_refusals():
    class Twice(Model):
        def training_step(self, batch, batch_idx):
            x, y1, y2 = batch
            h = self.net["trunk"](self.net["trunk"][0](x)[:, :5])  # the first Linear twice
            return self.compute_loss(
                self.net["left"](h), y1, aux={"right": F.cross_entropy(self.net["right"](h), y2)}
            ).to_dict()

    class Direct(Model):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

    with pytest.raises(ValueError, match="called twice"):
        _fit(Twice(), [GradientAggregation(gramian_only=True)], max_steps=1)
    with pytest.raises(ValueError, match="directly"):
        _fit(Direct(), [GradientAggregation(gramian_only=True)], max_steps=1)
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        _fit(Model(), [GradientAggregation(gramian_only=True)], accumulate_grad_batches=2)
    with pytest.raises(ValueError, match="gramian_only"):
        GradientAggregation("momentum_config", gramian_only=True)
    with pytest.raises(ValueError, match="gramian_only"):
        GradientAggregation(shared="net.trunk", gramian_only=True)


def test_gramian_only_divides_the_amp_scale_out():
    module = Model()
    x, y1, y2 = _data()
    params = list(module.net.parameters())
    cb = GradientAggregation("mean", gramian_only=True)
    cb._hook_modules(module)
    cb._recording = True
    main, right, _ = _objectives(module.net, x[:B], y1[:B], y2[:B])
    rows = []
    for obj in (main, right):
        grads = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, params)
                ]
            )
        )
    jac = torch.stack(rows)
    scaler = _Scaler(2.0**10)
    cb.backward(
        module,
        scaler.scale(main),
        {"right": scaler.scale(right)},
        accumulation_factor=1.0,
        scaler=scaler,
    )
    torch.testing.assert_close(cb._gram, (jac @ jac.T).double(), atol=1e-6, rtol=1e-5)
    # p.grad = J^T w, still multiplied by the scale (the scaler unscales it before the step).
    got = torch.cat([p.grad.reshape(-1) for p in params]) / scaler.get_scale()
    torch.testing.assert_close(got, jac.mean(0), atol=1e-6, rtol=1e-5)


def _gradnorm_reference(steps, alpha, lr_w, layer_prefix="trunk.0."):
    # Algorithm 1 of the GradNorm paper (arXiv:1711.02257) written out in float64: the network
    # steps on sum_i w_i(t) L_i, the weights on the subgradient sign(w_i n_i - t_i) n_i of
    # L_grad with n_i the norm of task i's gradient on the layer W, then renormalised to sum 2.
    net = _init_net().double()
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    x, y1, y2 = _data()
    x = x.double()
    w = torch.ones(2, dtype=torch.float64)
    l0 = None
    for k in range(steps):
        i = (k * B) % N
        main, right, _ = _objectives(net, x[i : i + B], y1[i : i + B], y2[i : i + B])
        grads = [
            torch.autograd.grad(o, params, retain_graph=True, allow_unused=True)
            for o in (main, right)
        ]
        n = torch.stack(
            [
                torch.cat(
                    [g.reshape(-1) for g, name in zip(gs, names) if name.startswith(layer_prefix)]
                ).norm()
                for gs in grads
            ]
        )
        losses = torch.stack([main.detach(), right.detach()])
        l0 = losses if l0 is None else l0
        ratio = losses / l0
        r = ratio / ratio.mean()
        target = (w * n).mean() * r**alpha
        with torch.no_grad():
            for p, g1, g2 in zip(params, *grads):
                g1 = torch.zeros_like(p) if g1 is None else g1
                g2 = torch.zeros_like(p) if g2 is None else g2
                p -= LR * (w[0] * g1 + w[1] * g2)
        w = w - lr_w * torch.sign(w * n - target) * n
        w = 2 * w / w.sum()
    return {k: v.detach() for k, v in net.state_dict().items()}, w


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_gradnorm_in_the_callback_matches_the_papers_update(alpha):
    kwargs = {"alpha": alpha, "lr": 0.5, "layer": "net.trunk.0"}
    cb = GradientAggregation("gradnorm", aggregator_kwargs=kwargs)
    _, got = _fit(Model(), [cb], max_steps=6)
    ref, w = _gradnorm_reference(6, alpha, 0.5)
    _close(got, ref)
    torch.testing.assert_close(cb.gradnorm_weights, w, atol=1e-5, rtol=1e-5)
    state = cb.state_dict()
    other = GradientAggregation("gradnorm", aggregator_kwargs=kwargs)
    other.load_state_dict(state)
    torch.testing.assert_close(other.gradnorm_weights, cb.gradnorm_weights)
    torch.testing.assert_close(other.gradnorm_initial, cb.gradnorm_initial)


def test_gradnorm_callback_errors():
    with pytest.raises(ValueError, match="lr"):
        GradientAggregation("gradnorm")
    with pytest.raises(ValueError, match="gradnorm"):
        GradientAggregation("gradnorm", aggregator_kwargs={"lr": 0.1, "beta": 1.0})
    with pytest.raises(ValueError, match="shared"):
        GradientAggregation("gradnorm", aggregator_kwargs={"lr": 0.1}, shared="net.trunk")
    with pytest.raises(ValueError, match="gramian_only"):
        GradientAggregation("gradnorm", aggregator_kwargs={"lr": 0.1}, gramian_only=True)
    with pytest.raises(ValueError, match="names no submodule"):
        _fit(
            Model(),
            [GradientAggregation("gradnorm", aggregator_kwargs={"lr": 0.1, "layer": "nope"})],
            max_steps=1,
        )
