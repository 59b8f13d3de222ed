"""A run stopped at an epoch boundary and resumed from its checkpoint equals the uninterrupted run."""

from __future__ import annotations

import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_losses.data.digits import NoisyDigitsDataModule
from lightning_losses.recipes.vision import ImageClassifier
from tests._lightning import quiet_trainer


def _fit(tmp_path, max_epochs, ckpt_path=None, save=False):
    seed_everything(0, verbose=False)
    model = ImageClassifier(criterion={"name": "poly", "epsilon": 1.0}, hidden=32)
    data = NoisyDigitsDataModule(noise_rate=0.4, batch_size=128, seed=0)
    callbacks = [ModelCheckpoint(dirpath=tmp_path, save_last=True)] if save else []
    trainer = quiet_trainer(
        max_epochs=max_epochs,
        enable_checkpointing=save,
        limit_val_batches=0,
        callbacks=callbacks,
        default_root_dir=tmp_path,
        deterministic=True,
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model


def test_resume_matches_uninterrupted(tmp_path):
    full = _fit(tmp_path / "full", max_epochs=3)
    _fit(tmp_path / "part", max_epochs=2, save=True)
    resumed = _fit(tmp_path / "resumed", max_epochs=3, ckpt_path=tmp_path / "part" / "last.ckpt")
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # and the epochs really differ from each other (the test would catch a frozen order)
    assert not torch.equal(full.net[0].weight, ImageClassifier(hidden=32).net[0].weight)
