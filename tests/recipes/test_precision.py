"""Every base recipe trains under `bf16-mixed` autocast on the CPU with finite losses.

Two optimizer steps per recipe through the `lightning-losses` command (in process): the
criterion sees bf16 activations where autocast produces them, and the losses upcast inside (see
the precision table in `docs/design/contract.md`). A NaN/inf logged loss or a crash fails.
"""

from __future__ import annotations

import math

import pytest

from lightning_losses.recipes.cli import build_cli
from tests._lightning import cli_output_args
from tests.recipes.test_cli import BASES, _rel


@pytest.mark.slow
@pytest.mark.parametrize("config", BASES, ids=[_rel(c) for c in BASES])
def test_base_recipe_trains_in_bf16_mixed(config, tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(config),
            "--trainer.precision",
            "bf16-mixed",
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    assert cli.trainer.precision == "bf16-mixed"
    assert cli.trainer.global_step == 2
    losses = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if "loss" in k}
    assert losses, "the recipe logged no loss"
    assert all(math.isfinite(v) for v in losses.values()), losses
