"""2-rank (gloo, CPU) worker: SAM under DDP, per-rank and synced perturbation, with accumulation.

Rank r trains on rows [4r, 4r + 4) of each global batch of 8 (K steps, SGD with momentum). Runs:

- `local`: `SAM(rho=RHO)` (per-rank perturbation, the paper's m-sharpness);
- `sync`: `SAM(rho=RHO, sync_perturbation=True)` (the global-batch ascent direction);
- `local_accum`: `local` with `accumulate_grad_batches=2` on micro-batches of 2 rows per rank;
- `kl_dro`: `KLDROReweighting(lam=LAM)` on a `LossMixin` module, no SAM (global weights over the
  8 rows of each step; launched here to share the process start-up).

Each rank also counts the all-reduce calls made during the run (`torch.distributed.all_reduce`
patched by a counter): `local` must make exactly as many as plain DDP (no extra sync in pass 1).
Usage: `python this.py OUT_PREFIX` (writes `OUT_PREFIX.rank{r}`).
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import SAM, KLDROReweighting
from lightning_losses.mixins import LossMixin

K = 3
GLOBAL = 8
LR = 0.2
MOMENTUM = 0.9
RHO = 0.3
LAM = 0.5


def data():
    g = torch.Generator().manual_seed(7)
    return torch.randn(K * GLOBAL, 6, generator=g), torch.randint(4, (K * GLOBAL,), generator=g)


def init_state():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = init_state()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)


class LossModel(LossMixin, Model):
    def __init__(self):
        super().__init__()
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.compute_loss(self.net(x), y).to_dict()


class RankRows(LightningDataModule):
    def __init__(self, micro: int):
        super().__init__()
        self.micro = micro

    def train_dataloader(self):
        x, y = data()
        r = self.trainer.global_rank
        idx = torch.cat(
            [torch.arange(k * GLOBAL + 4 * r, k * GLOBAL + 4 * r + 4) for k in range(K)]
        )
        return DataLoader(TensorDataset(x[idx], y[idx]), batch_size=self.micro, shuffle=False)


_CALLS = {"all_reduce": 0}
_ORIGINAL = dist.all_reduce


def _counting_all_reduce(*args, **kwargs):
    _CALLS["all_reduce"] += 1
    return _ORIGINAL(*args, **kwargs)


def fit(callbacks, accumulate=1, model_cls=Model):
    model = model_cls()
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=K,
        accumulate_grad_batches=accumulate,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    dist.all_reduce = _counting_all_reduce
    _CALLS["all_reduce"] = 0
    trainer.fit(model, datamodule=RankRows(4 // accumulate))
    dist.all_reduce = _ORIGINAL
    params = {n: p.detach().clone() for n, p in model.net.named_parameters()}
    return trainer.global_rank, {"params": params, "all_reduce": _CALLS["all_reduce"]}


def main(out: str) -> None:
    results = {}
    rank, results["plain"] = fit([])
    _, results["local"] = fit([SAM(rho=RHO)])
    _, results["sync"] = fit([SAM(rho=RHO, sync_perturbation=True)])
    _, results["local_accum"] = fit([SAM(rho=RHO)], accumulate=2)
    _, results["kl_dro"] = fit([KLDROReweighting(lam=LAM)], model_cls=LossModel)
    torch.save(results, f"{out}.rank{rank}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
