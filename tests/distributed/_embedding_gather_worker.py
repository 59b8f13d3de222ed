"""2-rank gloo worker for tests/distributed/test_embedding_gather.py (not collected by pytest).

In one launch:

1. `gather_batch` on uneven shards (3 and 5 rows): values, labels, offsets and the gradient
   that reaches each shard; and how many `all_gather` collectives a call costs (the row-count
   exchange runs once per distinct equal row count, then is skipped).
2. Every registered loss whose constructor takes `gather_distributed`, discovered through the
   registry and driven by its `LossSpec` example (tests/losses/specs): the global float64 batch
   of `GLOBAL_N` rows is built identically on every rank, each rank keeps its half of every
   input/target whose first dimension is the batch (keyword tensors stay whole), and computes
   `reduction="none"` and `"mean"` with `gather_distributed=True`, the gradients of the mean
   w.r.t. its inputs, and the loss parameters' gradients averaged over ranks (what DDP does).

Each rank saves its results to `<out>.<rank>`.
"""

from __future__ import annotations

import inspect
import os
import sys
import zlib

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

GLOBAL_N = 8
SIZE = 5
UNEVEN = (3, 5)


def gather_loss_names() -> list[str]:
    """Registry names of every loss class whose constructor takes `gather_distributed`."""
    from lightning_losses.registry import registered_losses

    return sorted(
        name
        for name, cls in registered_losses().items()
        if "gather_distributed" in inspect.signature(cls.__init__).parameters
    )


def global_example(name: str):
    """The loss's spec example on the global batch, float64, the same on every process."""
    from tests.losses.specs import all_specs

    spec = all_specs()[name]
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    ex = spec.example(GLOBAL_N, max(SIZE, spec.min_size), g)
    ex.inputs = tuple(x.double() for x in ex.inputs)
    return ex


def build(name: str, **kwargs):
    from lightning_losses import get_loss

    torch.manual_seed(0)  # identical initial parameters (proxies, temperatures) everywhere
    return get_loss(name, gather_distributed=True, **kwargs).double()


def shard(t, rank: int, world: int):
    if isinstance(t, torch.Tensor) and t.ndim and t.shape[0] == GLOBAL_N:
        return t.chunk(world)[rank]
    return t


def check_gather_batch(rank: int, world: int) -> dict:
    from lightning_losses.functional import gather_batch

    calls = {"n": 0}
    original = dist.all_gather

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    dist.all_gather = counting
    try:
        # Uneven shards: rows 0..7 split 3 / 5, weighted by a global per-row weight.
        start = sum(UNEVEN[:rank])
        x = torch.arange(8 * 2, dtype=torch.float64).reshape(8, 2)[start : start + UNEVEN[rank]]
        x = x.clone().requires_grad_(True)
        labels = torch.arange(start, start + UNEVEN[rank]) * 10
        out = {}
        counts = []
        for _ in range(2):
            calls["n"] = 0
            z, y, offset = gather_batch(x, labels, gather_distributed=True)
            counts.append(calls["n"])
        weight = torch.arange(1, 17, dtype=torch.float64).reshape(8, 2)
        (grad,) = torch.autograd.grad((z * weight).sum(), x)
        out.update(uneven_z=z.detach(), uneven_y=y, uneven_offset=offset, uneven_grad=grad)
        out["uneven_calls"] = counts
        # Equal shards of a row count not seen before: exchanged once, then skipped.
        counts = []
        for _ in range(3):
            calls["n"] = 0
            gather_batch(
                torch.zeros(6, 2), torch.zeros(6, dtype=torch.long), gather_distributed=True
            )
            counts.append(calls["n"])
        out["equal_calls"] = counts
        calls["n"] = 0
        z, _, offset = gather_batch(torch.zeros(6, 2), gather_distributed=False)
        out["off_calls"], out["off_rows"], out["off_offset"] = calls["n"], z.shape[0], offset
    finally:
        dist.all_gather = original
    return out


def run_losses(rank: int, world: int) -> dict:
    results = {}
    for name in gather_loss_names():
        ex = global_example(name)
        inputs = [shard(x, rank, world).clone().requires_grad_(True) for x in ex.inputs]
        targets = [shard(t, rank, world) for t in ex.targets]
        none = build(name, reduction="none")(*inputs, *targets, **ex.kwargs)
        module = build(name)
        mean = module(*inputs, *targets, **ex.kwargs)
        params = [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(mean, [*inputs, *params], allow_unused=True)
        input_grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
        param_grads = []
        for p, g in zip(params, grads[len(inputs) :]):
            g = torch.zeros_like(p) if g is None else g.clone()
            dist.all_reduce(g)  # DDP: average parameter gradients over ranks
            param_grads.append(g / world)
        results[name] = {
            "none": none.detach(),
            "mean": mean.detach(),
            "input_grads": input_grads,
            "param_grads": param_grads,
        }
    return results


def worker(rank: int, world: int, out: str) -> None:
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import lightning_losses  # noqa: F401  (fills the registry)

    result = {"gather_batch": check_gather_batch(rank, world), "losses": run_losses(rank, world)}
    torch.save(result, f"{out}.{rank}")
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2, sys.argv[1]), nprocs=2, join=True)
