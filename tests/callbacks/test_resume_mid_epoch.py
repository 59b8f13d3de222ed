"""Every behaviour callback resumes exactly from a mid-epoch checkpoint.

One uninterrupted run of `MAX_STEPS` optimizer steps (4 batches per epoch) saves a checkpoint
every 3 steps (`ModelCheckpoint(every_n_train_steps=3)`, i.e. after batch 3 of epoch 0 and after
batch 2 of epoch 1, both mid-epoch). A fresh Trainer, a fresh module and a fresh callback resume
from each checkpoint and must reproduce the rest of the uninterrupted run exactly (CPU, `atol=0`):
the batches seen (after the behaviour wrote into them), the parameters, the optimizer state
(Bloop's EMA lives there), the callback's own `state_dict` (generators, counters, teacher,
pending counts, accumulated epoch statistics) and every metric the logger received, the
module's epoch means of the interrupted epoch included.

The loader is `tests/callbacks/_resume.py`'s `ResumableLoader` (batches a pure function of
`(epoch, batch index)`), so the test does not depend on the project's data loaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint

from tests._lightning import quiet_trainer
from tests.callbacks._cases import CASES, MAX_STEPS, Case, Classifier, _xy_batches
from tests.callbacks._resume import BatchRecorder, MemoryLogger, ResumableLoader, assert_same

EVERY = 3
RESUME_AT = (3, 6)


@dataclass
class Run:
    module: LightningModule
    callback: Any
    recorder: BatchRecorder
    logger: MemoryLogger
    optimizer_state: dict[str, Any]


def _fit(case: Case, root: Path, ckpt_path: Path | None = None) -> Run:
    module, callback = case.module(), case.callback()
    recorder, logger = BatchRecorder(), MemoryLogger()
    checkpoints = ModelCheckpoint(
        dirpath=root, filename="{step}", every_n_train_steps=EVERY, save_top_k=-1
    )
    trainer = quiet_trainer(
        max_steps=MAX_STEPS,
        callbacks=[callback, recorder, checkpoints],
        logger=logger,
        log_every_n_steps=1,
        limit_val_batches=0,
        default_root_dir=root,
    )
    trainer.fit(module, ResumableLoader(case.batches()), ckpt_path=ckpt_path)
    optimizer = trainer.optimizers[0]
    return Run(module, callback, recorder, logger, optimizer.state_dict())


@pytest.mark.parametrize("name", sorted(CASES))
def test_resume_mid_epoch_equals_the_uninterrupted_run(name, tmp_path):
    case = CASES[name]
    full = _fit(case, tmp_path / "full")
    assert len(full.recorder.seen) == MAX_STEPS
    for step in RESUME_AT:
        ckpt = tmp_path / "full" / f"step={step}.ckpt"
        assert ckpt.exists()
        resumed = _fit(case, tmp_path / f"resumed{step}", ckpt_path=ckpt)
        where = f"{name} resumed at step {step}"
        # The batches: the uninterrupted run's after the checkpoint, as the behaviour left them.
        assert_same(full.recorder.seen[step:], resumed.recorder.seen, f"{where}: batches")
        assert_same(full.module.state_dict(), resumed.module.state_dict(), f"{where}: params")
        assert_same(full.optimizer_state, resumed.optimizer_state, f"{where}: optimizer")
        assert_same(full.callback.state_dict(), resumed.callback.state_dict(), f"{where}: state")
        assert_same(case.extra(full.callback), case.extra(resumed.callback), f"{where}: extra")
        # Every metric logged after the checkpoint, step for step.
        _assert_same_metrics(full.logger.rows, resumed.logger.rows, step, where)


def _assert_same_metrics(full_rows, resumed_rows, step, where):
    # Every row from the checkpoint's step on, the epoch means of the interrupted epoch included
    # (the module's running accumulators travel in the checkpoint), and the step values that
    # Lightning re-sends on later steps of an epoch.
    first = next(i for i, row in enumerate(full_rows) if row[0] >= step)
    after = full_rows[first:]
    assert after and len(after) == len(resumed_rows), where
    assert any(k.endswith("_epoch") for _, row in after for k in row), where  # checked here
    for (s, row), (t, got) in zip(after, resumed_rows, strict=True):
        assert s == t, where
        assert_same(row, got, f"{where}: metrics at step {s}")


class _EpochLogger(Callback):
    """Logs before the module's `on_train_batch_start`, with each reduction Lightning supports."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x, _ = batch
        pl_module.log("probe/mean", x[0, 0], on_step=False, on_epoch=True, batch_size=3)
        pl_module.log("probe/max", x.max(), on_epoch=True, reduce_fx="max")
        pl_module.log("probe/min", x.min(), on_step=True, on_epoch=True, reduce_fx="min")
        pl_module.log("probe/sum", x.sum(), on_step=True, on_epoch=True, reduce_fx="sum")
        if batch_idx == 0:  # a step value Lightning re-sends on the epoch's later steps
            pl_module.log("probe/first_step", x.mean(), on_step=True, on_epoch=False)


@pytest.mark.parametrize("step", RESUME_AT)
def test_epoch_values_logged_before_the_module_hook_merge_with_the_checkpoint(step, tmp_path):
    # At the first resumed batch a callback logs before the module restores the checkpointed
    # sums: the two parts add up (mean, sum) or reduce (max, min) to the uninterrupted values.
    case = Case(Classifier, _xy_batches, _EpochLogger, "probe/")
    full = _fit(case, tmp_path / "full")
    resumed = _fit(case, tmp_path / "resumed", ckpt_path=tmp_path / "full" / f"step={step}.ckpt")
    assert any("probe/max_epoch" in row for _, row in full.logger.rows)
    _assert_same_metrics(full.logger.rows, resumed.logger.rows, step, f"resumed at {step}")
