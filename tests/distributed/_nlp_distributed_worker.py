"""2-rank FSDP2 worker of the NLP recipe (`ModelParallelStrategy`, `fully_shard` per layer).

Trains a tiny ``CausalLM`` for 2 steps with global LossReweighting and saves, per rank and step,
the batch indices, per-sample losses and the local loss, so the test can recompute both steps in
a single process. It runs once per criterion of ``CRITERIA``: the logits path (cross-entropy) and
the chunked linear cross-entropy, which reads the LM head's weight after the root's forward.
Usage: ``python this.py OUT_PREFIX TOKENIZER_DIR``; writes ``OUT_PREFIX.<tag>.rank<r>``.
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.strategies import ModelParallelStrategy

from lightning_losses.callbacks import LossReweighting
from lightning_losses.data.text import TextDataModule
from lightning_losses.recipes.nlp import CausalLM

MODEL = dict(
    vocab_size=300,
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    max_position_embeddings=32,
    lr=1e-2,
    weight_decay=0.0,
    warmup_steps=1,
    min_lr_ratio=1.0,
)
DATA = dict(num_docs=200, block_size=16, vocab_size=300, batch_size=3)
CRITERIA = {
    "ce": "cross_entropy",
    "chunked": {"name": "chunked_linear_cross_entropy", "chunk_size": 7},
}


class Recorder(Callback):
    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(
            {
                "index": batch["index"].clone(),
                "per_sample": outputs["per_sample"].detach().float().clone(),
                "loss": outputs["loss"].detach().float().clone(),
            }
        )


def fit(criterion, dm) -> dict:
    torch.manual_seed(0)
    model = CausalLM(criterion, **MODEL)
    rec = Recorder()
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
        max_steps=2,
        callbacks=[LossReweighting(burnout_steps=0, kl_reg=0.5), rec],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=dm)
    from torch.distributed.fsdp import FSDPModule

    sharded = sum(isinstance(m, FSDPModule) for m in model.modules())
    return {"steps": rec.steps, "fsdp_modules": sharded, "rank": trainer.global_rank}


def main(out: str, tokenizer_dir: str) -> None:
    for tag, criterion in CRITERIA.items():
        result = fit(criterion, TextDataModule(tokenizer_dir=tokenizer_dir, **DATA))
        torch.save(result, f"{out}.{tag}.rank{result['rank']}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
