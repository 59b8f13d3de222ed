"""The `lightning-losses` command: LightningCLI in subclass mode, subcommands fit / validate / test.

Any LightningModule / LightningDataModule is selected by `class_path` in YAML or on the command
line, so the recipes in `recipes/` and users' own modules run the same way:

```bash
lightning-losses fit --config recipes/vision/digits_noisy.yaml
lightning-losses fit --config recipes/vision/digits_noisy.yaml --model.criterion gce \\
    --trainer.devices 2 --trainer.strategy ddp
lightning-losses fit --model my_models.MyClassifier --data my_models.MyData   # ./my_models.py
```

- **Your own modules**: the command adds the current working directory to `sys.path` (as
  `python -m` does), so `class_path: my_models.MyClassifier` finds `./my_models.py`.
- **Overlays**: `--config` can be given more than once; later files override earlier ones. The
  recipes ship overlays such as `recipes/nlp/grammar_llama_reweighting.yaml` (first line
  `# overlay-for: grammar_llama.yaml`) that hold only what they add:
  `lightning-losses fit --config recipes/nlp/grammar_llama.yaml --config
  recipes/nlp/grammar_llama_reweighting.yaml`.
- **Errors**: a configuration that cannot be built (an unknown loss name, a bad
  hyperparameter, a missing data column) ends with one line naming the problem, not a
  traceback; set `LIGHTNING_LOSSES_TRACEBACK=1` for the full traceback.
- **Optimizer and schedule**: `--optimizer AdamW --optimizer.lr 1e-3` and `--lr_scheduler
  CosineAnnealingLR --lr_scheduler.T_max 100` (or `optimizer:` / `lr_scheduler:` in YAML) replace
  a recipe's own choice, which is the default. The recipes are
  [OptimizerMixin][lightning_losses.mixins.OptimizerMixin] modules: they build the configured
  optimizer lazily on their own parameter groups (so FSDP2 sharding and no-decay groups are kept),
  and keep their default schedule when only `--optimizer` is given. Your own modules get
  LightningCLI's standard behaviour.
- **Subcommands**: `fit`, `validate`, `test` (no `predict`: the recipes have no predict step).
- **Recipes**: `lightning-losses --help` lists the recipe configs (see `list_recipes`);
  `lightning-losses --version` prints the version. An overlay given without its base config is
  refused with a line naming the base(s) it goes on.
- **Errors while the data is prepared or set up** (a missing file, a wrong column name, a
  `block_size` the model cannot take, a missing extra) are one line too: the `prepare_data` /
  `setup` / `*_dataloader` hooks of the DataModule, of the model and of the callbacks.
- **Model and data hyperparameters of the same name** (`--model.vocab_size 512 --data.vocab_size
  300`) may differ: the logger then receives the DataModule's under a `data/` prefix (Lightning
  would refuse to merge them); `config.yaml` keeps both sections as given.

`save_config_kwargs={"overwrite": True}` lets a second run reuse the same log directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from torch import Tensor

from lightning_losses.mixins.optimizers import OptimizerMixin

__all__ = [
    "SUBCOMMANDS",
    "LossesCLI",
    "build_cli",
    "list_recipes",
    "main",
    "overlay_bases",
    "recipes_dir",
]

SUBCOMMANDS = ("fit", "validate", "test")
TRACEBACK_ENV = "LIGHTNING_LOSSES_TRACEBACK"
OVERLAY_TAG = "# overlay-for:"
"""First line of an overlay config, followed by the file names of the base configs it goes on."""
DESCRIPTION = """\
lightning-losses: train PyTorch Lightning modules with the lightning_losses catalog of losses
and behaviour callbacks. A LightningCLI: the model and the data (a recipe's or your own module,
found from the working directory) are chosen by class_path in a YAML config or on the command
line; `--config` can be given more than once (a base config, then overlays).
Your own module: lightning-losses fit --model my_models.MyModel --data my_models.MyData"""
# Where the recipe YAMLs are looked for, in order: the working directory (a checkout or a copy
# of the recipes), then next to the package (an editable install of the repository).
_RECIPE_DIRS: tuple[Callable[[], Path], ...] = (
    lambda: Path.cwd() / "recipes",
    # Shipped inside the package (the wheel's copy; `recipes/` in the repository links here).
    lambda: Path(__file__).resolve().parent / "configs",
)
# Lightning's functions that run the prepare/setup/dataloader hooks of the DataModule, the model
# and the callbacks: an error raised under them is the configuration's or the files' fault.
_SETUP_FRAMES = frozenset(
    {"prepare_data", "_call_setup_hook", "_call_configure_model", "_request_dataloader"}
)


def recipes_dir() -> Path | None:
    """The folder of the recipe configs (`recipes/` in the working directory or the repository).

    Returns:
        The first existing candidate folder, or `None`.
    """
    for candidate in _RECIPE_DIRS:
        path = candidate()
        if path.is_dir():
            return path
    return None


def overlay_bases(config: str | os.PathLike[str]) -> list[str]:
    """The base config file names an overlay config names on its first line (`[]`: a base).

    Args:
        config: a YAML config file.

    Returns:
        The names after `# overlay-for:`, or `[]` for a base config or an unreadable file.
    """
    try:
        with open(config, encoding="utf-8") as f:
            first = f.readline().strip()
    except OSError:
        return []
    return first[len(OVERLAY_TAG) :].split() if first.startswith(OVERLAY_TAG) else []


def resolve_recipe(name: str) -> Path | None:
    """The recipe config a short name means: `vision/digits_noisy` (or with `.yaml`).

    Looked up in the recipe folders (`recipes/` in the working directory, then the package's
    own copy), so a pip install needs no clone: `lightning-losses fit --config vision/digits_noisy`.

    Args:
        name: a path relative to a recipes folder, with or without `.yaml`.

    Returns:
        The config file, or `None` when no folder has it.
    """
    # Commands copied from the docs say `recipes/vision/...`: the prefix is the folder itself.
    names = {name, name.removeprefix("recipes/")}
    for candidate in _RECIPE_DIRS:
        root = candidate()
        for short in sorted(names):
            for path in (root / short, root / f"{short}.yaml"):
                if path.is_file():
                    return path
    return None


def _resolve_config_args(args: list[str]) -> list[str]:
    """`--config`/`-c` values that are not files but name a recipe become the recipe's path."""
    out = list(args)
    for i, arg in enumerate(out):
        option, sep, value = arg.partition("=")
        if option not in ("--config", "-c"):
            continue
        if sep:  # --config=NAME
            found = None if os.path.exists(value) else resolve_recipe(value)
            out[i] = f"{option}={found}" if found else arg
        elif i + 1 < len(out) and not os.path.exists(out[i + 1]):
            found = resolve_recipe(out[i + 1])
            out[i + 1] = str(found) if found else out[i + 1]
    return out


