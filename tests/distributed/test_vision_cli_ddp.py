"""The image-classification recipe from YAML with `--trainer.devices 2 --trainer.strategy ddp` on
CPU (gloo)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tests._dist import run_python
from tests._lightning import cli_output_args

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
ROOT = Path(__file__).resolve().parents[2]


def test_vision_recipe_runs_under_ddp(tmp_path):
    proc = run_python(
        [
            "-m",
            "lightning_losses.recipes.cli",
            "fit",
            "--config",
            str(ROOT / "recipes/vision/digits_noisy.yaml"),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "3",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.log_every_n_steps",
            "1",
            *cli_output_args(tmp_path),
        ],
        cwd=tmp_path,
        timeout=240,
    )
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    accs = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)  # one per step
    assert len(accs) == 1 and 0.0 <= accs[0] <= 1.0  # one validation, reduced over both ranks
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
