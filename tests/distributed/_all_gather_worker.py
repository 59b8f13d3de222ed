"""2-rank gloo worker for tests/distributed/test_all_gather.py (not collected by pytest).

Each rank encodes its own shard (uneven sizes 3 and 5) with an identical linear encoder, gathers
the embeddings with ``all_gather_with_grad``, computes an InfoNCE-style loss over the *gathered*
batch, back-propagates, and averages parameter gradients over ranks exactly as DDP does. Rank 0
saves the result for comparison with one process on the concatenated batch.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_losses.distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    get_rank,
    get_world_size,
)

SIZES = (3, 5)


def make_inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SIZES), 6, generator=g)
    encoder = torch.nn.Linear(6, 4)
    torch.nn.init.normal_(encoder.weight, generator=g)
    torch.nn.init.zeros_(encoder.bias)
    return x, encoder


def batch_loss(z: torch.Tensor) -> torch.Tensor:
    z = torch.nn.functional.normalize(z, dim=1)
    sim = z @ z.T / 0.5
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    positives = torch.arange(len(z)).roll(1)  # arbitrary fixed pairing
    return torch.nn.functional.cross_entropy(sim, positives)


def worker(rank: int, world: int, out: str) -> None:
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x, encoder = make_inputs()
    start = sum(SIZES[:rank])
    local = x[start : start + SIZES[rank]]
    z = encoder(local)
    gathered = all_gather_with_grad(z)
    loss = batch_loss(gathered)
    loss.backward()
    for p in encoder.parameters():  # DDP's gradient averaging
        dist.all_reduce(p.grad)
        p.grad /= world
    ranks = all_gather_no_grad(torch.tensor([get_rank()] * SIZES[rank]))
    if rank == 0:
        torch.save(
            {
                "world": get_world_size(),
                "gathered": gathered.detach(),
                "ranks": ranks,
                "loss": loss.detach(),
                "grads": [p.grad.clone() for p in encoder.parameters()],
            },
            out,
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2, sys.argv[1]), nprocs=2, join=True)
