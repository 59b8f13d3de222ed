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

`save_config_kwargs={"overwrite": True}` lets a second run reuse the same log directory.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

from lightning_losses.mixins.optimizers import OptimizerMixin

__all__ = ["SUBCOMMANDS", "LossesCLI", "build_cli", "main"]

SUBCOMMANDS = ("fit", "validate", "test")
TRACEBACK_ENV = "LIGHTNING_LOSSES_TRACEBACK"


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
            if not self.one_line_errors or os.environ.get(TRACEBACK_ENV):
                raise
            print(
                f"lightning-losses: error: {_one_line(_root_cause(err))} "
                f"(set {TRACEBACK_ENV}=1 for the traceback)",
                file=sys.stderr,
            )
            raise SystemExit(2) from None


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
