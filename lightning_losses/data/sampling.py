"""Samplers whose order is a pure function of `(seed, epoch)`, so a resumed run replays it.

A `DataLoader(shuffle=True, generator=g)` draws each epoch's permutation from the running state
of `g`; a run resumed from a checkpoint builds a fresh generator and replays epoch 0's order.
`EpochShuffleSampler` instead derives epoch `e`'s permutation from `seed + e`.
Lightning calls `set_epoch` on samplers that define it at the start of every epoch (and wraps
custom samplers in a `DistributedSamplerWrapper` under DDP, which keeps that contract).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from lightning_losses.validation import check_int

__all__ = ["EpochShuffleSampler"]


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
