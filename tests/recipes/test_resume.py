"""A run stopped at an epoch boundary and resumed from its checkpoint equals the full run."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_losses.data.digits import NoisyDigitsDataModule
from lightning_losses.recipes.image_classification import ImageClassifier
from tests._lightning import quiet_trainer


class _Batches(Callback):
    """Records the (noisy) labels of every training batch, per epoch."""

    def __init__(self):
        self.epochs: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.epochs.setdefault(trainer.current_epoch, []).append(batch[1].tolist())


def _fit(tmp_path, max_epochs, ckpt_path=None, save=False):
    seed_everything(0, verbose=False)
    model = ImageClassifier(criterion="cross_entropy", hidden=32)
    data = NoisyDigitsDataModule(noise_rate=0.4, batch_size=128, seed=0)
    batches = _Batches()
    callbacks = [ModelCheckpoint(dirpath=tmp_path, save_last=True)] if save else []
    trainer = quiet_trainer(
        max_epochs=max_epochs,
        enable_checkpointing=save,
        limit_val_batches=0,
        callbacks=[*callbacks, batches],
        default_root_dir=tmp_path,
        deterministic=True,
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model, batches.epochs


def test_resume_matches_uninterrupted(tmp_path):
    full, full_batches = _fit(tmp_path / "full", max_epochs=3)
    part, part_batches = _fit(tmp_path / "part", max_epochs=2, save=True)
    part_state = {k: v.clone() for k, v in part.state_dict().items()}
    resumed, resumed_batches = _fit(
        tmp_path / "resumed", max_epochs=3, ckpt_path=tmp_path / "part" / "last.ckpt"
    )
    # The resumed run trains exactly epoch 2, on the uninterrupted run's batches for epoch 2
    # (not a replay of epoch 0), and ends with bit-identical weights.
    assert list(resumed_batches) == [2]
    assert resumed_batches[2] == full_batches[2]
    assert full_batches[2] != full_batches[0] and part_batches == {
        e: full_batches[e] for e in (0, 1)
    }
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # ... and epoch 2 really changed the weights of the 2-epoch checkpoint it started from.
    assert not torch.equal(resumed.net[0].weight, part_state["net.0.weight"])
