"""2-rank (gloo, CPU) runs of the segmentation recipe, DDP then FSDP2; each rank saves what it saw.

Launched once with ``torchrun --standalone --nproc_per_node 2``; both Trainers reuse the process
group. The FSDP2 run uses ``ModelParallelStrategy`` (the recipe's ``configure_model`` shards every
encoder stage and decoder block, then the network). Per rank and run it saves the training
batches' indices and local losses, the final (full) parameters and buffers (BatchNorm statistics
differ per rank), and the synced validation metrics, so the test can replay both ranks in one
process. Usage: ``torchrun ... _segmentation_worker.py OUT_PREFIX`` (writes
``OUT_PREFIX.rank{0,1}.pt``, a dict ``{"ddp": ..., "fsdp": ...}``).
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

from lightning_losses.data import SegmentationDataModule
from lightning_losses.recipes.segmentation import SegmentationModule

MODEL = dict(
    criterion={"name": "dice_ce", "softmax": True, "ignore_index": 255},
    num_classes=4,
    decoder_channels=[16, 16, 8, 8, 8],
    lr=1e-2,
    figure_samples=2,
)
DATA = dict(
    num_train=16,
    num_val=8,
    num_test=8,
    image_size=32,
    object_size=(8, 14),
    ignore_index=255,
    batch_size=4,
    eval_batch_size=4,
    seed=0,
)


class Recorder(Callback):
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(
            {"index": batch["index"].clone(), "loss": outputs["loss"].detach().clone()}
        )


def _full(tensor: torch.Tensor) -> torch.Tensor:
    # FSDP2 parameters are DTensor shards: gather the full tensor (a collective, every rank).
    full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
    return full.detach().clone()


def run(kind: str, prefix: str) -> dict:
    torch.manual_seed(0)
    model = SegmentationModule(**MODEL)
    rec = Recorder()
    strategy = (
        DDPStrategy()
        if kind == "ddp"
        else ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)
    )
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_steps=2,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=f"{prefix}_{kind}_root",
        callbacks=[rec],
    )
    trainer.fit(model, SegmentationDataModule(**DATA))
    metrics = trainer.validate(model, SegmentationDataModule(**DATA), verbose=False)[0]
    from torch.distributed.fsdp import FSDPModule

    return {
        "rank": trainer.global_rank,
        "steps": rec.steps,
        "params": {k: _full(v) for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "metrics": metrics,
        "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
    }


def main(prefix: str) -> None:
    torch.set_num_threads(1)
    results = {kind: run(kind, prefix) for kind in ("ddp", "fsdp")}
    torch.save(results, f"{prefix}.rank{results['ddp']['rank']}.pt")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
