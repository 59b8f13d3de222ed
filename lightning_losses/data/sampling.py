"""Training loaders that a run resumes exactly, at an epoch boundary or in the middle of an epoch.

Two parts:

- `EpochShuffleSampler`: epoch `e`'s order is a pure function of `seed + e`. A
  `DataLoader(shuffle=True, generator=g)` instead draws each permutation from the running state
  of `g`, which a resumed run does not have (it would replay epoch 0's order). Lightning calls
  `set_epoch` on samplers that define it at the start of every epoch (and wraps custom samplers in
  a `DistributedSamplerWrapper` under DDP, which forwards it).
- `ResumableLoader`: a `DataLoader` with `state_dict` / `load_state_dict`, which Lightning (>= 2.2)
  puts into the checkpoint's loop state and restores before training resumes. The state is the
  epoch of the running pass, the number of batches it has handed out, and every rank's random
  states ([gather_rng_states][lightning_losses.data.rng.gather_rng_states]); a resumed pass
  skips those batches (sampler indices only, no data loaded, in a single-process map-style
  loader) and restores the random states just before its first batch, so dropout continues as
  in the uninterrupted run.

Lightning fetches batches ahead of training only from loaders without a length; these loaders
have one, so the batches handed out are exactly the batches trained on when a checkpoint is
written. The position is counted per rank after the DDP sharding, and every rank steps the same
number of batches, so rank 0's count (the one Lightning saves) holds for every rank.

One Lightning trap is repaired here: when `fit` stops at `max_steps` in the middle of an epoch,
Lightning marks that epoch finished, so a checkpoint written afterwards
(`trainer.save_checkpoint`) resumes at the start of the *next* epoch. Given the `Trainer` (our
DataModules pass theirs), the loader recognises that state when it is restored and reopens the
epoch, giving the loop state a checkpoint written at that step by `ModelCheckpoint` has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from lightning_losses.data.rng import gather_rng_states, restore_rank_rng_states
from lightning_losses.validation import check_int

__all__ = [
    "EpochShuffleSampler",
    "ResumableLoader",
    "epoch_shuffled_loader",
    "eval_loader",
    "require_setup",
]

T = TypeVar("T")


class EpochShuffleSampler(Sampler[int]):
    """Random permutation of `range(num_samples)` that depends only on `seed` and the epoch.

    Args:
        num_samples: dataset size.
        seed: base seed; epoch `e` draws its permutation from seed `seed + e`.

    Raises:
        TypeError: `num_samples` or `seed` not an int.
        ValueError: a negative `num_samples`.

    Example:
        >>> s = EpochShuffleSampler(5, seed=0)
        >>> first = list(s); s.set_epoch(1); second = list(s); s.set_epoch(0)
        >>> first == list(s), first != second, sorted(second)
        (True, True, [0, 1, 2, 3, 4])
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = check_int("num_samples", num_samples, low=0)
        self.seed = check_int("seed", seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration yields (Lightning calls it).

        Args:
            epoch: the epoch index.
        """
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class ResumableLoader(DataLoader[T]):
    """A `DataLoader` whose position Lightning checkpoints and restores, mid-epoch included.

    The same arguments as `DataLoader`, plus `seed`. Its `generator` (a private one unless
    given) is re-seeded from `(seed, epoch)` at every pass, so the pass's base seed (worker
    seeds) does not depend on how many passes ran before, and iterating the loader never draws
    from the global torch generator (which would shift the dropout masks of a resumed run).

    The epoch of a pass is read when its first batch is requested (after Lightning's
    `set_epoch`): `sampler.epoch` (also under Lightning's `DistributedSamplerWrapper`); without
    one, `trainer.current_epoch` (handed to the dataset's `set_epoch` if it has one: an iterable
    dataset that draws per epoch), else `dataset.epoch`, else the number of passes so far.

    Args:
        dataset: the dataset, map-style or iterable.
        *args: positional `DataLoader` arguments.
        seed: base seed of the per-pass `generator`.
        trainer: the Lightning `Trainer` that fits on this loader (a DataModule passes
            `self.trainer`); lets a checkpoint written after `fit` stopped at `max_steps`
            mid-epoch resume in that epoch (module docstring). Optional.
        **kwargs: `DataLoader` keyword arguments (`batch_size`, `sampler`, `num_workers`, ...).

    Raises:
        TypeError: `seed` is not an int.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.arange(8))
        >>> loader = ResumableLoader(data, batch_size=2, sampler=EpochShuffleSampler(8))
        >>> it = iter(loader)
        >>> first_two = [next(it)[0].tolist() for _ in range(2)]
        >>> state = loader.state_dict()  # what Lightning writes into the checkpoint
        >>> state["epoch"], state["batches"]
        (0, 2)
        >>> rest = [b.tolist() for (b,) in it]
        >>> resumed = ResumableLoader(data, batch_size=2, sampler=EpochShuffleSampler(8))
        >>> resumed.load_state_dict(state)
        >>> [b.tolist() for (b,) in resumed] == rest
        True
    """

    def __init__(
        self, dataset: Dataset[T], *args: Any, seed: int = 0, trainer: Any = None, **kwargs: Any
    ) -> None:
        self.seed = check_int("seed", seed)
        self.trainer = trainer
        if kwargs.get("generator") is None:
            kwargs["generator"] = torch.Generator()
        super().__init__(dataset, *args, **kwargs)
        self._passes = 0  # passes started (the epoch when no sampler or dataset tells it)
        self._epoch: int | None = None  # epoch of the running (or last) pass
        self._batches = 0  # batches that pass has handed out
        self._exhausted = False
        self._pending: dict[str, Any] | None = None  # a loaded state, for the next pass

    def _pass_epoch(self) -> int:
        epoch = getattr(self.sampler, "epoch", None)
        if isinstance(epoch, int):
            return epoch
        # An iterable dataset's epoch: the trainer's (restored) epoch, which a dataset with
        # `set_epoch` is told; else the dataset's own count, else the passes counted here.
        current = getattr(self.trainer, "current_epoch", None)
        if isinstance(current, int):
            set_epoch = getattr(self.dataset, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(current)
            return current
        epoch = getattr(self.dataset, "epoch", None)
        return epoch if isinstance(epoch, int) else self._passes

    def state_dict(self) -> dict[str, Any]:
        """The position `{"epoch", "batches", "rng"}` (Lightning calls it on every rank).

        A finished pass is reported as epoch `e + 1` at batch 0. `rng` holds every rank's random
        states (a collective under `torch.distributed`).

        Returns:
            The state that `load_state_dict` takes.
        """
        epoch, batches = self._epoch, self._batches
        if epoch is not None and self._exhausted:
            epoch, batches = epoch + 1, 0
        return {"epoch": epoch, "batches": batches, "rng": gather_rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from `state_dict` at the next pass.

        That pass skips `batches` batches if its epoch is the saved one (a checkpoint written
        at an epoch boundary starts the next epoch from its first batch), then restores this
        rank's random states.

        Args:
            state_dict: a `state_dict()` result.

        Raises:
            ValueError: `state_dict` lacks `epoch` or `batches`.
        """
        if not {"epoch", "batches"} <= set(state_dict):
            raise ValueError(
                f"state_dict must come from ResumableLoader.state_dict(), got keys "
                f"{sorted(state_dict)}"
            )
        self._pending = dict(state_dict)
        if self.trainer is not None:
            _reopen_stopped_epoch(self.trainer, self._pending)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # Lazy: Lightning creates the iterator before it calls `set_epoch` for the epoch.
        return _ResumingIterator(self)


