"""2-rank gloo FSDP2 worker for tests/distributed/test_chunked_ce_fsdp.py (not collected by pytest).

A tiny LM (embedding -> linear -> LM head) computes the chunked linear cross-entropy from its
final hidden states and `lm_head.weight`. `fully_shard` is applied to the embedding and the hidden
layer, then to the root, which owns the LM head: its weight is unsharded during the root's
forward, so the loss is computed there. Two call sites are checked:

- `inside`: the root's `forward(ids, labels)` returns the per-token losses (the loss runs while
  FSDP2 has the root's parameters unsharded);
- `inside_sum`: the same with `reduction="sum"` (the gradients-in-forward path);
- `after`: the root's `forward(ids)` returns hidden states and the loss is called afterwards with
  `model.lm_head.weight`, as `LossMixin.compute_loss` would (FSDP2 keeps the root unsharded after
  its forward: `reshard_after_forward` is False for the root).

Each rank takes half of the global batch; its local objective is `Σ_local tokens · world / N_global`
so that FSDP2's gradient averaging gives the gradient of the global token mean. Rank 0 saves the
loss, the per-token losses of every rank and the full (unsharded) gradients.
Usage: `python this.py OUT`.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

VOCAB, HIDDEN, BATCH, SEQ = 29, 8, 4, 6


class TinyLM(nn.Module):
    def __init__(self) -> None:
        # Imported here: the spawning parent process then never imports lightning_losses.
        from lightning_losses.losses import ChunkedLinearCrossEntropyLoss

        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.layer = nn.Linear(HIDDEN, HIDDEN)
        self.lm_head = nn.Linear(HIDDEN, VOCAB)
        hp = dict(z_loss_coeff=1e-2, label_smoothing=0.1, chunk_size=5)
        # "none": gradients recomputed in backward; "sum": gradients computed in the forward.
        self.criterion = ChunkedLinearCrossEntropyLoss(**hp, reduction="none")
        self.criterion_sum = ChunkedLinearCrossEntropyLoss(**hp, reduction="sum")

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.layer(self.embed(ids)))

    def forward(
        self, ids: torch.Tensor, labels: torch.Tensor | None = None, total: bool = False
    ) -> torch.Tensor:
        h = self.hidden(ids)
        if labels is None:
            return h
        # Inside the root's forward: FSDP2 has unsharded lm_head's parameters.
        criterion = self.criterion_sum if total else self.criterion
        return criterion(h, self.lm_head.weight, labels, self.lm_head.bias)


def make_model() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM()


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=g)
    labels[0, :3] = -100  # uneven valid-token counts across sequences and ranks
    labels[3, :1] = -100
    return ids, labels


def run(rank: int, world: int, mode: str) -> dict:
    from torch.distributed.fsdp import fully_shard

    model = make_model()
    fully_shard(model.embed)
    fully_shard(model.layer)
    fully_shard(model)
    ids, labels = make_batch()
    n_global = (labels != -100).sum()
    per = BATCH // world
    local_ids, local_labels = (
        ids[rank * per : (rank + 1) * per],
        labels[rank * per : (rank + 1) * per],
    )
    if mode == "inside":
        tok = model(local_ids, local_labels)
    elif mode == "inside_sum":
        tok = model(local_ids, local_labels, total=True)[None]  # the local token sum
    else:
        h = model(local_ids)
        head = model.lm_head
        tok = model.criterion(h, head.weight, local_labels, head.bias)
    loss = tok.sum() * world / n_global
    loss.backward()
    gathered = [torch.zeros_like(tok) for _ in range(world)]
    dist.all_gather(gathered, tok.detach())
    return {
        "per_token": torch.cat(gathered),
        "grads": {n: p.grad.full_tensor() for n, p in model.named_parameters()},
    }


def worker(rank: int, world: int, out: str) -> None:
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {mode: run(rank, world, mode) for mode in ("inside", "inside_sum", "after")}
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2, sys.argv[1]), nprocs=2, join=True)
