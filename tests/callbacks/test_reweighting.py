"""Loss-based sample reweighting: the functional core, the callback, its wiring and resume."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import LossReweighting, loss_weights
from lightning_losses.callbacks.reweighting import weight_stats
from lightning_losses.mixins import LossMixin
from tests._lightning import quiet_trainer

STRATS = ["linupper", "quadratic", "extremes", "upper"]


def naive_weights(losses, strategy, r=1.0, delta=1.0):
    """float64 reference written from the paper's formulas (arXiv:2502.06733), Python floats."""
    ls = [float(v) for v in losses]
    lo, hi = min(ls), max(ls)
    x = [delta * (2 * v - hi - lo) / max(hi - lo, 1e-6) for v in ls]
    f = {
        "linupper": lambda t: min(t + delta, delta),
        "quadratic": lambda t: 1 - t * t / delta**2,
        "extremes": abs,
        "upper": lambda t: 0.5 * t + 0.5 * delta,
    }[strategy]
    e = [math.exp(f(t) / r) for t in x]
    return torch.tensor([v / sum(e) for v in e], dtype=torch.float64)


finite_losses = st.lists(
    st.floats(0.0, 20.0, allow_nan=False, width=32), min_size=1, max_size=40
).map(torch.tensor)


@pytest.mark.parametrize("strategy", STRATS)
@pytest.mark.parametrize("r", [0.3, 1.0, 4.0])
def test_matches_naive_reference(strategy, r):
    losses = torch.rand(17, generator=torch.Generator().manual_seed(1)) * 5
    w = loss_weights(losses, strategy, kl_reg=r, delta=0.7)
    assert w.dtype == torch.float32
    torch.testing.assert_close(
        w.double(), naive_weights(losses, strategy, r, 0.7), atol=1e-6, rtol=1e-5
    )


def test_known_values_and_alias():
    w = loss_weights(torch.tensor([1.0, 2.0, 3.0]))  # f = [0, 1, 1]
    e = math.e
    torch.testing.assert_close(w, torch.tensor([1 / (1 + 2 * e), e / (1 + 2 * e), e / (1 + 2 * e)]))
    torch.testing.assert_close(
        loss_weights(torch.tensor([1.0, 2.0, 3.0]), "mid"),
        loss_weights(torch.tensor([1.0, 2.0, 3.0]), "quadratic"),
    )
    # quadratic favours the middle loss; extremes the ends.
    q = loss_weights(torch.tensor([1.0, 2.0, 3.0]), "quadratic")
    assert q[1] > q[0] and torch.isclose(q[0], q[2])
    x = loss_weights(torch.tensor([1.0, 2.0, 3.0]), "extremes")
    assert x[1] < x[0] and torch.isclose(x[0], x[2])


@settings(max_examples=60, deadline=None)
@given(finite_losses, st.sampled_from([*STRATS, "uniform"]), st.floats(0.05, 10.0))
def test_weights_are_a_distribution(losses, strategy, r):
    w = loss_weights(losses, strategy, kl_reg=r)
    assert w.shape == losses.shape and (w >= 0).all()
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))


@settings(max_examples=60, deadline=None)
@given(finite_losses, st.floats(0.05, 10.0))
def test_linupper_monotone_capped_and_bounded(losses, r):
    w = loss_weights(losses, "linupper", kl_reg=r)
    order = torch.argsort(losses)
    ws = w[order]
    assert (ws[1:] >= ws[:-1] - 1e-7).all(), "weight must not decrease as the loss grows"
    # Constant for x >= 0 (losses at or above the midrange).
    mid = (losses.max() + losses.min()) / 2
    upper = w[losses >= mid]
    assert torch.allclose(upper, upper.max().expand_as(upper), rtol=1e-5)
    # Max/min ratio ≤ exp((max f − min f)/r) ≤ exp(δ/r).
    assert (w.max() / w.min()).item() <= math.exp(1.0 / r) * (1 + 1e-5)


@settings(max_examples=40, deadline=None)
@given(finite_losses, st.sampled_from(STRATS), st.floats(0.1, 5.0), st.floats(-3.0, 3.0))
def test_invariant_to_positive_affine_maps(losses, strategy, scale, shift):
    if losses.max() - losses.min() < 1e-2:
        return  # below the 1e-6 guard's influence only the ordering matters
    a = loss_weights(losses.double(), strategy)
    b = loss_weights(losses.double() * scale + shift, strategy)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", STRATS)
