"""Every behaviour callback resumes exactly from a mid-epoch checkpoint.

One uninterrupted run of `MAX_STEPS` optimizer steps (4 batches per epoch) saves a checkpoint
every 3 steps (`ModelCheckpoint(every_n_train_steps=3)`, i.e. after batch 3 of epoch 0 and after
batch 2 of epoch 1, both mid-epoch). A fresh Trainer, a fresh module and a fresh callback resume
from each checkpoint and must reproduce the rest of the uninterrupted run exactly (CPU, `atol=0`):
the batches seen (after the behaviour wrote into them), the parameters, the optimizer state
(Bloop's EMA lives there), the callback's own `state_dict` (generators, counters, teacher,
pending counts, accumulated epoch statistics) and every metric the logger received.

The loader is `tests/callbacks/_resume.py`'s `ResumableLoader` (batches a pure function of
`(epoch, batch index)`), so the test does not depend on the project's data loaders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint

from tests._lightning import quiet_trainer
from tests.callbacks._cases import CASES, MAX_STEPS, Case
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
        _assert_same_metrics(full.logger.rows, resumed.logger.rows, step, where, case.prefix)


def _assert_same_metrics(full_rows, resumed_rows, step, where, prefix):
    full_rows = _without_epoch_aggregates(full_rows, prefix)
    resumed_rows = _without_epoch_aggregates(resumed_rows, prefix)
    first = next(i for i, row in enumerate(full_rows) if row[0] >= step)
    after = full_rows[first:]
    assert after and len(after) == len(resumed_rows), where
    for i, ((s, row), (t, got)) in enumerate(zip(after, resumed_rows, strict=True)):
        assert s == t, where
        # Lightning re-sends a step value logged earlier in the epoch on every later step until
        # the epoch ends (its result collection keeps it); a fresh Trainer has no such value. A
        # key only the uninterrupted run has must be such a repeat, of a value logged before.
        previous = full_rows[first + i - 1][1]
        for key in set(row) - set(got):
            assert key in previous and previous[key] == row[key], f"{where}: {key} at {s}"
        assert_same({k: row[k] for k in got}, got, f"{where}: metrics at step {s}")


def _without_epoch_aggregates(rows, prefix):
    # Kept: everything the callback logs (its epoch values come from its own checkpointed sums),
    # every per-step value and the epoch. Dropped: Lightning's own epoch means of what the module
    # logs (`train/loss_epoch`, epoch-only `train/...`): Lightning 2.6 does not checkpoint its
    # running epoch aggregates, so after a mid-epoch resume they cover the resumed batches only.
    def keep(key):
        return key.startswith(prefix) or key.endswith("_step") or key == "epoch"

    return [(s, {k: v for k, v in row.items() if keep(k)}) for s, row in rows]
