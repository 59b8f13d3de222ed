"""The ``lightning-losses`` CLI: every YAML recipe parses, and ``fit`` runs from YAML in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lightning_losses.recipes.cli import build_cli
from tests._lightning import cli_output_args

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "recipes").rglob("*.yaml"))


def test_fit_two_steps_from_yaml(tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/vision/digits_noisy.yaml"),
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    assert cli.trainer.global_step == 2
    assert type(cli.model.criterion).__name__ == "ActivePassiveLoss"
    assert cli.model.criterion.reduction == "none"
    assert "train/loss" in cli.trainer.callback_metrics


def test_criterion_override_from_command_line(tmp_path):
    cli = build_cli(
        [
            "--config",
            str(ROOT / "recipes/vision/digits_noisy.yaml"),
            "--model.criterion",
            '{"name": "poly", "epsilon": 2.0}',
        ],
        run=False,
    )
    assert type(cli.model.criterion).__name__ == "PolyLoss"
    assert cli.model.criterion.epsilon == 2.0


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(ROOT)) for c in CONFIGS])
def test_every_recipe_config_instantiates(config):
    text = config.read_text()
    assert text.startswith("#"), "recipes start with a comment giving the launch line"
    assert "lightning-losses fit --config" in text
    yaml.safe_load(text)
    cli = build_cli(["--config", str(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None
