"""2-rank Lightning DDP (gloo) worker: one SGD step with LossReweighting, global then local scope.

Rank r trains on its own fixed, uneven slice of one global batch (5 + 3 samples). Rank 0 saves
the parameters after the step for each scope; the test compares them with a single-process
computation (``tests/distributed/test_reweighting_ddp.py``). Usage: ``python this.py OUT``.
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import LossReweighting
from lightning_losses.mixins import LossMixin

SIZES = (5, 3)
LR = 0.5


def global_batch():
    g = torch.Generator().manual_seed(123)
    return torch.randn(sum(SIZES), 6, generator=g), torch.randint(4, (sum(SIZES),), generator=g)


def init_state():
    torch.manual_seed(7)
    return torch.nn.Linear(6, 4).state_dict()


class Model(LossMixin, LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(6, 4)
        self.net.load_state_dict(init_state())
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.compute_loss(self.net(x), y).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class RankSlice(LightningDataModule):
    def train_dataloader(self):
        x, y = global_batch()
        r = self.trainer.global_rank
        lo = sum(SIZES[:r])
        ds = TensorDataset(x[lo : lo + SIZES[r]], y[lo : lo + SIZES[r]])
        return DataLoader(ds, batch_size=SIZES[r], shuffle=False)


def main(out: str) -> None:
    results = {}
    for scope in ("global", "local"):
        model = Model()
        cb = LossReweighting(
            strategy="linupper", kl_reg=0.5, burnout_steps=0, global_normalization=scope == "global"
        )
        trainer = Trainer(
            accelerator="cpu",
            devices=2,
            strategy="ddp",
            max_steps=1,
            callbacks=[cb],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            use_distributed_sampler=False,
        )
        trainer.fit(model, datamodule=RankSlice())
        results[scope] = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
        results[f"{scope}_weights"] = cb.last_weights.clone()
    if trainer.global_rank == 0:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
