"""`OptimizerMixin`: a recipe's own optimizer and schedule, replaceable from LightningCLI.

LightningCLI users expect `--optimizer AdamW --optimizer.lr 1e-3 --lr_scheduler CosineAnnealingLR
--lr_scheduler.T_max 100` to work on any module. LightningCLI's own mechanism builds the optimizer
when the command line is parsed, on `model.parameters()` as they are then, and replaces the
module's `configure_optimizers`. That loses what a recipe knows (parameter groups without weight
decay, its learning-rate schedule) and builds the optimizer before a strategy such as FSDP2 has
sharded the parameters. A module with this mixin instead *receives* the command-line choice
(`set_optimizer_config`, called by the `lightning-losses` command) and builds it lazily, inside
its own `configure_optimizers`, on its own parameter groups:

- no `--optimizer` / `--lr_scheduler`: the recipe's defaults (`default_optimizer`,
  `default_lr_scheduler`), exactly as in Python;
- `--optimizer X`: `X` on `optimizer_param_groups()` (per-group settings such as
  `weight_decay=0.0` are kept), with the recipe's default schedule applied to it;
- `--lr_scheduler Y`: `Y` on the optimizer (stepped once per epoch, as LightningCLI does;
  `ReduceLROnPlateau` monitors the metric it names), replacing the default schedule.

Example:
    >>> import torch
    >>> from lightning.pytorch import LightningModule
    >>> from lightning_losses.mixins.optimizers import OptimizerMixin
    >>> class Net(OptimizerMixin, LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.layer = torch.nn.Linear(2, 1)
    ...     def default_optimizer(self, params):
    ...         return torch.optim.AdamW(params, lr=1e-3)
    >>> net = Net()
    >>> type(net.configure_optimizers()).__name__
    'AdamW'
    >>> net.set_optimizer_config({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}})
    >>> net.configure_optimizers().param_groups[0]["lr"]
    0.1
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.optim import Optimizer

__all__ = ["OptimizerMixin"]

ParamsT = Iterable[nn.Parameter] | Iterable[dict[str, Any]]


def _check_init(name: str, init: Any) -> dict[str, Any] | None:
    if init is None:
        return None
    if not isinstance(init, Mapping) or "class_path" not in init:
        raise TypeError(
            f"{name} must be a LightningCLI class config {{'class_path': ..., 'init_args': ...}} "
            f"or None, got {init!r}"
        )
    return dict(init)


def _instantiate(args: Any, init: dict[str, Any]) -> Any:
    # Imported only when a config is given: LightningCLI pulls in jsonargparse, which the
    # recipes' default path (and `import lightning_losses`) does not need.
    from lightning.pytorch.cli import instantiate_class

    return instantiate_class(args, init)


def _forget_early_train_loader(loop: Any) -> None:
    """Make Lightning set the training loader up again, after the checkpoint is restored.

    A schedule that reads `trainer.estimated_stepping_batches` in `configure_optimizers` (with
    `max_epochs` set) makes Lightning build the training loader before it restores the loop
    state; the loop then keeps that loader and never hands it its saved position, so a run
    resumed mid-epoch replays the epoch from its start (Lightning issue #20550). Dropping the
    early loader costs one more `train_dataloader()` call.
    """
    if loop._data_fetcher is not None:
        loop._data_fetcher.teardown()
        loop._data_fetcher = None
    loop._combined_loader = None


class OptimizerMixin:
    """Mixin for a LightningModule whose optimizer and schedule LightningCLI may replace.

    A subclass implements `default_optimizer` (and optionally `default_lr_scheduler` and
    `optimizer_param_groups`) instead of `configure_optimizers`.
    """

    _optimizer_init: dict[str, Any] | None = None
    _lr_scheduler_init: dict[str, Any] | None = None

    if TYPE_CHECKING:  # provided by the LightningModule this class is mixed into

        def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def set_optimizer_config(
        self,
        optimizer: Mapping[str, Any] | None = None,
        lr_scheduler: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the recipe's optimizer and/or schedule by LightningCLI class configs.

        Args:
            optimizer: `{"class_path": "torch.optim.SGD", "init_args": {...}}` or `None` (the
                recipe's `default_optimizer`).
            lr_scheduler: a scheduler class config, or `None` (the recipe's
                `default_lr_scheduler`, applied to whichever optimizer is used).

        Raises:
            TypeError: a config that is neither `None` nor a mapping with a `class_path`.
        """
        self._optimizer_init = _check_init("optimizer", optimizer)
        self._lr_scheduler_init = _check_init("lr_scheduler", lr_scheduler)

    def optimizer_param_groups(self) -> ParamsT:
        """The parameters (or parameter groups) to optimise: every trainable parameter."""
        return [p for p in self.parameters() if p.requires_grad]

    def default_optimizer(self, params: ParamsT) -> Optimizer:
        """The recipe's optimizer on `params` (what runs without `--optimizer`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement default_optimizer")

    def default_lr_scheduler(self, optimizer: Optimizer) -> dict[str, Any] | None:
        """The recipe's schedule as a Lightning `lr_scheduler` config dict, or `None`."""
        return None

    def configure_optimizers(self) -> Any:
        """The optimizer (and schedule): the recipe's defaults or the configured replacements."""
        loop = getattr(getattr(self, "_trainer", None), "fit_loop", None)
        loaded_before = getattr(loop, "_combined_loader", None) is not None
        try:
            return self._build_optimizers()
        finally:
            if loop is not None and not loaded_before and loop._combined_loader is not None:
                _forget_early_train_loader(loop)

    def _build_optimizers(self) -> Any:
        params = self.optimizer_param_groups()
        if self._optimizer_init is None:
            optimizer = self.default_optimizer(params)
        else:
            optimizer = _instantiate(params, self._optimizer_init)
        if self._lr_scheduler_init is not None:
            from lightning.pytorch.cli import LightningCLI

            scheduler = _instantiate(optimizer, self._lr_scheduler_init)
            # LightningCLI's own return value (a ReduceLROnPlateau gets its `monitor`).
            return LightningCLI.configure_optimizers(self, optimizer, scheduler)  # type: ignore[arg-type]
        default = self.default_lr_scheduler(optimizer)
        if default is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": default}
