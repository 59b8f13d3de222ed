"""2-rank (gloo, CPU) worker: GradientAggregation (UPGrad) under DDP, in one launch.

Rank r trains on rows [4r, 4r + 4) of each global batch of 8 (K steps, SGD with momentum). The
model has a shared trunk and two heads; the main objective is the left head's cross-entropy and
the aux task `right` the right head's. Plain `strategy="ddp"`: the right head is used only by
the aux task, and the callback's zero-seeded backward still gives DDP its gradient. Runs:

- `ddp`: automatic optimization, UPGrad;
- `ddp_accum`: the same with `accumulate_grad_batches=2` on micro-batches of 2 rows per rank;
- `ddp_mgda`: MGDA (another nonlinear aggregator);
- `ddp_shared`: UPGrad on the trunk only (`shared="net.trunk"`), the heads get their own gradient;
- `ddp_momentum`: momentum ConFIG, one objective back-propagated per step (through DDP's reducer).

Each rank saves its parameters and the last aggregation weights. Usage: `python this.py
OUT_PREFIX` (writes `OUT_PREFIX.rank{r}`).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import GradientAggregation
from lightning_losses.mixins import LossMixin

K = 3
GLOBAL = 8
LR = 0.2
MOMENTUM = 0.9


def data():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(K * GLOBAL, 6, generator=g)
    return (
        x,
        torch.randint(4, (K * GLOBAL,), generator=g),
        torch.randint(3, (K * GLOBAL,), generator=g),
    )


def init_state():
    torch.manual_seed(3)
    trunk = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh())
    return torch.nn.ModuleDict(
        {"trunk": trunk, "left": torch.nn.Linear(8, 4), "right": torch.nn.Linear(8, 3)}
    )


class Model(LossMixin, LightningModule):
    def __init__(self):
        super().__init__()
        self.net = init_state()
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y1, y2 = batch
        h = self.net["trunk"](x)
        right = F.cross_entropy(self.net["right"](h), y2)
        return self.compute_loss(self.net["left"](h), y1, aux={"right": right}, log=False).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)


class RankRows(LightningDataModule):
    def __init__(self, micro: int):
        super().__init__()
        self.micro = micro

    def train_dataloader(self):
        x, y1, y2 = data()
        r = self.trainer.global_rank
        idx = torch.cat(
            [torch.arange(k * GLOBAL + 4 * r, k * GLOBAL + 4 * r + 4) for k in range(K)]
        )
        return DataLoader(TensorDataset(x[idx], y1[idx], y2[idx]), batch_size=self.micro)


def fit(aggregator, *, accumulate=1, **kwargs):
    model = Model()
    cb = GradientAggregation(aggregator, **kwargs)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=K,
        accumulate_grad_batches=accumulate,
        callbacks=[cb],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=RankRows(4 // accumulate))
    params = {n: p.detach().clone() for n, p in model.net.named_parameters()}
    return trainer.global_rank, {"params": params, "weights": cb.last_weights, "steps": cb.steps}


def main(out: str) -> None:
    results = {}
    rank, results["ddp"] = fit("upgrad")
    _, results["ddp_accum"] = fit("upgrad", accumulate=2)
    _, results["ddp_mgda"] = fit("mgda")
    _, results["ddp_shared"] = fit("upgrad", shared="net.trunk")
    _, results["ddp_momentum"] = fit("momentum_config")
    torch.save(results, f"{out}.rank{rank}")
    # Tear the gloo group down before exit (exit-time destructors of its threads can abort).
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
