"""2-rank gloo worker for tests/distributed/test_generator_state.py (not collected by pytest).

Each rank seeds PLD's generator with ``seed + rank`` (as ``setup`` does), draws, builds the
checkpoint state (a collective), and records the draws an uninterrupted run would make next. Then
a fresh callback loads rank 0's state dict — the only one Lightning writes — on every rank, and
draws again. Rank 0 saves both sequences of every rank.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_losses.callbacks import PLDResampling
from lightning_losses.callbacks.base import restore_generator
from lightning_losses.distributed import all_gather_no_grad


def worker(rank: int, world: int, out: str) -> None:
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cb = PLDResampling(seed=7)
    cb.generator.manual_seed(7 + rank)
    torch.rand(4, generator=cb.generator)
    state = cb.state_dict()
    uninterrupted = torch.rand(6, generator=cb.generator)

    saved = state["generator"].clone()
    dist.broadcast(saved, src=0)  # what the checkpoint file holds: rank 0's callback state
    resumed_cb = PLDResampling(seed=7)
    resumed_cb.generator.manual_seed(7 + rank)  # setup's seeding, before the restore
    resumed_cb.load_state_dict({**state, "generator": saved})
    resumed = torch.rand(6, generator=resumed_cb.generator)

    # A checkpoint from a 1-rank run has no stream for rank 1.
    restored_from_single = restore_generator(torch.Generator(), saved[:1])

    rows = all_gather_no_grad(torch.stack([uninterrupted, resumed])[None])
    flags = all_gather_no_grad(torch.tensor([restored_from_single]))
    if rank == 0:
        torch.save({"rows": rows, "flags": flags, "shape": tuple(saved.shape)}, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2, sys.argv[1]), nprocs=2, join=True)
