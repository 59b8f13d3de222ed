"""Torch datasets over `InteractionData`: training batches (BPR / PLD schema) and evaluation users.

Training batches are dicts (the schema
[PLDResampling][lightning_losses.callbacks.PLDResampling] rewrites): one instance per training
interaction per epoch, in random order:

- `user` `[B]`, `cand_items` `[B, k]`, `neg_item` `[B]` or `[B, K]`, `pos_item` `[B]`;
- `cand_noisy` `[B, k]`, `pos_is_noisy` `[B]` (only when the noise is known: synthetic data or
  a file with `noise_col`).

Column 0 of `cand_items` is the instance's own interaction, the other `k - 1` are drawn
uniformly (with replacement) from the user's training positives, and `pos_item` is column 0:
without PLD this is exactly standard BPR training (every interaction once per epoch).
Negatives are uniform over the items the user has not interacted with in training.
Evaluation batches are `{"user" [b], "target" [b, I] bool, "exclude" [b, I] bool}` for
full-ranking evaluation (`exclude` = training items, plus validation items at test time).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from lightning_losses.data.interactions.splits import InteractionData

__all__ = ["EvalUsers", "TrainBatches"]


class _CSR:
    """Per-user item lists: `indptr [U+1]`, `items` sorted by user, `perm` = input order."""

    def __init__(self, users: Tensor, items: Tensor, num_users: int) -> None:
        self.perm = torch.argsort(users, stable=True)
        self.users = users[self.perm]
        self.items = items[self.perm]
        counts = torch.bincount(users, minlength=num_users)
        self.indptr = torch.zeros(num_users + 1, dtype=torch.long)
        self.indptr[1:] = counts.cumsum(0)
        self.degree = counts


class TrainBatches(IterableDataset[dict[str, Tensor]]):
    """One epoch of dict batches (module docstring schema); rank `r` of `w` takes every
    `w`-th batch, and every rank yields the same number of batches (DDP needs equal steps).

    Randomness depends only on `(seed, epoch, batch index)`, so a resumed run, or another
    world size, sees the same batches.

    Args:
        data: the interactions (only `train` and `train_noisy` are read).
        batch_size: instances per batch.
        pool_size: candidate positives per instance `k`.
        num_negatives: negatives per instance `K`.
        seed: sampling seed.
    """

    def __init__(
        self,
        data: InteractionData,
        *,
        batch_size: int,
        pool_size: int,
        num_negatives: int,
        seed: int,
    ) -> None:
        self.num_items = data.num_items
        self.csr = _CSR(data.train[0], data.train[1], data.num_users)
        self.noisy = None if data.train_noisy is None else data.train_noisy[self.csr.perm]
        self.keys = torch.sort(self.csr.users * data.num_items + self.csr.items).values
        self.batch_size, self.pool_size, self.num_negatives = batch_size, pool_size, num_negatives
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next pass (later passes count on from it).

        Args:
            epoch: the epoch index.
        """
        self.epoch = epoch

    def _num_batches_total(self) -> int:
        return math.ceil(len(self.csr.items) / self.batch_size)

    def __len__(self) -> int:
        return max(1, self._num_batches_total() // self.world_size)

    def _negatives(self, users: Tensor, g: torch.Generator) -> Tensor:
        shape = (len(users), self.num_negatives)
        neg = torch.randint(0, self.num_items, shape, generator=g)
        u = users.unsqueeze(1).expand(shape)
        for _ in range(20):  # rejection of observed positives; terminates fast unless dense
            key = u * self.num_items + neg
            pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
            hit = self.keys[pos] == key
            if not hit.any():
                break
            neg[hit] = torch.randint(0, self.num_items, (int(hit.sum()),), generator=g)
        return neg if self.num_negatives > 1 else neg[:, 0]

    def batch(self, epoch: int, index: int, order: Tensor) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(hash((self.seed, epoch, index)) & (2**62 - 1))
        inst = order[index * self.batch_size : (index + 1) * self.batch_size]
        users = self.csr.users[inst]
        deg = self.csr.degree[users]
        extra = (torch.rand(len(inst), self.pool_size - 1, generator=g) * deg.unsqueeze(1)).long()
        extra = self.csr.indptr[users].unsqueeze(1) + extra.clamp_max(deg.unsqueeze(1) - 1)
        pos_idx = torch.cat([inst.unsqueeze(1), extra], 1)
        cand = self.csr.items[pos_idx]
        out = {
            "user": users,
            "cand_items": cand,
            "pos_item": cand[:, 0].clone(),
            "neg_item": self._negatives(users, g),
        }
        if self.noisy is not None:
            out["cand_noisy"] = self.noisy[pos_idx]
            out["pos_is_noisy"] = out["cand_noisy"][:, 0].clone()
        return out

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        epoch = self.epoch
        self.epoch += 1  # one pass = one epoch (the DataModule resets it on (re)start)
        order = torch.randperm(
            len(self.csr.items), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch)
        )
        n_per_rank = len(self)
        for step in range(n_per_rank):
            index = (step * self.world_size + self.rank) % self._num_batches_total()
            yield self.batch(epoch, index, order)


class EvalUsers(Dataset[int]):
    """Users with at least one target item; `collate` builds dense `target` / `exclude`.

    Args:
        num_users: number of users.
        num_items: number of items (width of the dense masks).
        target: `(users, items)` of the interactions to retrieve.
        exclude: `(users, items)` pairs masked out of the ranking (seen items).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        target: tuple[Tensor, Tensor],
        exclude: list[tuple[Tensor, Tensor]],
    ) -> None:
        self.num_items = num_items
        self.target = _CSR(target[0], target[1], num_users)
        self.exclude = [_CSR(users, items, num_users) for users, items in exclude]
        self.users = torch.unique(target[0])

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, idx: int) -> int:
        return int(self.users[idx])

    @staticmethod
    def _dense(csr: _CSR, users: Tensor, num_items: int) -> Tensor:
        out = torch.zeros(len(users), num_items, dtype=torch.bool)
        for row, u in enumerate(users.tolist()):
            out[row, csr.items[csr.indptr[u] : csr.indptr[u + 1]]] = True
        return out

    def collate(self, users: list[int]) -> dict[str, Tensor]:
        u = torch.tensor(users, dtype=torch.long)
        exclude = torch.zeros(len(u), self.num_items, dtype=torch.bool)
        for csr in self.exclude:
            exclude |= self._dense(csr, u, self.num_items)
        return {
            "user": u,
            "target": self._dense(self.target, u, self.num_items),
            "exclude": exclude,
        }
