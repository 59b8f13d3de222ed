"""PLD resampling: the functional core on its own, the callback's wiring, and resume equality."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_losses.callbacks import PLDResampling
from lightning_losses.callbacks.base import resume_seed
from lightning_losses.callbacks.pld import (
    PLDScorer,
    pld_entropy,
    pld_probabilities,
    pld_sample,
    pld_select,
)
from lightning_losses.data import InteractionDataModule
from lightning_losses.recipes.recsys import RecsysModule
from tests._lightning import quiet_trainer

losses_strategy = st.integers(1, 6).flatmap(
    lambda k: st.lists(
        st.lists(st.floats(0, 20, allow_nan=False), min_size=k, max_size=k), min_size=1, max_size=5
    )
)


# ------------------------------------------------------------------------- functional core
@settings(max_examples=50, deadline=None)
@given(rows=losses_strategy, tau=st.floats(0.01, 100))
def test_probabilities_sum_to_one_and_fall_with_loss(rows, tau):
    losses = torch.tensor(rows, dtype=torch.float64)
    probs = pld_probabilities(losses, tau)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(rows), dtype=torch.float64))
    assert (probs >= 0).all()
    # lower loss => higher (or equal, when underflowing) probability, within each user's pool
    lo = losses.unsqueeze(2) < losses.unsqueeze(1)
    assert (probs.unsqueeze(2) >= probs.unsqueeze(1))[lo].all()
    # exact formula: exp(-l/τ) / Σ exp(-l'/τ)
    ref = torch.exp(-losses / tau) / torch.exp(-losses / tau).sum(1, keepdim=True)
    if torch.isfinite(ref).all():
        torch.testing.assert_close(probs, ref)


def test_strictly_lower_loss_gets_strictly_higher_probability():
    probs = pld_probabilities(torch.tensor([[0.1, 0.5, 2.0]]), 0.5)
    assert probs[0, 0] > probs[0, 1] > probs[0, 2]


def test_temperature_limits():
    losses = torch.tensor([[0.3, 1.2, 0.1, 2.0], [5.0, 5.0, 1.0, 9.0]])
    uniform = torch.full_like(losses, 0.25)
    torch.testing.assert_close(pld_probabilities(losses, math.inf), uniform)
    torch.testing.assert_close(pld_probabilities(losses, 1e7), uniform, atol=1e-6, rtol=0)
    greedy = pld_probabilities(losses, 1e-4)
    torch.testing.assert_close(greedy, torch.nn.functional.one_hot(losses.argmin(1), 4).float())
    assert pld_entropy(pld_probabilities(losses, math.inf)) == pytest.approx(1.0)
    assert pld_entropy(greedy) < 1e-3


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_invalid_temperature_raises(tau):
    with pytest.raises(ValueError, match="temperature"):
        pld_probabilities(torch.zeros(2, 3), tau)
    with pytest.raises(ValueError, match="temperature"):
        PLDResampling(temperature=tau)


def test_bad_losses_shape_raises():
    with pytest.raises(ValueError, match="losses"):
        pld_probabilities(torch.zeros(3), 1.0)
    with pytest.raises(TypeError, match="losses"):
        pld_probabilities(torch.zeros(3, 2, dtype=torch.long), 1.0)


def test_sample_frequencies_follow_probabilities_and_are_reproducible():
    losses = torch.tensor([[0.2, 0.9, 1.5, 0.4]]).expand(40_000, 4)
    g = torch.Generator().manual_seed(0)
    idx = pld_sample(losses, 0.5, g)
    freq = torch.bincount(idx, minlength=4).float() / len(idx)
    torch.testing.assert_close(freq, pld_probabilities(losses[:1], 0.5)[0], atol=0.01, rtol=0)
    again = pld_sample(losses, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    assert not torch.equal(idx, pld_sample(losses, 0.5, torch.Generator().manual_seed(1)))


def test_single_candidate_pool_is_a_no_op():
    idx = pld_sample(torch.rand(7, 1), 0.1, torch.Generator().manual_seed(0))
    assert (idx == 0).all()


def test_non_finite_candidates_get_probability_zero_and_are_never_drawn():
    nan, inf = float("nan"), float("inf")
    losses = torch.tensor([[0.5, nan, 1.0, inf], [-inf, 2.0, nan, 0.1]])
    for tau in (0.5, math.inf):
        probs = pld_probabilities(losses, tau)
        assert probs[:, [1, 3]][0].eq(0).all() and probs[1, [0, 2]].eq(0).all()
        torch.testing.assert_close(probs.sum(1), torch.ones(2))
    torch.testing.assert_close(
        pld_probabilities(losses, math.inf), torch.tensor([[0.5, 0, 0.5, 0], [0, 0.5, 0, 0.5]])
    )
    # Regression: an unusable last candidate must not absorb the leftover mass.
    rows = losses.repeat(5000, 1)
    idx = pld_sample(rows, 0.5, torch.Generator().manual_seed(0)).view(5000, 2)
    assert set(idx[:, 0].tolist()) == {0, 2} and set(idx[:, 1].tolist()) == {1, 3}


def test_row_without_finite_candidate_falls_back_to_uniform():
    nan, inf = float("nan"), float("inf")
    losses = torch.tensor([[inf, inf, inf], [nan, nan, nan], [nan, inf, -inf]])
    probs = pld_probabilities(losses, 0.1)
    torch.testing.assert_close(probs, torch.full((3, 3), 1 / 3))
    idx = pld_sample(losses.repeat(3000, 1), 0.1, torch.Generator().manual_seed(1))
    freq = torch.bincount(idx, minlength=3).float() / len(idx)
    torch.testing.assert_close(freq, torch.full((3,), 1 / 3), atol=0.02, rtol=0)


def test_huge_finite_losses_do_not_overflow():
    probs = pld_probabilities(torch.tensor([[1e38, 2e38, 3e38]]), 1e-3)
    torch.testing.assert_close(probs, torch.tensor([[1.0, 0.0, 0.0]]))


# ----------------------------------------------------------------------------- select()
def test_select_rewrites_batch_and_tracks_known_noise():
    pld = PLDResampling(temperature=0.01, seed=0)
    cand = torch.arange(12).view(4, 3)
    noisy = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.bool)
    losses = noisy.float() * 10  # noisy candidates have high loss
    batch = {
        "user": torch.arange(4),
        "cand_items": cand,
        "pos_item": cand[:, 0].clone(),
        "cand_noisy": noisy,
    }
    idx = pld.select(batch, losses)
    assert torch.equal(batch["pos_item"], cand.gather(1, idx[:, None])[:, 0])
    assert not batch["pos_is_noisy"].any()
    assert float(pld._sums["noisy_share"]) == 0.0
    with pytest.raises(ValueError, match="cand_items"):
        pld.select(batch, torch.zeros(4, 2))


# -------------------------------------------------------------------------- with a Trainer
def small_dm(**kw):
    base = dict(num_users=40, num_items=120, positives_per_user=12, batch_size=64, pool_size=4)
    return InteractionDataModule(**{**base, **kw})


def trainer(epochs, callbacks, **kw):
    return quiet_trainer(max_epochs=epochs, callbacks=callbacks, limit_val_batches=0, **kw)


class Probe(RecsysModule):
    """Records the autograd / train-mode state PLD scores under."""

    seen: list

    def pld_candidate_losses(self, batch):
        self.seen.append((torch.is_grad_enabled(), self.training))
        return super().pld_candidate_losses(batch)

    def training_step(self, batch, batch_idx):
        assert self.training and torch.is_grad_enabled()
        return super().training_step(batch, batch_idx)


def test_callback_scores_without_grad_in_eval_mode_and_logs():
    L.seed_everything(0)
    module = Probe(pld_inline=False)  # option (a): the callback scores
    module.seen = []
    pld = PLDResampling(temperature=0.5)
    t = trainer(1, [pld], enable_checkpointing=False)
    t.fit(module, small_dm())
    assert module.seen and all(s == (False, False) for s in module.seen)
    assert {"pld/noisy_share", "pld/pool_noisy_share", "pld/entropy"} <= set(t.callback_metrics)
    assert len(pld.history) == 1
    assert "pld" not in module.__dict__  # detached at teardown


class CountPropagations(L.Callback):
    def __init__(self):
        self.calls = 0

    def on_train_start(self, trainer, pl_module):
        orig = pl_module.model.embeddings

        def counted():
            self.calls += 1
            return orig()

        pl_module.model.embeddings = counted


def test_inline_module_reuses_its_propagation():
    # Option (b): one graph propagation per training step; option (a) needs a second one.
    def propagations(inline):
        L.seed_everything(0)
        module = RecsysModule(model="lightgcn", num_layers=1, pld_inline=inline)
        pld, count = PLDResampling(temperature=0.5), CountPropagations()
        t = trainer(1, [pld, count], enable_checkpointing=False, limit_train_batches=3)
        t.fit(module, small_dm())
        assert pld.history and 0 < pld.history[0]["entropy"] <= 1
        return count.calls

    assert propagations(True) == 3
    assert propagations(False) == 6


class NoInterface(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(torch.ones(1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class NoInterfaceButScorer(torch.nn.Module):
    def pld_candidate_losses(self, batch, *reuse):
        return batch["cand_items"].float()


def test_pld_select_is_a_no_op_without_callback_and_forwards_reuse():
    scorer = NoInterfaceButScorer()
    assert isinstance(scorer, PLDScorer) and not isinstance(NoInterface(), PLDScorer)
    batch = {"user": torch.tensor([0]), "cand_items": torch.tensor([[5, 3, 9]])}
    assert pld_select(scorer, batch) is None and "pos_item" not in batch
    seen = []
    scorer.pld_candidate_losses = lambda b, *reuse: seen.append(reuse) or b["cand_items"].float()
    scorer.__dict__["pld"] = PLDResampling(temperature=1e-3)
    idx = pld_select(scorer, batch, "tables")
    assert seen == [("tables",)] and idx.tolist() == [1] and batch["pos_item"].tolist() == [3]


class ForgetfulInline(RecsysModule):
    pld_inline = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.pld_inline = True

    def training_step(self, batch, batch_idx):
        pos = self.model(batch["user"], batch["pos_item"])
        neg = self.model(batch["user"], batch["neg_item"])
        return self.compute_loss(pos, neg).to_dict()


def test_misconfigured_modules_fail_clearly():
    with pytest.raises(TypeError, match="pld_candidate_losses"):
        trainer(1, [PLDResampling()], enable_checkpointing=False).fit(NoInterface(), small_dm())
    with pytest.raises(RuntimeError, match=r"did not call pld_select"):
        trainer(1, [PLDResampling()], enable_checkpointing=False).fit(ForgetfulInline(), small_dm())


def test_low_temperature_avoids_high_loss_noisy_candidates():
    # A module whose candidate losses reveal the noise: PLD should (almost) never train on it.
    class Oracle(RecsysModule):
        def pld_candidate_losses(self, batch):
            return batch["cand_noisy"].float() * 5.0

    L.seed_everything(0)
    pld = PLDResampling(temperature=0.1)
    t = trainer(1, [pld], enable_checkpointing=False)
    t.fit(Oracle(pld_inline=False), small_dm(noise_rate=0.3))
    h = pld.history[0]
    assert h["pool_noisy_share"] == pytest.approx(0.3, abs=0.05)
    assert h["noisy_share"] < 0.01


class RecordingPLD(PLDResampling):
    """Keeps every draw, to compare a resumed run's draws with an uninterrupted run's."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.draws = []

    def select(self, batch, losses):
        idx = super().select(batch, losses)
        self.draws.append(idx.clone())
        return idx


