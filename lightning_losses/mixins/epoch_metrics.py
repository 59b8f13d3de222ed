"""Lightning's running epoch means, carried through a checkpoint so a mid-epoch resume keeps them.

`self.log(name, value, on_epoch=True)` in training accumulates `value * batch_size` and the batch
sizes (or a running sum, max or min) in the training loop's result collection, and logs
`name_epoch` from them at the end of the epoch. Lightning (2.x) does not checkpoint that
collection, so after a mid-epoch resume the epoch values of the interrupted epoch would cover
only the resumed batches.
[EpochMetricsMixin][lightning_losses.mixins.epoch_metrics.EpochMetricsMixin] (a base of
[LossMixin][lightning_losses.mixins.LossMixin], so of every recipe) writes the accumulators
of the running epoch into the checkpoint and merges them back before the first resumed batch
logs anything, so the resumed run logs the uninterrupted run's values:

- **what**: every tensor entry logged in the running training epoch (its sums, batch-size total
  and last step value, which Lightning re-sends on later steps), not the values logged in
  `on_train_epoch_end` (their owner computes them from its own state); entries of Lightning's
  `torchmetrics.Metric` logging (`self.log(name, metric)`) keep their state in the metric, which
  is checkpointed with the weights only if its states are persistent (`metric.persistent(True)`);
- **when**: at `on_save_checkpoint` (the running epoch's collection, or, after `fit` stopped in the
  middle of an epoch at `max_steps`, the snapshot taken at that epoch's `on_train_epoch_end`,
  before Lightning resets it), restored at the first `on_train_batch_start` of a run that resumes
  inside an epoch (`batch_idx > 0`); a run resumed at an epoch boundary ignores them;
- **DDP**: the accumulators are per rank (they are reduced at the end of the epoch), so every
  rank's are gathered into the checkpoint (one `all_gather_object`) and each rank takes its own.

The collection is private Lightning API (`trainer.fit_loop.epoch_loop._results`, entries
`_ResultMetric` with a `_Metadata`); tests/recipes/test_resume_mid_epoch.py pins it.

Example:
    >>> from lightning.pytorch import LightningModule
    >>> from lightning_losses.mixins.epoch_metrics import EpochMetricsMixin
    >>> class Net(EpochMetricsMixin, LightningModule): ...
    >>> checkpoint = {}
    >>> Net().on_save_checkpoint(checkpoint)  # no Trainer: nothing is running
    >>> checkpoint
    {}
"""

from __future__ import annotations

import builtins
import warnings
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["EpochMetricsMixin", "epoch_accumulators", "restore_epoch_accumulators"]

CHECKPOINT_KEY = "epoch_metric_accumulators"
"""The checkpoint entry: `{"ranks": [accumulators of rank 0, of rank 1, ...]}`."""

_PENDING = "_epoch_accumulators_to_restore"
_CUT = "_epoch_accumulators_at_cut"
_META_FIELDS = ("fx", "name", "prog_bar", "logger", "on_step", "on_epoch", "enable_graph")
_META_OPTIONAL = ("add_dataloader_idx", "dataloader_idx", "metric_attribute")


def _training_results(trainer: Any) -> Any:
    return getattr(
        getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None), "_results", None
    )


def _cpu(value: Any) -> Any:
    return value.detach().cpu().clone() if isinstance(value, torch.Tensor) else None


def epoch_accumulators(trainer: Any) -> dict[str, dict[str, Any]]:
    """The tensor accumulators of the training epoch now running, by Lightning's result key.

    Only plain values (tensors, str, numbers, `None`): a checkpoint loaded with
    `weights_only=True` reads them.

    Args:
        trainer: the `Trainer` (or `None`: no accumulators).

    Returns:
        `{key: {metadata..., "value", "cumulated_batch_size", "forward_cache", "updates"}}` for
        every tensor entry logged since the epoch started (empty when none, or no Trainer).
    """
    results = _training_results(trainer)
    if results is None:
        return {}
    saved: dict[str, dict[str, Any]] = {}
    for key, metric in results.items():
        meta = metric.meta
        # Left out: an epoch-end value (logged once, from its owner's own checkpointed state)
        # and an entry with a process group (which a checkpoint cannot hold).
        if metric.has_reset or not metric.is_tensor or meta.fx == "on_train_epoch_end":
            continue
        if meta.sync.group is not None:
            continue
        reduce_fx = meta.reduce_fx
        saved[key] = {
            **{name: getattr(meta, name) for name in _META_FIELDS + _META_OPTIONAL},
            "reduce_fx": reduce_fx.__name__,
            "builtin_reduce_fx": reduce_fx in (builtins.sum, builtins.max, builtins.min),
            "sync_dist": meta.sync.should,
            "rank_zero_only": meta.sync.rank_zero_only,
            "value": _cpu(metric.value),
            "cumulated_batch_size": _cpu(getattr(metric, "cumulated_batch_size", None)),
            "forward_cache": _cpu(metric._forward_cache),
            "updates": int(getattr(metric, "_update_count", 1)),
        }
    return saved


def _metadata(entry: dict[str, Any], trainer: Any) -> Any:
    # The metadata `self.log` builds for the same call, so logging the name again matches it.
    from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _Sync

    name = entry["reduce_fx"]
    reduce_fx = getattr(builtins if entry["builtin_reduce_fx"] else torch, name)
    meta = _Metadata(**{k: entry[k] for k in _META_FIELDS + _META_OPTIONAL}, reduce_fx=reduce_fx)
    meta.sync = _Sync(
        _should=entry["sync_dist"],
        fn=trainer.strategy.reduce,
        rank_zero_only=entry["rank_zero_only"],
    )
    return meta


