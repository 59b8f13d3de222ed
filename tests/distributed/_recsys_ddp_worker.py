"""2-rank DDP (gloo, CPU) run of the recsys recipe with PLD; each rank saves what it saw.

Usage: python _recsys_ddp_worker.py OUT_PREFIX   (writes OUT_PREFIX.rank{0,1}.pt)
"""

from __future__ import annotations

import sys

import lightning as L
import torch

from lightning_losses.callbacks import PLDResampling
from lightning_losses.data import InteractionDataModule
from lightning_losses.recipes.recsys import RecsysModule


class RecordingPLD(PLDResampling):
    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self.initial_state = self.generator.get_state().clone()
            self.users, self.chosen = [], []

    def select(self, batch, losses):
        self.users.append(batch["user"].clone())
        idx = super().select(batch, losses)
        self.chosen.append(idx.clone())
        return idx


def main(prefix: str) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0)
    dm = InteractionDataModule(
        num_users=40,
        num_items=120,
        positives_per_user=12,
        batch_size=64,
        pool_size=4,
        eval_batch_size=16,
        seed=0,
    )
    model = RecsysModule(model="lightgcn", num_layers=2)
    pld = RecordingPLD(temperature=0.5, seed=11)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[pld],
    )
    trainer.fit(model, dm)
    metrics = trainer.validate(model, dm, verbose=False)[0]
    torch.save(
        {
            "rank": trainer.global_rank,
            "initial_state": pld.initial_state,
            "users": pld.users,
            "chosen": pld.chosen,
            "history": pld.history,
            "metrics": metrics,
            "steps": trainer.global_step,
            "weights": model.model.user_embedding.weight.detach().clone(),
        },
        f"{prefix}.rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1])
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
