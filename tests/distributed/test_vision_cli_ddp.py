"""The vision recipe from YAML with `--trainer.devices 2 --trainer.strategy ddp` on CPU (gloo)."""

from __future__ import annotations

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
    metrics = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "train/loss_step" in metrics and "val/acc" in metrics
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
