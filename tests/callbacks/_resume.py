"""Test helpers for exact mid-epoch resume: a resumable loader, a recorder and an in-memory logger.

`ResumableLoader` serves batch `i` of epoch `e` as a pure function of `(e, i)` (a rotation of a
fixed list of base batches, deep-copied so that callbacks may write into a batch in place) and
implements `state_dict`/`load_state_dict` with the epoch and the number of batches consumed.
Lightning saves the state of such a loader with the fit loop's checkpoint and restores it
before it calls `iter()` again (`_FitLoop._load_combined_loader_states`).

It has a length on purpose: Lightning's prefetching fetcher draws one batch ahead only for loaders
without a length (`_PrefetchDataFetcher.__iter__` skips the prefetch when `length` is known), so
here "consumed" counts exactly the batches the loop has taken, and a checkpoint saved in
`on_train_batch_end` of batch `k` holds `consumed = k + 1`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger


class ResumableLoader:
    """Batch `i` of epoch `e` is `base[(i + e) % len(base)]`, deep-copied; resumable mid-epoch."""

    def __init__(self, base: Sequence[Any]) -> None:
        self.base = list(base)
        self.epoch = 0
        self.consumed = 0

    def __len__(self) -> int:
        return len(self.base)

    def batch(self, epoch: int, index: int) -> Any:
        return copy.deepcopy(self.base[(index + epoch) % len(self.base)])

    def __iter__(self) -> Iterator[Any]:
        # A generator: Lightning may call iter() more than once before it draws; the roll-over to
        # the next epoch happens at the first draw of the new iterator.
        if self.consumed >= len(self.base):
            self.epoch, self.consumed = self.epoch + 1, 0
        while self.consumed < len(self.base):
            index = self.consumed
            self.consumed += 1
            yield self.batch(self.epoch, index)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


class BatchRecorder(Callback):
    """Records `(global_step, epoch, batch_idx, batch)` after every training batch.

    Placed after the behaviour callback, so the recorded batch includes what the behaviour wrote
    into it in place (masks, resampled positives).
    """

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int, Any]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        self.seen.append((step, trainer.current_epoch, batch_idx, copy.deepcopy(batch)))


class MemoryLogger(Logger):
    """Keeps every `log_metrics` call as `(step, {name: float})`."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {k: float(v.item() if isinstance(v, torch.Tensor) else v) for k, v in metrics.items()}
        self.rows.append((-1 if step is None else int(step), row))


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact recursive equality of nested dicts/lists/tuples of tensors and plain values."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a)} != {set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