def restore_epoch_accumulators(trainer: Any, saved: dict[str, dict[str, Any]]) -> None:
    """Merge `epoch_accumulators` output into the running training epoch's result collection.

    An entry already logged in this epoch (e.g. by a callback's `on_train_batch_start` of the
    first resumed batch) is combined with the saved one (sums add, max/min reduce); any other is
    re-created. Lightning's reset of a hook's entries at the first batch of an epoch is switched
    off for the rest of this batch, as in the uninterrupted run.

    Args:
        trainer: the fitting `Trainer`.
        saved: what `epoch_accumulators` returned in the interrupted run (this rank's).
    """
    from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric

    results = _training_results(trainer)
    if results is None:
        return
    device = trainer.strategy.root_device
    for key, entry in saved.items():
        meta = _metadata(entry, trainer)
        value = entry["value"].to(device)
        cumulated = entry["cumulated_batch_size"]
        live = results.get(key)
        if live is not None and not live.has_reset:
            if live.meta != meta:
                continue  # logged again with other arguments (Lightning refuses that anyway)
            # Logged again before this hook: add the saved part (a step-only value is the live one).
            if meta.on_epoch and meta.is_mean_reduction:
                live.value = live.value + value
                live.cumulated_batch_size = live.cumulated_batch_size + cumulated.to(device)
            elif meta.on_epoch and meta.is_sum_reduction:
                live.value = live.value + value
            elif meta.on_epoch:  # max or min
                live.value = meta.reduce_fx(live.value, value)
            live._update_count += entry["updates"]
            continue
        metric = _ResultMetric(meta, is_tensor=True)
        metric.value = value
        if cumulated is not None:
            metric.cumulated_batch_size = cumulated
        metric._forward_cache = entry["forward_cache"]
        metric._update_count = entry["updates"]
        metric.has_reset = False
        results[key] = metric.to(device)
    trainer._logger_connector._first_loop_iter = False


def _gather(local: dict[str, Any]) -> list[dict[str, Any]]:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return gathered


def _rank_entry(ranks: list[dict[str, Any]]) -> dict[str, Any] | None:
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if len(ranks) == world_size:
        return ranks[rank]
    warnings.warn(
        f"the checkpoint holds the epoch-metric accumulators of {len(ranks)} rank(s) but this "
        f"run has {world_size}: they are not restored, so the epoch values logged at the end of "
        "the resumed epoch cover only the batches trained after the resume",
        stacklevel=3,
    )
    return None


class EpochMetricsMixin:
    """LightningModule mixin: the running epoch's logged means survive a mid-epoch checkpoint.

    A base of [LossMixin][lightning_losses.mixins.LossMixin]. A subclass that overrides
    `on_save_checkpoint`, `on_load_checkpoint`, `on_train_batch_start` or `on_train_epoch_end`
    calls `super()` first (module docstring for what is saved and when it is restored).
    """

    def _parent_hook(self, name: str) -> Any:
        # Cooperative: the hook of the next class in the MRO (LightningModule's, or another
        # mixin's), so mixing this class in never hides someone else's hook.
        return getattr(super(), name, None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add every rank's accumulators of the running epoch (a collective under DDP).

        Args:
            checkpoint: the checkpoint dict Lightning is writing.
        """
        parent = self._parent_hook("on_save_checkpoint")
        if parent is not None:
            parent(checkpoint)
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            return
        local = epoch_accumulators(trainer) or self.__dict__.get(_CUT, {})
        checkpoint[CHECKPOINT_KEY] = {"ranks": _gather(local)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the saved accumulators for the first resumed batch.

        Args:
            checkpoint: the loaded checkpoint dict.
        """
        parent = self._parent_hook("on_load_checkpoint")
        if parent is not None:
            parent(checkpoint)
        saved = checkpoint.get(CHECKPOINT_KEY)
        self.__dict__[_PENDING] = None if saved is None else saved["ranks"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None:
        """Restore the saved accumulators if this run resumed inside an epoch.

        Args:
            batch: the batch.
            batch_idx: its index in the epoch; above 0 on the first batch of a mid-epoch resume.

        Returns:
            What the next class's hook returns (`-1` skips the rest of the epoch), else `None`.
        """
        self.__dict__.pop(_CUT, None)
        pending = self.__dict__.pop(_PENDING, None)
        if pending and batch_idx > 0:
            mine = _rank_entry(pending)
            if mine:
                restore_epoch_accumulators(getattr(self, "_trainer", None), mine)
        parent = self._parent_hook("on_train_batch_start")
        return None if parent is None else parent(batch, batch_idx)

    def on_train_epoch_end(self) -> None:
        """Keep the accumulators of an epoch cut short (`max_steps`): Lightning resets them next."""
        parent = self._parent_hook("on_train_epoch_end")
        if parent is not None:
            parent()
        trainer = getattr(self, "_trainer", None)
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        if loop is not None and not loop.batch_progress.is_last_batch:
            self.__dict__[_CUT] = epoch_accumulators(trainer)
        else:
            self.__dict__.pop(_CUT, None)
