"""The `lightning-losses` CLI: every recipe (and overlay) builds, fit runs, errors are one line."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest.mock import ANY

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_losses.mixins.optimizers import OptimizerMixin
from lightning_losses.recipes.cli import SUBCOMMANDS, LossesCLI, build_cli, main, overlay_bases
from tests._lightning import cli_output_args

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "recipes").rglob("*.yaml"))
OVERLAY_TAG = "# overlay-for:"


def _overlay_bases(config: Path) -> list[Path]:
    """The base configs an overlay names on its first line (none for a base config)."""
    return [config.parent / name for name in overlay_bases(config)]


BASES = [c for c in CONFIGS if not _overlay_bases(c)]
OVERLAYS = [(base, c) for c in CONFIGS for base in _overlay_bases(c)]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


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
    # The recipe keeps the best checkpoint by clean validation accuracy and logs step curves.
    ckpt = cli.trainer.checkpoint_callback
    assert isinstance(ckpt, ModelCheckpoint)
    assert (ckpt.monitor, ckpt.mode, ckpt.save_last) == ("val/acc", "max", True)
    assert cli.trainer.log_every_n_steps <= 17  # digits: 17 training batches per epoch


def test_criterion_override_from_command_line():
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


def test_overlays_and_bases_are_found():
    assert BASES and OVERLAYS
    for base, overlay in OVERLAYS:
        assert base.exists(), f"{_rel(overlay)} names a missing base {base.name}"
        assert base in BASES, f"{_rel(overlay)} names another overlay {base.name}"


@pytest.mark.parametrize("config", BASES, ids=[_rel(c) for c in BASES])
def test_every_base_recipe_config_instantiates(config):
    text = config.read_text()
    assert text.startswith("#"), "recipes start with a comment giving the launch line"
    assert "lightning-losses fit --config" in text
    yaml.safe_load(text)
    cli = build_cli(["--config", str(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None


@pytest.mark.parametrize(
    "base,overlay", OVERLAYS, ids=[f"{_rel(o)}-on-{b.name}" for b, o in OVERLAYS]
)
def test_every_overlay_instantiates_on_each_base_it_names(base, overlay):
    text = overlay.read_text()
    assert "lightning-losses fit --config" in text, "overlays give the launch line too"
    over = yaml.safe_load(text)
    cli = build_cli(["--config", str(base), "--config", str(overlay)], run=False)
    assert cli.model is not None and cli.datamodule is not None
    # What the overlay adds is there, on top of the base.
    for cb in (over.get("trainer") or {}).get("callbacks") or []:
        name = cb["class_path"].rsplit(".", 1)[-1]
        assert any(type(c).__name__ == name for c in cli.trainer.callbacks), name
    base_model = yaml.safe_load(base.read_text())["model"]["class_path"]
    assert type(cli.model).__name__ == base_model.rsplit(".", 1)[-1]


def test_subcommands_are_fit_validate_test_only(capsys):
    assert tuple(LossesCLI.subcommands()) == SUBCOMMANDS == ("fit", "validate", "test")
    with pytest.raises(SystemExit) as exc:
        build_cli(["predict", "--config", str(ROOT / "recipes/vision/digits_noisy.yaml")])
    assert exc.value.code != 0
    assert "predict" in capsys.readouterr().err


def test_model_help_is_short(capsys):
    with pytest.raises(SystemExit) as exc:
        build_cli(
            ["fit", "--model.help", "lightning_losses.recipes.image_classification.ImageClassifier"]
        )
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--model.criterion" in out and "--model.backbone" in out
    assert "torch.nn.Linear" not in out and "known subclasses" not in out
    assert len(out.splitlines()) < 60


@pytest.mark.parametrize(
    "criterion,match,error",
    [
        ("no_such_loss", "KeyError: No loss registered under 'no_such_loss'", ValueError),
        (
            '{"name": "cross_entropy", "label_smoothing": 2.0}',
            "ValueError: .*label_smoothing",
            ValueError,
        ),
        ('{"class_path": "torch.nn.NoSuchLoss"}', "NoSuchLoss", ValueError),
    ],
)
def test_bad_criterion_is_one_error_line(capsys, criterion, match, error):
    args = ["--config", str(ROOT / "recipes/vision/digits_noisy.yaml")]
    args += ["--model.criterion", criterion]
    with pytest.raises(SystemExit) as exc:
        build_cli(args, run=False, one_line_errors=True)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightning-losses: error: ")
    assert re.search(match, err[0]), err[0]
    # In Python (the default) the exception propagates for the caller to handle (jsonargparse
    # wraps the cause in a ValueError naming it).
    with pytest.raises(error, match=r"no_such_loss|label_smoothing|NoSuchLoss"):
        build_cli(args, run=False)


USER_MODULE = textwrap.dedent(
    '''
    """A user's own model and data, found by class_path from the working directory."""
    import torch
    from lightning.pytorch import LightningDataModule, LightningModule
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_losses.mixins import LossMixin

    STEPS = []


    class TinyClassifier(LossMixin, LightningModule):
        def __init__(self, criterion: str | dict = "cross_entropy"):
            super().__init__()
            self.net = torch.nn.Linear(4, 3)
            self.configure_criterion(criterion)

        def training_step(self, batch, batch_idx):
            STEPS.append(batch_idx)
            x, y = batch
            return self.compute_loss(self.net(x), y).to_dict()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)


    class TinyData(LightningDataModule):
        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            x, y = torch.randn(16, 4, generator=g), torch.randint(3, (16,), generator=g)
            return DataLoader(TensorDataset(x, y), batch_size=4)
    '''
)


def test_user_modules_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "my_user_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_user_models", raising=False)
    main(
        [
            "fit",
            "--model",
            "my_user_models.TinyClassifier",
            "--data",
            "my_user_models.TinyData",
            "--trainer.max_steps",
            "2",
            "--trainer.logger",
            "false",
            "--trainer.enable_checkpointing",
            "false",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert sys.modules["my_user_models"].STEPS == [0, 1]
    monkeypatch.delitem(sys.modules, "my_user_models")


def test_console_script_finds_cwd_modules_and_prints_one_line(tmp_path):
    script = Path(sys.executable).with_name("lightning-losses")
    assert script.exists(), "the console script is installed by `pip install -e .`"
    (tmp_path / "my_user_models.py").write_text(USER_MODULE)
    proc = subprocess.run(
        [
            str(script),
            "fit",
            "--model",
            "my_user_models.TinyClassifier",
            "--model.criterion",
            "cross_entropyy",
            "--data",
            "my_user_models.TinyData",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("lightning-losses: error:")]
    assert len(lines) == 1 and "No loss registered under 'cross_entropyy'" in lines[0]


def _fit_user_module(tmp_path, monkeypatch, *extra: str):
    (tmp_path / "my_user_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_user_models", raising=False)
    args = ["fit", "--model", "my_user_models.TinyClassifier", "--data", "my_user_models.TinyData"]
    args += ["--trainer.max_steps", "1", "--trainer.logger", "false"]
    args += ["--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.default_root_dir", str(tmp_path), *extra]
    return build_cli(args, one_line_errors=True)


def test_optimizer_from_the_command_line_replaces_a_user_modules_own(tmp_path, monkeypatch):
    # A module that is not an OptimizerMixin gets LightningCLI's standard behaviour.
    cli = _fit_user_module(tmp_path, monkeypatch, "--optimizer", "Adam", "--optimizer.lr", "0.01")
    (optimizer,) = cli.trainer.optimizers
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 0.01


def test_lr_scheduler_without_optimizer_is_an_error_not_silence(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:
        _fit_user_module(
            tmp_path, monkeypatch, "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "1"
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ValueError: --lr_scheduler needs --optimizer for TinyClassifier" in err


def test_recipe_optimizer_and_schedule_from_the_command_line(tmp_path):
    config = str(ROOT / "recipes/vision/digits_noisy.yaml")
    run = ["fit", "--config", config, "--trainer.max_steps", "1", "--trainer.limit_val_batches"]
    run += ["1", *cli_output_args(tmp_path)]
    default = build_cli(run)
    (default_optimizer,) = default.trainer.optimizers
    assert not default.trainer.lr_scheduler_configs
    cli = build_cli(
        [
            *run,
            "--optimizer",
            "SGD",
            "--optimizer.lr",
            "0.05",
            "--optimizer.momentum",
            "0.9",
            "--lr_scheduler",
            "StepLR",
            "--lr_scheduler.step_size",
            "3",
        ]
    )
    (optimizer,) = cli.trainer.optimizers
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.param_groups[0]["lr"] == 0.05 and optimizer.param_groups[0]["momentum"] == 0.9
    (config_,) = cli.trainer.lr_scheduler_configs
    assert type(config_.scheduler) is torch.optim.lr_scheduler.StepLR
    assert config_.scheduler.step_size == 3
    # The same parameters are optimised either way, the recipe's own optimizer differs.
    assert type(default_optimizer) is not torch.optim.SGD
    n_default = sum(p.numel() for g in default_optimizer.param_groups for p in g["params"])
    assert n_default == sum(p.numel() for g in optimizer.param_groups for p in g["params"])


@pytest.mark.parametrize("config", BASES, ids=[_rel(c) for c in BASES])
def test_every_recipe_takes_its_optimizer_from_the_command_line(config):
    cli = build_cli(
        ["--config", str(config), "--optimizer", "SGD", "--optimizer.lr", "0.125"], run=False
    )
    assert isinstance(cli.model, OptimizerMixin), type(cli.model).__name__
    assert cli.model._optimizer_init == {"class_path": "torch.optim.SGD", "init_args": ANY}
    assert cli.model._optimizer_init["init_args"]["lr"] == 0.125
