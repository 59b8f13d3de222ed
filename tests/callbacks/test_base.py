"""BehaviourCallback's shared plumbing: step detection, scoring context, per-rank generator."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks.base import BehaviourCallback, Role, resume_seed
from lightning_losses.mixins import AUX_GRADIENT_HANDLER_ATTR, SAMPLE_WEIGHTER_ATTR
from tests._lightning import quiet_trainer


class StepProbe(BehaviourCallback):
    def __init__(self):
        super().__init__()
        self.flags = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.flags.append(self.optimizer_stepped(trainer))


class Tiny(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_optimizer_stepped_is_true_only_on_the_stepping_micro_batch():
    probe = StepProbe()
    data = DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=2)  # 6 micro-batches
    quiet_trainer(
        max_epochs=1, accumulate_grad_batches=3, enable_checkpointing=False, callbacks=[probe]
    ).fit(Tiny(), data)
    assert probe.flags == [False, False, True, False, False, True]


def test_scoring_is_eval_and_no_grad_and_restores_the_mode_even_on_error():
    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    with BehaviourCallback.scoring(net):
        assert not net.training and not net[0].training and not torch.is_grad_enabled()
    assert net.training and torch.is_grad_enabled()
    net.eval()
    with pytest.raises(KeyError), BehaviourCallback.scoring(net):
        raise KeyError
    assert not net.training and torch.is_grad_enabled()


class Seeded(BehaviourCallback):
    def __init__(self, seed):
        super().__init__(seed=seed)


def test_generator_is_per_rank_and_saved_and_reseeded_on_resume():
    cb = Seeded(10)
    assert BehaviourCallback().generator is None and BehaviourCallback().state_dict() == {}
    cb.setup(SimpleNamespace(global_rank=2), Tiny(), "fit")
    assert torch.equal(cb.generator.get_state(), torch.Generator().manual_seed(12).get_state())
    torch.rand(3, generator=cb.generator)
    saved = cb.state_dict()["generator"]
    assert saved.shape[0] == 1  # one row per rank (a single process here)
    expected_next = torch.rand(4, generator=cb.generator)

    resumed = Seeded(10)
    resumed.setup(SimpleNamespace(global_rank=0), Tiny(), "fit")
    resumed.load_state_dict({"generator": saved})
    resumed.on_train_start(SimpleNamespace(global_step=7, global_rank=0), None)  # restored: kept
    assert torch.equal(torch.rand(4, generator=resumed.generator), expected_next)

    fresh = Seeded(10)
    fresh.setup(SimpleNamespace(global_rank=0), Tiny(), "fit")
    fresh.on_train_start(SimpleNamespace(global_step=7, global_rank=0), None)  # no state: reseed
    reseeded = torch.Generator().manual_seed(resume_seed(10, 0, 7))
    assert torch.equal(fresh.generator.get_state(), reseeded.get_state())


def test_role_constants_live_in_one_place():
    assert SAMPLE_WEIGHTER_ATTR == Role.SAMPLE_WEIGHTER == "sample_weighter"
    assert AUX_GRADIENT_HANDLER_ATTR == Role.GRADIENT_HANDLER
    from lightning_losses.callbacks import LossReweighting, PLDResampling

    assert LossReweighting.role == Role.SAMPLE_WEIGHTER and PLDResampling.role == Role.PLD


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed"):
        Seeded(1.5)
    with pytest.raises(TypeError, match="seed"):
        Seeded(True)
