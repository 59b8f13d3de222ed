"""2-rank Lightning DDP (gloo) worker: the backward seam with a gradient handler.

The handler follows the DDP pattern documented on `GradientHandler`: per-rank aux gradients by
`torch.autograd.grad` (outside DDP's reducer), one `main.backward()` (DDP averages it into
`p.grad`), then the aux gradients all-reduced by hand and added with weight `lam` before the
optimizer step. Rank r trains on its own uneven slice (5 + 3 samples) of one global batch; rank 0
saves the parameters after one SGD step for `lam` in (0, 0.25, 1) and for a run without handler.
Usage: `python this.py OUT`.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks.base import BehaviourCallback, Role
from lightning_losses.mixins import LossMixin

SIZES = (5, 3)
LR = 0.5
LAMBDAS = (0.0, 0.25, 1.0)


def global_batch():
    g = torch.Generator().manual_seed(321)
    return torch.randn(sum(SIZES), 6, generator=g), torch.randint(4, (sum(SIZES),), generator=g)


def init_state():
    torch.manual_seed(11)
    return torch.nn.Linear(6, 4).state_dict()


def aux_objective(logits):
    return 0.5 * logits.square().mean()


class Model(LossMixin, LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(6, 4)
        self.net.load_state_dict(init_state())
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return self.compute_loss(logits, y, aux={"logit_l2": aux_objective(logits)}).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR)


class WeightedAux(BehaviourCallback):
    role = Role.GRADIENT_HANDLER
    call_hint = "compute the loss with compute_loss"

    def __init__(self, lam: float):
        super().__init__()
        self.lam = lam
        self.aux_grads: list[torch.Tensor] | None = None

    def backward(self, module, main, aux, *, accumulation_factor, scaler):
        params = [p for p in module.parameters() if p.requires_grad]
        total = torch.stack(list(aux.values())).sum()
        self.aux_grads = list(torch.autograd.grad(total, params, retain_graph=True))
        main.backward()  # the one pass through DDP's reducer

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = [p for p in pl_module.parameters() if p.requires_grad]
        for p, g in zip(params, self.aux_grads, strict=True):
            dist.all_reduce(g)  # SUM, then the average DDP uses for p.grad
            p.grad += self.lam * g / dist.get_world_size()


class RankSlice(LightningDataModule):
    def train_dataloader(self):
        x, y = global_batch()
        r = self.trainer.global_rank
        lo = sum(SIZES[:r])
        ds = TensorDataset(x[lo : lo + SIZES[r]], y[lo : lo + SIZES[r]])
        return DataLoader(ds, batch_size=SIZES[r], shuffle=False)


def fit(callbacks):
    model = Model()
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=1,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=RankSlice())
    return trainer, {k: v.detach().clone() for k, v in model.net.state_dict().items()}


def main(out: str) -> None:
    results = {}
    for lam in LAMBDAS:
        trainer, results[lam] = fit([WeightedAux(lam)])
    trainer, results["plain"] = fit([])
    if trainer.global_rank == 0:
        torch.save(results, out)


if __name__ == "__main__":
    main(sys.argv[1])
    # Shut gloo down before exit: left to interpreter teardown it can abort the process
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