def list_recipes() -> list[str]:
    """The recipe configs, as paths relative to the recipes folder (`nlp/grammar_llama.yaml`).

    The one place the CLI's `--help` takes them from; empty when no recipes folder is found
    (see `recipes_dir`).
    """
    root = recipes_dir()
    if root is None:
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def _recipes_epilog() -> str:
    root = recipes_dir()
    names = list_recipes()
    if root is None or not names:
        return "recipes: none found."
    try:
        shown = root.relative_to(Path.cwd())
    except ValueError:
        shown = root
    lines = [f"recipes (in {shown}/; overlays go after a base config):"]
    for name in names:
        bases = overlay_bases(root / name)
        lines.append(f"  {name}" + (f"   overlay on: {', '.join(bases)}" if bases else ""))
    short = names[0].removesuffix(".yaml")
    lines.append(f"example: lightning-losses fit --config {short}   (a recipe by its name)")
    return "\n".join(lines)


class _HelpFormatter(DefaultHelpFormatter):
    """Keeps the line breaks of the description and the recipe list (argparse refills them)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return argparse.RawDescriptionHelpFormatter._fill_text(self, text, width, indent)


def _config_values(args: list[str]) -> list[str]:
    """The values of every `--config` / `-c` in a command line."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith("--config="):
            found.append(arg.split("=", 1)[1])
    return found


