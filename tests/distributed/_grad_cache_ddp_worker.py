"""2-rank Lightning DDP (gloo) worker: GradCache with a gathered InfoNCE loss, two SGD steps.

Each rank trains a two-tower model on its half of each global batch with
`grad_cache_loss(..., lambda q, k: info_nce_loss(q, k, gather_distributed=True) * scale)`, in
chunks of 3 rows, with a learnable loss scale (a parameter of the loss, reached through the loss
graph, not the replay). DDP's reducer raises if a parameter's gradient hook fires twice in one
backward, so a run that finishes shows the replay accumulates each gradient once. Rank 0 saves
the parameters after `STEPS` steps; `tests/distributed/test_grad_cache_ddp.py` compares them with
one process on the global batches without GradCache. Usage: ``python this.py OUT``.
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.functional import info_nce_loss
from lightning_losses.nn import grad_cache_loss

GLOBAL_BATCH = 12
STEPS = 2
CHUNK = 3
LR = 0.5


def data():
    g = torch.Generator().manual_seed(5)
    n = GLOBAL_BATCH * STEPS
    return torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)


def tower(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.LayerNorm(16), torch.nn.GELU(), torch.nn.Linear(16, 8)
    )


class TwoTower(LightningModule):
    def __init__(self, chunk: int | None, gather: bool) -> None:
        super().__init__()
        self.q_enc, self.k_enc = tower(0), tower(1)
        self.log_scale = torch.nn.Parameter(torch.tensor(0.3))
        self.chunk, self.gather = chunk, gather

    def loss(self, q, k):
        return info_nce_loss(q, k, gather_distributed=self.gather) * self.log_scale.exp()

    def training_step(self, batch, batch_idx):
        xq, xk = batch
        if self.chunk is None:
            return self.loss(self.q_enc(xq), self.k_enc(xk))
        return grad_cache_loss([self.q_enc, self.k_enc], [xq, xk], self.loss, chunk_size=self.chunk)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class RankHalves(LightningDataModule):
    """Rank r gets rows [r*B/2, (r+1)*B/2) of each global batch of B rows."""

    def train_dataloader(self):
        xq, xk = data()
        r, w = self.trainer.global_rank, self.trainer.world_size
        half = GLOBAL_BATCH // w
        idx = torch.cat(
            [
                torch.arange(s * GLOBAL_BATCH + r * half, s * GLOBAL_BATCH + (r + 1) * half)
                for s in range(STEPS)
            ]
        )
        return DataLoader(TensorDataset(xq[idx], xk[idx]), batch_size=half, shuffle=False)


def main(out: str) -> None:
    model = TwoTower(chunk=CHUNK, gather=True)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=STEPS,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=RankHalves())
    if trainer.global_rank == 0:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)


if __name__ == "__main__":
    main(sys.argv[1])
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
