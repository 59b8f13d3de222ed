"""2-rank (gloo, CPU) worker: SAM under FSDP2 (`ModelParallelStrategy`), synced perturbation.

The model, data and optimizer of `_sam_worker.py` (rank r trains on rows [4r, 4r + 4) of each
global batch of 8, K steps of SGD with momentum); `configure_model` shards both linear layers and
the root with `fully_shard` over the data-parallel mesh. Runs:

- `plain`: no SAM;
- `sync`: `SAM(rho=RHO, sync_perturbation=True)` (the only mode under FSDP2: the ascent
  direction is the rank-averaged gradient);
- `sync_accum`: `sync` with `accumulate_grad_batches=2` on micro-batches of 2 rows per rank;
- `adaptive`: `sync` with ASAM (`adaptive=True, eta=ETA`).

Each rank saves the full (all-gathered) final parameters and whether they were DTensors.
Launched with `torchrun --standalone --nproc_per_node 2 this.py OUT_PREFIX` (writes
`OUT_PREFIX.rank{r}`).
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer
from lightning.pytorch.strategies import ModelParallelStrategy

from lightning_losses.callbacks import SAM
from tests.distributed._sam_worker import RHO, K, Model, RankRows

ETA = 0.01


class ShardedModel(Model):
    def configure_model(self):
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for layer in (self.net[0], self.net[2]):
            fully_shard(layer, mesh=mesh)
        fully_shard(self, mesh=mesh)


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def fit(callbacks, accumulate=1):
    model = ShardedModel()
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_steps=K,
        accumulate_grad_batches=accumulate,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=RankRows(4 // accumulate))
    sharded = all(hasattr(p, "device_mesh") for p in model.net.parameters())
    params = {n: _full(p) for n, p in model.net.named_parameters()}
    return trainer.global_rank, {"params": params, "sharded": sharded}


def main(out: str) -> None:
    torch.set_num_threads(1)
    results = {}
    rank, results["plain"] = fit([])
    _, results["sync"] = fit([SAM(rho=RHO, sync_perturbation=True)])
    _, results["sync_accum"] = fit([SAM(rho=RHO, sync_perturbation=True)], accumulate=2)
    _, results["adaptive"] = fit([SAM(rho=RHO, sync_perturbation=True, adaptive=True, eta=ETA)])
    torch.save(results, f"{out}.rank{rank}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