def _lone_overlay_message(args: list[str]) -> str | None:
    """A message when every `--config` is an overlay and nothing else names a model."""
    configs = _config_values(args)
    if not configs or any(a == "--model" or a.startswith("--model=") for a in args):
        return None
    bases = [overlay_bases(c) for c in configs]
    if not all(bases):
        return None
    overlay, names = configs[0], bases[0]
    folder = os.path.dirname(overlay)
    first = os.path.join(folder, names[0]) if names else "BASE.yaml"
    return (
        f"{overlay} is an overlay: it only adds to a base config ({', '.join(names)}); give the "
        f"base first: lightning-losses fit --config {first} --config {overlay}"
    )


class _DataHyperparameters(Callback):
    """Logs the DataModule's hyperparameters under `data/` when they clash with the model's."""

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.data_hparams = hparams

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            logger.log_hyperparams(self.data_hparams)


def _differ(a: Any, b: Any) -> bool:
    """Lightning's test for two hparams values that cannot share one logger key."""
    if type(a) is not type(b):
        return True
    if isinstance(a, Tensor):
        return a is not b
    try:
        return bool(a != b)
    except Exception:  # e.g. containers of tensors: no single truth value
        return True


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a `raise ... from` chain (jsonargparse wraps the user's)."""
    seen = {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = err.__cause__
        seen.add(id(err))
    return err


def _class_config(value: Any) -> dict[str, Any] | None:
    """A parsed `--optimizer` / `--lr_scheduler` group as a plain dict, `None` when not given."""
    if not value:
        return None
    return value.as_dict() if hasattr(value, "as_dict") else dict(value)


def _one_line(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    first = " ".join(str(message).split())  # one line, whitespace collapsed
    return f"{type(err).__name__}: {first}"


class LossesCLI(LightningCLI):
    """`LightningCLI` with the subcommands the recipes support and one-line build errors.

    Args:
        args: the command-line arguments (default `sys.argv[1:]`).
        one_line_errors: turn an exception raised while building the configured classes
            (model, data, callbacks, trainer) into one `error:` line on stderr and exit
            status 2; `False` (the default, for use in Python) re-raises it unchanged.
        kwargs: passed to `LightningCLI`.
    """

    def __init__(self, *args: Any, one_line_errors: bool = False, **kwargs: Any) -> None:
        self.one_line_errors = one_line_errors
        super().__init__(*args, **kwargs)

    def _fail(self, err: BaseException) -> None:
        """Re-raise `err`, or print it as one error line and exit 2 (`one_line_errors`)."""
        if not self.one_line_errors or os.environ.get(TRACEBACK_ENV):
            raise err
        print(
            f"lightning-losses: error: {_one_line(_root_cause(err))} "
            f"(set {TRACEBACK_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        """LightningCLI's parser with a description, the recipe list and `--version`."""
        main_kwargs = {
            "description": DESCRIPTION,
            "epilog": _recipes_epilog(),
            "formatter_class": _HelpFormatter,
            **main_kwargs,
        }
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        from lightning_losses import __version__

        self.parser.add_argument(
            "--version", action="version", version=f"lightning-losses {__version__}"
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Refuse an overlay given alone (naming its base) before LightningCLI parses."""
        argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        message = _lone_overlay_message([str(a) for a in argv])
        if message is not None:
            self._fail(ValueError(message))
        super().parse_arguments(parser, args)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """`fit`, `validate` and `test` with LightningCLI's skip sets (no `predict`)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k in SUBCOMMANDS}

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        # LightningCLI's hook for `--optimizer` / `--lr_scheduler` (private, covered by the CLI
        # tests): it builds the optimizer eagerly on `model.parameters()` and replaces
        # `configure_optimizers`. An `OptimizerMixin` module receives the configs instead and
        # builds them itself, lazily, on its own parameter groups.
        optimizer = _class_config(self._get(self.config_init, "optimizer"))
        lr_scheduler = _class_config(self._get(self.config_init, "lr_scheduler"))
        if isinstance(self.model, OptimizerMixin):
            self.model.set_optimizer_config(optimizer, lr_scheduler)
            return
        if lr_scheduler is not None and optimizer is None:
            # LightningCLI would silently drop the schedule.
            raise ValueError(
                f"--lr_scheduler needs --optimizer for {type(self.model).__name__}, which is not "
                "an OptimizerMixin: LightningCLI replaces configure_optimizers only when an "
                "optimizer is given"
            )
        super()._add_configure_optimizers_method_to_model(subcommand)

    def instantiate_classes(self) -> None:
        """Build the classes; a failure becomes one error line when `one_line_errors`."""
        try:
            super().instantiate_classes()
        except Exception as err:
            self._fail(err)
        self._separate_clashing_hparams()

    def _separate_clashing_hparams(self) -> None:
        # Lightning merges model and DataModule hparams into one flat dict for the logger and
        # raises when a key has two values, though unequal values can be legal (the model's
        # vocab_size >= the data's). Then the DataModule's are logged under `data/` instead.
        model, data = self.model, self.datamodule
        if data is None or not (model._log_hyperparams and data._log_hyperparams):
            return
        m_hp, d_hp = model.hparams_initial, data.hparams_initial
        clash = [
            k for k in m_hp.keys() & d_hp.keys() if k != "_class_path" and _differ(m_hp[k], d_hp[k])
        ]
        if not clash:
            return
        data._log_hyperparams = False
        prefixed = {f"data/{k}": v for k, v in d_hp.items() if not k.startswith("_")}
        # `Trainer.callbacks` is a property whose type stubs mypy does not see.
        getattr(self.trainer, "callbacks").append(_DataHyperparameters(prefixed))  # noqa: B009

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except Exception as err:
            if not _raised_in_setup(err):
                raise  # an error while training keeps its traceback
            self._fail(err)


def _raised_in_setup(err: BaseException) -> bool:
    """Whether `err` was raised while Lightning prepared or set up the data, model or callbacks.

    Read from the traceback's frames (Lightning's `prepare_data`, `_call_setup_hook`,
    `_call_configure_model` and `_request_dataloader`), so no hook is wrapped or replaced.
    """
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in _SETUP_FRAMES:
            return True
        tb = tb.tb_next
    return False


def build_cli(
    args: list[str] | None = None,
    *,
    run: bool = True,
    one_line_errors: bool = False,
    **kwargs: Any,
) -> LossesCLI:
    """Build (and by default run) the CLI.

    Args:
        args: replaces `sys.argv[1:]` (tests pass a list).
        run: run the subcommand; `False` only parses and instantiates (no subcommand then).
        one_line_errors: see [LossesCLI][lightning_losses.recipes.cli.LossesCLI].
        kwargs: passed to `LightningCLI`.

    Returns:
        The CLI object (`cli.model`, `cli.datamodule`, `cli.trainer`).
    """
    # A recipe named by its short name (`--config vision/digits_noisy`) becomes its file. From
    # the command line, sys.argv itself is rewritten: LightningCLI warns when given both.
    if args is None:
        sys.argv[1:] = _resolve_config_args(sys.argv[1:])
    else:
        args = _resolve_config_args(list(args))
    return LossesCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        one_line_errors=one_line_errors,
        **kwargs,
    )


def main(args: list[str] | None = None) -> None:
    """Console-script entry point: the working directory joins `sys.path`, errors are one line.

    Args:
        args: replaces `sys.argv[1:]`.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    build_cli(args, one_line_errors=True)


if __name__ == "__main__":
    main()
