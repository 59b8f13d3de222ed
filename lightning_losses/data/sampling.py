"""Samplers whose order is a pure function of `(seed, epoch)`, so a resumed run replays it.

A `DataLoader(shuffle=True, generator=g)` draws each epoch's permutation from the running state
of `g`; a run resumed from a checkpoint builds a fresh generator and replays epoch 0's order.
`EpochShuffleSampler` instead derives epoch `e`'s permutation from `seed + e`.
Lightning calls `set_epoch` on samplers that define it at the start of every epoch (and wraps
custom samplers in a `DistributedSamplerWrapper` under DDP, which keeps that contract).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_losses.validation import check_int

__all__ = ["EpochShuffleSampler", "epoch_shuffled_loader", "require_setup"]

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


def epoch_shuffled_loader(
    dataset: Dataset[T], *, batch_size: int, seed: int, **loader_kwargs: Any
) -> DataLoader[T]:
    """A training `DataLoader` in `EpochShuffleSampler` order: a resumed run replays its batches.

    Args:
        dataset: a map-style dataset with `__len__`.
        batch_size: samples per batch.
        seed: base seed of the sampler (epoch `e` uses `seed + e`).
        **loader_kwargs: passed to `DataLoader` (`drop_last`, `num_workers`, ...).

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
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **loader_kwargs)


def require_setup(value: T | None, owner: object) -> T:
    """`value`, or a `RuntimeError` saying that `owner`'s `setup()` has not run yet.

    Args:
        value: what `setup()` builds (splits, datasets, a tokenizer), `None` before it ran.
        owner: the DataModule, named in the message.
    """
    if value is None:
        raise RuntimeError(f"{type(owner).__name__}: call setup() before reading the data")
    return value
