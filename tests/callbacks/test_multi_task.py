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


def _reference(method, steps=STEPS, *, extra_aux_in_main=False, **kwargs):
    net = _init_net().double()
    params = list(net.parameters())
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
        d = aggregate(torch.stack(rows), method, **kwargs)
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
    [("upgrad", {}), ("mgda", {}), ("pcgrad", {}), ("config", {}), ("cagrad", {"c": 0.5})],
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
