"""The ``lightning-losses`` command: LightningCLI in subclass mode.

Any LightningModule / LightningDataModule is selected by ``class_path`` in YAML or on the command
line, so the recipes in ``recipes/`` and users' own modules run the same way::

    lightning-losses fit --config recipes/vision/digits_noisy.yaml
    lightning-losses fit --config recipes/vision/digits_noisy.yaml --model.criterion gce \\
        --trainer.devices 2 --trainer.strategy ddp

``save_config_kwargs={"overwrite": True}`` lets a second run reuse the same log directory.
"""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI

__all__ = ["build_cli", "main"]


def build_cli(args: list[str] | None = None, *, run: bool = True, **kwargs) -> LightningCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (used by tests)."""
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        **kwargs,
    )


def main(args: list[str] | None = None) -> None:
    """Console-script entry point."""
    build_cli(args)


if __name__ == "__main__":
    main()
