"""The CLI as a new user meets it: help, version, overlays, setup errors, unequal hparams."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import lightning_losses
from lightning_losses.recipes import cli as cli_module
from lightning_losses.recipes.cli import build_cli, list_recipes, overlay_bases, recipes_dir

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = textwrap.dedent(
    '''
    """A user's model and data whose hyperparameters share a name, and whose data can fail."""
    import os

    import torch
    from lightning.pytorch import LightningDataModule, LightningModule
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_losses.mixins import LossMixin


    class Model(LossMixin, LightningModule):
        def __init__(self, width: int = 8, criterion: str = "cross_entropy", fail: bool = False):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Linear(4, 3)
            self.fail = fail
            self.configure_criterion(criterion)

        def training_step(self, batch, batch_idx):
            if self.fail:
                raise RuntimeError("a bug while training")
            x, y = batch
            return self.compute_loss(self.net(x), y).to_dict()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)


    class Data(LightningDataModule):
        def __init__(self, width: int = 8, path: str | None = None):
            super().__init__()
            self.save_hyperparameters()
            self.path = path

        def setup(self, stage):
            if self.path is not None and not os.path.exists(self.path):
                raise FileNotFoundError(f"no such data file: {self.path}")

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            x, y = torch.randn(8, 4, generator=g), torch.randint(3, (8,), generator=g)
            return DataLoader(TensorDataset(x, y), batch_size=4)
    '''
)


@pytest.fixture
def user_fit(tmp_path, monkeypatch):
    (tmp_path / "newcomer_models.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "newcomer_models", raising=False)

    def fit(*extra: str, one_line_errors: bool = True):
        args = ["fit", "--model", "newcomer_models.Model", "--data", "newcomer_models.Data"]
        args += ["--trainer.max_steps", "1", "--trainer.enable_checkpointing", "false"]
        args += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary"]
        args += ["false", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
        args += ["--trainer.logger.save_dir", str(tmp_path), *extra]
        return build_cli(args, one_line_errors=one_line_errors)

    yield fit
    monkeypatch.delitem(sys.modules, "newcomer_models", raising=False)


def test_unequal_model_and_data_hparams_of_one_name_train(user_fit, tmp_path):
    # Lightning refuses to merge {"width": 8} and {"width": 5} into one logger dict.
    cli = user_fit("--model.width", "8", "--data.width", "5")
    assert cli.trainer.global_step == 1
    logged = yaml.safe_load(Path(cli.trainer.logger.log_dir, "hparams.yaml").read_text())
    assert logged["width"] == 8 and logged["data/width"] == 5
    assert logged["data/path"] is None and "criterion" in logged
    assert not any(k.startswith("data/_") for k in logged)  # LightningCLI's internal keys


def test_equal_hparams_are_merged_as_lightning_does(user_fit):
    cli = user_fit("--model.width", "5", "--data.width", "5")
    logged = yaml.safe_load(Path(cli.trainer.logger.log_dir, "hparams.yaml").read_text())
    assert logged["width"] == 5 and "path" in logged and not any("/" in k for k in logged)


def test_grammar_llama_with_a_smaller_data_vocabulary(tmp_path, monkeypatch):
    # The YAML's own comment: the model's vocab_size must be >= the data's (512 >= 300).
    monkeypatch.chdir(ROOT)
    args = ["fit", "--config", "recipes/nlp/grammar_llama.yaml", "--data.vocab_size", "300"]
    args += ["--model.hidden_size", "32", "--model.num_layers", "1", "--model.num_heads", "2"]
    args += ["--data.num_docs", "200", "--data.block_size", "32", "--data.batch_size", "4"]
    args += ["--data.tokenizer_dir", str(tmp_path / "tok"), "--trainer.max_steps", "1"]
    args += ["--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false"]
    args += ["--trainer.logger.init_args.save_dir", str(tmp_path)]
    args += ["--trainer.default_root_dir", str(tmp_path)]
    cli = build_cli(args)
    assert cli.trainer.global_step == 1
    logged = yaml.safe_load(Path(cli.trainer.logger.log_dir, "hparams.yaml").read_text())
    assert (logged["vocab_size"], logged["data/vocab_size"]) == (512, 300)


def test_an_error_while_the_data_is_set_up_is_one_line(user_fit, capsys):
    with pytest.raises(SystemExit) as exc:
        user_fit("--data.path", "no_such_file.csv")
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "lightning-losses: error: FileNotFoundError: no such data file: no_such_file.csv "
        "(set LIGHTNING_LOSSES_TRACEBACK=1 for the traceback)"
    ]
    # In Python, and with the variable set, the exception itself propagates.
    with pytest.raises(FileNotFoundError, match=r"no_such_file\.csv"):
        user_fit("--data.path", "no_such_file.csv", one_line_errors=False)


def test_traceback_variable_keeps_the_setup_traceback(user_fit, monkeypatch):
    monkeypatch.setenv(cli_module.TRACEBACK_ENV, "1")
    with pytest.raises(FileNotFoundError, match=r"no_such_file\.csv"):
        user_fit("--data.path", "no_such_file.csv")


def test_an_error_while_training_keeps_its_traceback(user_fit):
    # A bug in a training step is not a configuration mistake: no one-line summary.
    with pytest.raises(RuntimeError, match="a bug while training"):
        user_fit("--model.fail", "true")


def test_a_bad_block_size_at_setup_is_one_line(tmp_path, capsys):
    args = ["fit", "--config", str(ROOT / "recipes/nlp/grammar_llama.yaml")]
    args += ["--model.hidden_size", "32", "--model.num_layers", "1", "--model.num_heads", "2"]
    args += ["--data.num_docs", "200", "--data.vocab_size", "300", "--data.block_size", "64"]
    args += ["--model.max_position_embeddings", "32", "--data.tokenizer_dir", str(tmp_path)]
    args += ["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exc:
        build_cli(args, one_line_errors=True)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("lightning-losses: error: ValueError: --data.block_size 64 exceeds")


def test_an_overlay_alone_names_its_base(capsys):
    overlay = "recipes/recsys/pld.yaml"
    with pytest.raises(SystemExit) as exc:
        build_cli(["fit", "--config", str(ROOT / overlay)], one_line_errors=True)
    assert exc.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "pld.yaml is an overlay" in line and "mf_bpr.yaml, lightgcn_bpr.yaml" in line
    assert f"--config {ROOT / 'recipes/recsys/mf_bpr.yaml'} --config {ROOT / overlay}" in line
    with pytest.raises(ValueError, match="is an overlay"):
        build_cli(["fit", f"--config={ROOT / overlay}"])
    # Several overlays without a base are refused too; a base plus an overlay is not.
    two = ["--config", str(ROOT / overlay), "--config", str(ROOT / overlay)]
    with pytest.raises(ValueError, match="is an overlay"):
        build_cli(["fit", *two])
    assert (
        cli_module._lone_overlay_message(
            ["fit", "--config", str(ROOT / "recipes/recsys/mf_bpr.yaml"), "--config", overlay]
        )
        is None
    )


def test_help_describes_the_tool_and_lists_the_recipes(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exc:
        build_cli(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Lightning Trainer command line tool" not in out
    assert "catalog of losses" in out and "--version" in out
    assert "recipes (in recipes/" in out
    assert "  recsys/pld.yaml   overlay on: mf_bpr.yaml, lightgcn_bpr.yaml" in out
    for name in list_recipes():
        assert f"  {name}" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        build_cli(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"lightning-losses {lightning_losses.__version__}"


def test_recipes_come_from_one_function(tmp_path, monkeypatch):
    names = list_recipes()
    assert "nlp/grammar_llama.yaml" in names and "recsys/pld.yaml" in names
    assert names == sorted(
        p.relative_to(ROOT / "recipes").as_posix() for p in recipes_dir().rglob("*.yaml")
    )
    assert overlay_bases(ROOT / "recipes/recsys/pld.yaml") == ["mf_bpr.yaml", "lightgcn_bpr.yaml"]
    assert overlay_bases(ROOT / "recipes/recsys/mf_bpr.yaml") == []
    # A recipes/ folder in the working directory wins (a user's copy of the recipes).
    (tmp_path / "recipes" / "mine").mkdir(parents=True)
    (tmp_path / "recipes" / "mine" / "run.yaml").write_text("# mine\n")
    monkeypatch.chdir(tmp_path)
    assert list_recipes() == ["mine/run.yaml"]


def test_a_recipe_is_found_by_its_short_name_without_a_clone(tmp_path, monkeypatch):
    """The configs ship in the package: `--config vision/digits_noisy` works from any folder."""
    from lightning_losses.recipes.cli import _resolve_config_args, resolve_recipe

    monkeypatch.chdir(tmp_path)  # no recipes/ here: the package's own copy is used
    shipped = Path(cli_module.__file__).resolve().parent / "configs"
    found = resolve_recipe("vision/digits_noisy")
    assert found == shipped / "vision" / "digits_noisy.yaml"
    # A command copied from the docs (`recipes/...`) and the `.yaml` suffix resolve alike.
    assert resolve_recipe("recipes/vision/digits_noisy.yaml") == found
    assert resolve_recipe("vision/no_such_recipe") is None
    args = ["fit", "--config", "vision/digits_noisy", "-c=recsys/pld", "--config", "mine.yaml"]
    assert _resolve_config_args(args) == [
        "fit",
        "--config",
        str(found),
        f"-c={shipped / 'recsys' / 'pld.yaml'}",
        "--config",
        "mine.yaml",  # not a recipe: left for LightningCLI to report
    ]
    cli = build_cli(["--config", "vision/digits_noisy"], run=False)
    assert type(cli.model).__name__ == "ImageClassifier"


def test_the_repository_recipes_folder_is_the_shipped_one():
    root = Path(__file__).resolve().parents[2]
    shipped = root / "lightning_losses" / "recipes" / "configs"
    assert (root / "recipes").resolve() == shipped.resolve()
    assert sorted(p.name for p in shipped.rglob("*.yaml"))  # not empty
