"""2-rank worker for loss-free MoE balancing: DDP, then FSDP2, in the same two processes.

Spawns 2 gloo ranks (RANK/LOCAL_RANK/WORLD_SIZE set, so Lightning does not launch its own); each
rank trains a tiny MoE ``CausalLM`` for ``STEPS`` steps with ``LossFreeBalancing`` under
``strategy="ddp"`` and then under ``ModelParallelStrategy`` (``fully_shard`` per decoder layer),
and saves per step the batch indices, per-sample losses and every layer's bias, so the test can
replay both runs in one process on the global batch. Usage: ``python this.py OUT_PREFIX``.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.multiprocessing as mp
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.utils.data import DataLoader, Dataset

from lightning_losses.callbacks import LossFreeBalancing
from lightning_losses.nn import moe_balance_state
from lightning_losses.recipes.nlp import CausalLM

MODEL = dict(
    model_type="llama_moe",
    vocab_size=40,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    max_position_embeddings=16,
    model_config=dict(num_experts=4, num_experts_per_tok=2),
    lr=1e-2,
    weight_decay=0.0,
    warmup_steps=1,
    min_lr_ratio=1.0,
)
RATE, STEPS, BATCH, N_SEQ, SEQ = 0.01, 3, 2, 12, 8


class Tokens(Dataset):
    def __init__(self):
        self.data = torch.randint(40, (N_SEQ, SEQ + 1), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return N_SEQ

    def __getitem__(self, i):
        return {"input_ids": self.data[i, :-1], "labels": self.data[i, 1:], "index": i}


class Recorder(Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(
            {
                "index": batch["index"].clone(),
                "per_sample": outputs["per_sample"].detach().float().clone(),
                "bias": torch.stack(
                    [s.bias.detach().clone() for s in moe_balance_state(pl_module)]
                ),
            }
        )


def _fit(strategy):
    torch.manual_seed(0)
    model = CausalLM(**MODEL)
    rec = Recorder()
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_steps=STEPS,
        callbacks=[LossFreeBalancing(rate=RATE), rec],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, DataLoader(Tokens(), batch_size=BATCH))
    from torch.distributed.fsdp import FSDPModule

    return {
        "steps": rec.steps,
        "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
    }


def run(rank: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", NODE_RANK="0")
    torch.set_num_threads(1)
    result = {
        "ddp": _fit("ddp"),
        "fsdp": _fit(ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)),
    }
    torch.save(result, f"{out}.rank{rank}")
    # Shut gloo down before exit: left to interpreter teardown it can abort the process.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1],), nprocs=2)