def _reopen_stopped_epoch(trainer: Any, state: dict[str, Any]) -> None:
    """Undo Lightning's closing of the epoch in which `fit` stopped at `max_steps`.

    Called when the loop state is restored and the loop has not started: the restored counters
    say epoch `e + 1` is next while the loader stopped inside epoch `e` (not at its last batch).
    The counters then become those of a checkpoint written at that step's `on_train_batch_end`.
    """
    loop = trainer.fit_loop
    epochs, batches = loop.epoch_progress, loop.epoch_loop.batch_progress
    e, b = epochs.current, batches.current
    closed = e.ready == e.started == e.processed == e.completed
    stopped_inside = (
        state["epoch"] == e.completed - 1
        and 0 < state["batches"] == b.completed == b.processed
        and not batches.is_last_batch
    )
    if not (closed and stopped_inside):
        return
    for progress in (epochs.current, epochs.total):
        progress.processed -= 1
        progress.completed -= 1
    for progress in (batches.current, batches.total):
        progress.completed -= 1
    loop.epoch_loop._batches_that_stepped -= 1


class _ResumingIterator(Iterator[Any]):
    """One pass of a `ResumableLoader`: starts at the first `next`, counts the batches."""

    def __init__(self, loader: ResumableLoader[Any]) -> None:
        self.loader = loader
        self.base: Iterator[Any] | None = None

    def _start(self) -> Iterator[Any]:
        loader = self.loader
        epoch = loader._pass_epoch()
        loader._passes += 1
        loader._epoch, loader._batches, loader._exhausted = epoch, 0, False
        if loader.generator is not None:
            loader.generator.manual_seed(loader.seed * 1_000_003 + epoch)
        base = DataLoader.__iter__(loader)
        pending, loader._pending = loader._pending, None
        if pending is None:
            return base
        skip = int(pending["batches"]) if pending["epoch"] == epoch else 0
        # Map-style, one process: skip the sampler's indices without loading data; otherwise
        # build the batches and drop them.
        sampler_iter = getattr(base, "_sampler_iter", None)
        fast = loader.num_workers == 0 and not isinstance(loader.dataset, IterableDataset)
        skipper: Iterator[Any] = sampler_iter if fast and sampler_iter is not None else base
        for _ in range(skip):
            try:
                next(skipper)
            except StopIteration:
                break
            loader._batches += 1
        if pending.get("rng") is not None:
            restore_rank_rng_states(pending["rng"])
        return base

    def __next__(self) -> Any:
        if self.base is None:
            self.base = self._start()
        try:
            batch = next(self.base)
        except StopIteration:
            self.loader._exhausted = True
            raise
        self.loader._batches += 1
        return batch

    def __len__(self) -> int:
        length = len(self.loader)
        return length - self.loader._batches if self.base is not None else length


