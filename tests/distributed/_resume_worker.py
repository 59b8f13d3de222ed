"""2-rank DDP (gloo, CPU): full, interrupted and resumed runs of the NLP and recsys recipes.

Usage: python _resume_worker.py OUT_DIR   (writes OUT_DIR/rank{0,1}.pt)

Each rank seeds its own global generator (`100 + rank`, in `setup`), so the ranks' dropout
streams differ and only a per-rank restore of the random states resumes exactly. The NLP run
(map-style loader, which Lightning re-creates around a `DistributedSamplerWrapper`; a schedule
that reads `estimated_stepping_batches`) resumes from its own `ModelCheckpoint` file; the recsys
run (iterable, rank-sharded loader; PLD) from `trainer.save_checkpoint` after `max_steps`.
Every rank records what it logged: the losses are means over the ranks (`sync_dist`), and
`rank_probe` (logged here without `sync_dist`) is each rank's own epoch mean, which only a
per-rank restore of the epoch accumulators reproduces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback

from tests.recipes.test_resume_mid_epoch import (
    BATCHES,
    BY_EPOCHS,
    LIMITED,
    STOP,
    TOTAL,
    Case,
    _causal_lm_case,
    _recsys_case,
    fit,
)


class RankSeed(Callback):
    """A different global generator state on each rank (as `seed_everything(seed + rank)`)."""

    def setup(self, trainer, pl_module, stage):
        torch.manual_seed(100 + trainer.global_rank)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # An unsynced per-rank epoch mean: only each rank's own accumulators restore it.
        probe = torch.tensor(100.0 * trainer.global_rank + batch_idx)
        pl_module.log("rank_probe", probe, on_step=False, on_epoch=True, batch_size=1)


def nlp_case(out: Path) -> Case:
    from lightning_losses.data.text import TextDataModule

    # The single-process case's model; more documents, so each rank has batches to resume into.
    return Case(
        _causal_lm_case().model,
        lambda _: TextDataModule(
            num_docs=200, block_size=16, vocab_size=300, batch_size=4, tokenizer_dir=str(out)
        ),
        lambda: [RankSeed()],
    )


def recsys_case() -> Case:
    from lightning_losses.data.interactions import InteractionDataModule

    # The single-process case (PLD), 16 rows per rank: 32 over the two, as that case has.
    case = _recsys_case()
    return Case(
        case.model,
        lambda _: InteractionDataModule(
            num_users=30, num_items=90, positives_per_user=10, batch_size=16, pool_size=3
        ),
        lambda: [RankSeed(), *case.callbacks()],
    )


def record(run) -> dict:
    return {
        "batches": run.batches,
        "rows": run.rows,
        "weights": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    ddp = dict(accelerator="cpu", devices=2, strategy="ddp", **LIMITED)
    results: dict[str, dict] = {}

    nlp = nlp_case(out / "tokenizer")
    every_dir = out / "nlp_ckpt"
    from lightning.pytorch.callbacks import ModelCheckpoint

    every = ModelCheckpoint(dirpath=every_dir, every_n_train_steps=STOP, save_top_k=-1)
    full = fit(nlp, out / "nlp_full", TOTAL, enable_checkpointing=True, callbacks=[every],
               **ddp, **BY_EPOCHS)  # fmt: skip
    ckpt = every_dir / f"epoch={STOP // BATCHES}-step={STOP}.ckpt"
    resumed = fit(nlp, out / "nlp_resumed", TOTAL, ckpt_path=ckpt, **ddp, **BY_EPOCHS)
    results["nlp"] = {"full": record(full), "resumed": record(resumed)}

    recsys = recsys_case()
    full = fit(recsys, out / "rec_full", TOTAL, **ddp)
    stop_ckpt = out / "rec_stop.ckpt"
    part = fit(recsys, out / "rec_part", STOP, save=stop_ckpt, **ddp)
    resumed = fit(recsys, out / "rec_resumed", TOTAL, ckpt_path=stop_ckpt, **ddp)
    results["recsys"] = {"full": record(full), "part": record(part), "resumed": record(resumed)}

    rank = torch.distributed.get_rank()
    torch.save(results, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
