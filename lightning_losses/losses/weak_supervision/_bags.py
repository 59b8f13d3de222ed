"""Bag bookkeeping shared by the weakly supervised losses: ids → inverse index, counts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_losses.validation import check_tensor


@dataclass(frozen=True)
class Bags:
    """`index [N]` (bag of each instance, in `[0, num_bags)`), `counts [num_bags]`."""

    index: Tensor
    counts: Tensor
    num_bags: int

    def mean(self, values: Tensor) -> Tensor:
        """Per-bag mean `[num_bags, *]` of per-instance `values [N, *]`."""
        sums = values.new_zeros((self.num_bags, *values.shape[1:]))
        sums = sums.index_add(0, self.index, values)
        counts = self.counts.to(values.dtype).reshape(-1, *([1] * (values.ndim - 1)))
        return sums / counts

    def instance_share(self, n: int, dtype: torch.dtype) -> Tensor:
        """`N / (num_bags · |B(i)|)` per instance: shares whose mean over N is a mean over bags."""
        counts = self.counts.to(dtype)[self.index]
        return n / (self.num_bags * counts)


def prepare_bags(bag_ids: Tensor, n: int) -> Bags:
    """Validate `bag_ids [N]` (integers) and map them to `[0, num_bags)`.

    `torch.unique` needs the number of bags on the host: one sync per call, whatever
    `validate_args` says (the bag structure is data, not a check).
    """
    check_tensor("bag_ids", bag_ids, floating=False)
    if bag_ids.dtype == torch.bool:
        raise TypeError("bag_ids must be an integer tensor, got dtype torch.bool")
    if bag_ids.shape != (n,):
        raise ValueError(f"bag_ids must have shape [N] = ({n},), got {tuple(bag_ids.shape)}")
    _, index, counts = torch.unique(bag_ids, return_inverse=True, return_counts=True)
    return Bags(index=index, counts=counts, num_bags=int(counts.numel()))


def check_constant_in_bags(name: str, values: Tensor, bags: Bags) -> None:
    """Every instance of a bag carries the same bag summary (one host sync)."""
    if not values.numel():
        return
    first = values.new_zeros((bags.num_bags, *values.shape[1:]))
    first = first.index_copy(0, bags.index, values)  # any member's copy: all must match
    same = (values == first[bags.index]).reshape(values.shape[0], -1).all(1)
    if not bool(same.all()):
        i = int((~same).nonzero()[0, 0])
        raise ValueError(
            f"{name} must be the same for every instance of a bag (each instance carries its "
            f"bag's value); instance {i} differs from another instance of its bag"
        )