def test_strength_to_zero_gives_uniform(strategy):
    losses = torch.tensor([0.1, 3.0, 7.0, 2.0, 2.5])
    w = loss_weights(losses, strategy, kl_reg=1e6)
    torch.testing.assert_close(w, torch.full((5,), 0.2))
    assert (loss_weights(losses, strategy, kl_reg=0.05) - 0.2).abs().max() > 0.1
    torch.testing.assert_close(loss_weights(losses, "uniform"), torch.full((5,), 0.2))


def test_equal_losses_give_uniform_and_empty_is_empty():
    torch.testing.assert_close(loss_weights(torch.full((4,), 2.0)), torch.full((4,), 0.25))
    assert loss_weights(torch.zeros(0)).numel() == 0


def test_bf16_input_is_computed_in_fp32():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.5])
    w = loss_weights(losses.bfloat16())
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, loss_weights(losses.bfloat16().float()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "hard"}, "strategy"),
        ({"kl_reg": 0.0}, "kl_reg"),
        ({"kl_reg": -1.0}, "kl_reg"),
        ({"delta": 0.0}, "delta"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        loss_weights(torch.ones(3), **kwargs)
    if "strategy" in kwargs or "kl_reg" in kwargs or "delta" in kwargs:
        with pytest.raises(ValueError, match=match):
            LossReweighting(**kwargs)
    with pytest.raises(ValueError, match="losses"):
        loss_weights(torch.ones(2, 3))


def test_weight_stats():
    s = weight_stats(torch.full((8,), 1 / 8))
    torch.testing.assert_close(s["ess"], torch.tensor(8.0))
    torch.testing.assert_close(s["entropy"], torch.tensor(math.log(8)))
    s = weight_stats(torch.tensor([0.5, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(s["ess"], torch.tensor(2.0))
    torch.testing.assert_close(s["ess_frac"], torch.tensor(0.5))


def test_callback_warmup_and_schedule():
    cb = LossReweighting(burnout_steps=10, kl_reg=1.0, kl_reg_start=5.0, kl_reg_decay_steps=4)

    class FakeTrainer:
        global_step = 3

    cb._trainer = FakeTrainer()
    losses = torch.tensor([1.0, 5.0, 2.0])
    torch.testing.assert_close(cb.sample_weights(losses), torch.full((3,), 1 / 3))
    assert not cb.is_active() and cb.current_kl_reg() == 5.0
    FakeTrainer.global_step = 12
    assert cb.current_kl_reg() == pytest.approx(3.0)
    torch.testing.assert_close(cb.sample_weights(losses), loss_weights(losses, kl_reg=3.0))
    FakeTrainer.global_step = 100
    assert cb.current_kl_reg() == 1.0


class TinyModel(LossMixin, LightningModule):
    def __init__(self, criterion="cross_entropy"):
        super().__init__()
        self.net = torch.nn.Linear(6, 4)
        self.configure_criterion(criterion)
        self.seen = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.compute_loss(self.net(x), y)
        self.seen.append((out.per_sample.detach().clone(), out.weights.clone()))
        return out.to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _loader(n=24, batch=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.randint(4, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def _trainer(tmp_path, callbacks, max_steps, **kw):
    return quiet_trainer(max_steps=max_steps, callbacks=callbacks, default_root_dir=tmp_path, **kw)


def test_gradient_is_weighted_sum_and_stats_logged(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    cb = LossReweighting(burnout_steps=0, strategy="linupper", kl_reg=0.5)
    trainer = _trainer(tmp_path, [cb], max_steps=1, log_every_n_steps=1)
    trainer.fit(model, _loader())
    # Independent single-step reference: p − lr · ∇ Σ w_i l_i with w from the naive formula.
    ref = TinyModel()
    ref.load_state_dict(init)
    x, y = next(iter(_loader()))
    per = torch.nn.functional.cross_entropy(ref.net(x), y, reduction="none")
    w = naive_weights(per.detach(), "linupper", r=0.5).float()
    (w * per).sum().backward()
    for p_ref, p in zip(ref.parameters(), model.parameters()):
        torch.testing.assert_close(p, p_ref.detach() - 0.5 * p_ref.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.seen[0][1], w)
    metrics = trainer.callback_metrics
    for key in ("w_min", "w_max", "entropy", "ess", "ess_frac", "kl_reg"):
        assert f"reweight/{key}" in metrics
    torch.testing.assert_close(metrics["reweight/ess"], 1 / w.square().sum(), rtol=1e-5, atol=1e-6)
    # Detached again after fit.
    assert "sample_weighter" not in model.__dict__


def test_warmup_is_uniform_then_reweights(tmp_path):
    model = TinyModel()
    trainer = _trainer(tmp_path, [LossReweighting(burnout_steps=2)], max_steps=3)
    trainer.fit(model, _loader())
    for _per, w in model.seen[:2]:
        torch.testing.assert_close(w, torch.full_like(w, 1 / 8))
    per, w = model.seen[2]
    torch.testing.assert_close(w, loss_weights(per))


def test_a_run_shorter_than_the_burn_out_warns_once_naming_it(tmp_path):
    cb = LossReweighting()  # burnout_steps=1000 by default
    with pytest.warns(UserWarning, match=r"burnout_steps=1000\) never reweights.*max_steps=3"):
        _trainer(tmp_path, [cb], max_steps=3, enable_checkpointing=False).fit(
            TinyModel(), _loader()
        )


@pytest.mark.parametrize("burnout_steps,max_steps", [(2, 3), (0, 1), (5, -1)])
def test_a_reachable_burn_out_does_not_warn(tmp_path, recwarn, burnout_steps, max_steps):
    cb = LossReweighting(burnout_steps=burnout_steps)
    kw = {"max_epochs": 1} if max_steps < 0 else {}
    _trainer(tmp_path, [cb], max_steps=max_steps, enable_checkpointing=False, **kw).fit(
        TinyModel(), _loader()
    )
    assert not [w for w in recwarn if "never reweights" in str(w.message)]


def test_per_token_granularity():
    """LM per-token losses: with loss_granularity='element' every valid token is a sample."""

    class TokenModel(TinyModel):
        loss_granularity = "element"

    model = TokenModel()
    cb = LossReweighting(burnout_steps=0)
    model.__dict__["sample_weighter"] = cb
    logits = torch.randn(2, 4, 5)  # [B, C, T]
    target = torch.tensor([[0, 1, -100, 3, 2], [1, -100, -100, 0, 0]])
    out = model.compute_loss(logits, target)
    assert out.per_sample.shape == (7,)
    torch.testing.assert_close(out.weights, loss_weights(out.per_sample.detach()))
    torch.testing.assert_close(out.loss, (out.weights * out.per_sample).sum())


def test_requires_loss_mixin(tmp_path):
    class Plain(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(6, 4)

        def training_step(self, batch, batch_idx):
            return self.net(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(TypeError, match="LossMixin"):
        _trainer(tmp_path, [LossReweighting()], max_steps=1).fit(Plain(), _loader())


def test_resume_equals_uninterrupted(tmp_path):
    def run(max_steps, ckpt_path=None, save_dir=None):
        torch.manual_seed(0)
        model = TinyModel()
        cb = LossReweighting(
            burnout_steps=2, strategy="linupper", kl_reg=0.5, kl_reg_start=2.0, kl_reg_decay_steps=3
        )
        callbacks = [cb]
        if save_dir is not None:
            callbacks.append(
                ModelCheckpoint(dirpath=save_dir, every_n_train_steps=3, save_top_k=-1)
            )
        trainer = _trainer(tmp_path, callbacks, max_steps=max_steps)
        trainer.fit(model, _loader(n=24), ckpt_path=ckpt_path)  # ckpt at an epoch end
        return model, cb

    full, cb_full = run(7)
    _, _ = run(3, save_dir=tmp_path / "ckpt")
    ckpt = next((tmp_path / "ckpt").glob("*step=3*.ckpt"))
    state = torch.load(ckpt, weights_only=False)
    assert any("LossReweighting" in k for k in state["callbacks"])
    resumed, cb_res = run(7, ckpt_path=str(ckpt), save_dir=tmp_path / "ckpt2")
    assert len(resumed.seen) == 4  # steps 3..6 only
    for (p_full, w_full), (p_res, w_res) in zip(full.seen[3:], resumed.seen):
        torch.testing.assert_close(p_res, p_full)
        torch.testing.assert_close(w_res, w_full)
    for a, b in zip(full.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(cb_res.last_weights, cb_full.last_weights)


def test_resume_with_changed_config_warns():
    cb = LossReweighting(kl_reg=2.0)
    with pytest.warns(UserWarning, match="kl_reg"):
        cb.load_state_dict(LossReweighting(kl_reg=1.0).state_dict())


# ------------------------------------------------------------------------ non-finite losses
@pytest.mark.parametrize("strategy", [*STRATS, "uniform"])
def test_non_finite_losses_get_weight_zero_and_leave_the_statistics(strategy):
    finite = torch.tensor([0.5, 2.0, 1.0, 4.0])
    losses = torch.tensor([0.5, float("nan"), 2.0, float("inf"), 1.0, -float("inf"), 4.0])
    w = loss_weights(losses, strategy, kl_reg=0.7)
    keep = torch.isfinite(losses)
    assert w[~keep].eq(0).all()
    torch.testing.assert_close(w[keep], loss_weights(finite, strategy, kl_reg=0.7))
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    assert loss_weights(torch.full((3,), float("nan")), strategy).eq(0).all()


class IdentityCriterion(torch.nn.Module):
    reduction = "none"

    def forward(self, losses):
        return losses


def test_one_inf_loss_does_not_poison_the_reweighted_step(tmp_path):
    model = TinyModel(IdentityCriterion())
    cb = LossReweighting(burnout_steps=0)
    model.__dict__["sample_weighter"] = cb
    per = torch.tensor([1.0, float("inf"), 3.0, 2.0], requires_grad=True)
    out = model.compute_loss(per)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    expected = loss_weights(torch.tensor([1.0, 3.0, 2.0]))
    torch.testing.assert_close(per.grad[[0, 2, 3]], expected)
    assert per.grad[1] == 0
    # The callback warns once, on a logged step, that it met non-finite losses.
    with pytest.warns(UserWarning, match="1 non-finite per-sample losses"):
        cb._check_non_finite()
    cb.sample_weights(torch.tensor([float("nan"), 1.0]))
    cb._check_non_finite()  # no second warning (pytest would not fail; check the flag instead)
    assert cb._warned_non_finite and cb._non_finite is None


def test_non_finite_count_and_warning_survive_a_checkpoint():
    cb = LossReweighting(burnout_steps=0)
    cb.sample_weights(torch.tensor([float("nan"), 1.0, float("inf")]))
    state = cb.state_dict()
    assert state["non_finite"] == {"count": 2, "warned": False}
    resumed = LossReweighting(burnout_steps=0)
    resumed.load_state_dict(state)
    resumed.sample_weights(torch.tensor([float("nan"), 1.0]))
    # The count of the interrupted run is reported with the resumed run's, once.
    with pytest.warns(UserWarning, match="3 non-finite per-sample losses"):
        resumed._check_non_finite()
    again = LossReweighting(burnout_steps=0)
    again.load_state_dict(resumed.state_dict())
    assert again.state_dict()["non_finite"] == {"count": 0, "warned": True}
    again.sample_weights(torch.tensor([float("nan")]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned before the checkpoint: not again
        again._check_non_finite()
    # A checkpoint written before the count was saved loads with the defaults.
    old = {k: v for k, v in state.items() if k != "non_finite"}
    fresh = LossReweighting(burnout_steps=0)
    fresh.load_state_dict(old)
    assert fresh.state_dict()["non_finite"] == {"count": 0, "warned": False}


def test_warmup_weights_also_skip_non_finite_losses():
    cb = LossReweighting(burnout_steps=10)

    class FakeTrainer:
        global_step = 0

    cb._trainer = FakeTrainer()
    w = cb.sample_weights(torch.tensor([1.0, float("nan"), 3.0]))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.0, 0.5]))


# ------------------------------------------------------------------- misconfiguration
def test_module_that_bypasses_compute_loss_fails_after_the_first_step(tmp_path):
    class Bypass(TinyModel):
        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

    model = Bypass()
    with pytest.raises(RuntimeError, match=r"first training step never called it.*compute_loss"):
        _trainer(tmp_path, [LossReweighting(burnout_steps=0)], max_steps=3).fit(model, _loader())
    assert model.global_step == 1  # it stopped right after the first step


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"global_normalization": "False"}, TypeError, "global_normalization"),
        ({"log_stats": 0}, TypeError, "log_stats"),
        ({"kl_reg_decay_steps": True}, TypeError, "kl_reg_decay_steps"),
        ({"burnout_steps": 1.5}, TypeError, "burnout_steps"),
        ({"burnout_steps": -1}, ValueError, "burnout_steps"),
    ],
)
def test_flags_and_counts_are_checked_strictly(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LossReweighting(**kwargs)
