"""Shared Lightning set-ups for tests: a quiet CPU Trainer and CLI output arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer


def quiet_trainer(**kwargs: Any) -> Trainer:
    """A single-device CPU Trainer without logger, progress bar or model summary."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return Trainer(**{**defaults, **kwargs})


def cli_output_args(tmp_path: Path) -> list[str]:
    """CLI arguments: logs and checkpoints in ``tmp_path``, no progress bar."""
    return [
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
        "--trainer.default_root_dir",
        str(tmp_path),
    ]