def _fit_pld(tmp_path, epochs, ckpt=None, save=None):
    L.seed_everything(0)
    module = RecsysModule(lr=0.05, pld_inline=False)
    pld = RecordingPLD(temperature=0.3, seed=5)
    t = trainer(epochs, [pld], default_root_dir=tmp_path, enable_checkpointing=False)
    t.fit(module, small_dm(), ckpt_path=ckpt)
    if save:
        t.save_checkpoint(save)
    return module, pld


def test_resume_replays_the_uninterrupted_draws(tmp_path):
    full, full_pld = _fit_pld(tmp_path, 4)
    path = tmp_path / "half.ckpt"
    _, half_pld = _fit_pld(tmp_path, 2, save=path)
    n_half = len(half_pld.draws)
    assert 0 < n_half < len(full_pld.draws)
    resumed, resumed_pld = _fit_pld(tmp_path, 4, ckpt=str(path))
    # The resumed run draws exactly what the uninterrupted one drew after the checkpoint ...
    assert len(resumed_pld.draws) == len(full_pld.draws) - n_half
    for a, b in zip(full_pld.draws[n_half:], resumed_pld.draws, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # The checkpoint carries the per-epoch history: the resumed one is the whole run's.
    assert full_pld.history == resumed_pld.history

    # ... and that is the saved generator's doing: resumed from the same checkpoint without the
    # callback's state, the rank reseeds from (seed, rank, step) and draws differently.
    state = torch.load(path, weights_only=False)
    state["callbacks"] = {}
    stripped = tmp_path / "stripped.ckpt"
    torch.save(state, stripped)
    _, reseeded = _fit_pld(tmp_path, 4, ckpt=str(stripped))
    assert len(reseeded.draws) == len(resumed_pld.draws)
    assert any(not torch.equal(a, b) for a, b in zip(resumed_pld.draws, reseeded.draws))


def test_rank_without_saved_state_reseeds_from_seed_rank_and_step():
    pld = PLDResampling(seed=5)
    fake = SimpleNamespace(global_rank=1, global_step=12, current_epoch=3)
    pld.setup(fake, NoInterfaceButScorer(), "fit")
    assert torch.equal(pld.generator.get_state(), torch.Generator().manual_seed(6).get_state())
    pld.load_state_dict({"generator": torch.zeros(0, 5056, dtype=torch.uint8)})  # no row for us
    pld.on_train_start(fake, None)
    expected = torch.Generator().manual_seed(resume_seed(5, 1, 12))
    assert torch.equal(pld.generator.get_state(), expected.get_state())
    assert resume_seed(5, 1, 12) not in {5, 6, resume_seed(5, 0, 12), resume_seed(5, 1, 11)}


def test_state_dict_round_trip():
    a = PLDResampling(seed=3)
    torch.rand(5, generator=a.generator)
    b = PLDResampling(seed=9)
    # The generator state wins; the other seed is reported (it reseeds ranks without a state).
    with pytest.warns(UserWarning, match="seed = 3 in the checkpoint, 9 now"):
        b.load_state_dict(a.state_dict())
    assert torch.equal(torch.rand(4, generator=a.generator), torch.rand(4, generator=b.generator))


@pytest.mark.parametrize("model", ["mf", "lightgcn"])
def test_inline_and_callback_paths_train_identically(model):
    # Option (b) reuses the step's embeddings; option (a) rescores in on_train_batch_start with the
    # same parameters: the same candidate losses, the same draws, the same training run.
    def fit(inline):
        L.seed_everything(0)
        module = RecsysModule(model=model, num_layers=2, pld_inline=inline)
        pld = PLDResampling(temperature=0.3, seed=2)
        trainer(2, [pld], enable_checkpointing=False).fit(module, small_dm())
        return module, pld

    (a, pa), (b, pb) = fit(False), fit(True)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)
    assert torch.equal(pa.generator.get_state(), pb.generator.get_state())
