"""2-rank worker for the MIM recipe with hard-patch mining: a DDP run, then an FSDP2 run.

Launched once with ``torchrun --standalone --nproc_per_node 2``; both Trainers reuse the process
group. Each run trains 2 steps (HardPatchMining: EMA teacher under DDP, ``teacher="self"`` under
FSDP2 / ``ModelParallelStrategy`` with ``fully_shard`` per block) and ends with one validation
(linear probe on all-gathered features). Per rank and step it saves the batch indices, the mask
and the local loss, plus the final (full) weights, so the test can replay both runs in one
process. Usage: ``torchrun ... this.py OUT_PREFIX``.
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

from lightning_losses.callbacks import HardPatchMining
from lightning_losses.data import DigitsImageDataModule
from lightning_losses.recipes.masked_image_modeling import MaskedImageModeling

MODEL = dict(
    img_size=16,
    patch_size=4,
    embed_dim=32,
    depth=2,
    num_heads=2,
    decoder_dim=32,
    decoder_heads=2,
    lr=1e-2,
)
DATA = dict(image_size=16, batch_size=4, eval_batch_size=1024)
EMA = (0.5, 0.5)


class Recorder(Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(
            {
                "index": batch["index"].clone(),
                "mask": batch["mask"].clone(),
                "loss": outputs["loss"].detach().clone(),
            }
        )


def _full(state):
    return {
        k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().clone()
        for k, v in state.items()
    }


def run(kind: str) -> dict:
    torch.manual_seed(0)
    model = MaskedImageModeling(**MODEL)
    if kind == "ddp":
        strategy, hpm = DDPStrategy(), HardPatchMining(seed=0, ema_decay=EMA, ema_epochs=0)
    else:
        strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
        hpm = HardPatchMining(seed=0, teacher="self")
    rec = Recorder()
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[hpm, rec],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, DigitsImageDataModule(**DATA))
    from torch.distributed.fsdp import FSDPModule

    return {
        "steps": rec.steps,
        "mae": _full(model.mae.state_dict()),
        "teacher": None if hpm.teacher is None else _full(hpm.teacher.module.state_dict()),
        "probe_acc": float(trainer.callback_metrics["val/probe_acc"]),
        "seed": hpm.generator.initial_seed(),
        "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
        "rank": trainer.global_rank,
    }


def main(out: str) -> None:
    results = {kind: run(kind) for kind in ("ddp", "fsdp")}
    torch.save(results, f"{out}.rank{results['ddp']['rank']}")


if __name__ == "__main__":
    main(sys.argv[1])
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