def epoch_shuffled_loader(
    dataset: Dataset[T], *, batch_size: int, seed: int, **loader_kwargs: Any
) -> ResumableLoader[T]:
    """A training loader in `EpochShuffleSampler` order that resumes exactly, even mid-epoch.

    Args:
        dataset: a map-style dataset with `__len__`.
        batch_size: samples per batch.
        seed: base seed of the sampler (epoch `e` uses `seed + e`) and of the loader's generator.
        **loader_kwargs: passed to `ResumableLoader` (`trainer`, `drop_last`, `num_workers`,
            ...).

    Returns:
        A [ResumableLoader][lightning_losses.data.sampling.ResumableLoader].

    Raises:
        TypeError: `dataset` has no `__len__`.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> loader = epoch_shuffled_loader(TensorDataset(torch.arange(6)), batch_size=3, seed=0)
        >>> sorted(torch.cat([b for (b,) in loader]).tolist())
        [0, 1, 2, 3, 4, 5]
    """
    if not isinstance(dataset, Sized):
        raise TypeError(f"dataset must define __len__, got {type(dataset).__name__}")
    sampler = EpochShuffleSampler(len(dataset), seed=seed)
    return ResumableLoader(
        dataset, batch_size=batch_size, sampler=sampler, seed=seed, **loader_kwargs
    )


def eval_loader(dataset: Dataset[T], *, seed: int = 0, **loader_kwargs: Any) -> DataLoader[T]:
    """A validation or test loader that never draws from the global torch generator.

    A `DataLoader` without a `generator` draws the base seed of every pass (its worker seeds)
    from the global torch generator. Validation inside an epoch (`val_check_interval`) would
    then move the generator between a checkpoint and the next training batch in the
    uninterrupted run only, and every later dropout mask of a resumed run would differ. This
    loader draws that seed from a private generator, so evaluating leaves the training's random
    stream untouched.

    Args:
        dataset: the evaluation dataset.
        seed: seed of the private generator.
        **loader_kwargs: `DataLoader` keyword arguments (`batch_size`, `num_workers`,
            `collate_fn`, ...); `shuffle` is refused (an evaluation pass keeps its order).

    Returns:
        A `DataLoader` with its own `generator`.

    Raises:
        TypeError: `seed` is not an int.
        ValueError: `shuffle=True` or a `generator` among `loader_kwargs`.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> loader = eval_loader(TensorDataset(torch.arange(4)), batch_size=2)
        >>> before = torch.get_rng_state()
        >>> [b.tolist() for (b,) in loader]
        [[0, 1], [2, 3]]
        >>> torch.equal(before, torch.get_rng_state())
        True
    """
    check_int("seed", seed)
    if loader_kwargs.get("shuffle") or loader_kwargs.get("generator") is not None:
        raise ValueError(
            "eval_loader keeps the dataset order with a private generator: shuffle and "
            f"generator are not accepted, got {sorted(loader_kwargs)}"
        )
    loader_kwargs.pop("shuffle", None)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, generator=generator, **loader_kwargs)


def require_setup(value: T | None, owner: object) -> T:
    """`value`, or a `RuntimeError` saying that `owner`'s `setup()` has not run yet.

    Args:
        value: what `setup()` builds (splits, datasets, a tokenizer), `None` before it ran.
        owner: the DataModule, named in the message.
    """
    if value is None:
        raise RuntimeError(f"{type(owner).__name__}: call setup() before reading the data")
    return value
