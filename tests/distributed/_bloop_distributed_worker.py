"""2-rank (gloo, CPU) worker: Bloop under DDP and under FSDP2 in one launch.

Rank r trains on rows [4r, 4r + 4) of each global batch of 8 (K steps, SGD with momentum, so the
optimizer has state when the EMA joins it). Five runs:

- `ddp`: `strategy="ddp"`, automatic optimization;
- `ddp_accum`: the same with `accumulate_grad_batches=2` on micro-batches of 2 rows per rank;
- `fsdp`: `ModelParallelStrategy` with `fully_shard` on both layers and the root, manual
  optimization through `LossMixin.manual_loss_backward`;
- `fsdp_root`: the same with `fully_shard` on the first layer and the root only, so the root owns
  the last layer's parameters: FSDP2 does not reshard the root after forward, and during the
  backward `module.parameters()` lists all-gathered copies of them, not the sharded parameters
  that receive the reduce-scattered gradient (the layout of the Hugging Face LM recipes, whose
  root owns the embeddings and the LM head);
- `fsdp_resume`: FSDP2 on the first global batch only (one batch per epoch, so a resumed run
  sees the same batches): 3 steps uninterrupted vs 1 step, a sharded (distributed) checkpoint,
  and a resume to step 3.

Each rank saves its full parameters and the full EMA (`optimizer.state[p]["bloop_ema"]`, gathered
from the shards under FSDP2). Usage: `python this.py OUT_PREFIX` (writes `OUT_PREFIX.rank{r}`).
"""

from __future__ import annotations

import sys

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks.bloop import EMA_STATE_KEY, EMAGradientProjection
from lightning_losses.mixins import LossMixin

K = 3
GLOBAL = 8
LR = 0.2
MOMENTUM = 0.9
EMA, LBDA = 0.5, 0.3


def data():
    g = torch.Generator().manual_seed(7)
    return torch.randn(K * GLOBAL, 6, generator=g), torch.randint(4, (K * GLOBAL,), generator=g)


def init_state():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))


def aux_objective(logits):
    return 0.5 * logits.square().mean()


class Model(LossMixin, LightningModule):
    def __init__(self, manual: bool = False, root_owns_head: bool = False):
        super().__init__()
        self.net = init_state()
        self.root_owns_head = root_owns_head
        self.configure_criterion("cross_entropy")
        self.automatic_optimization = not manual

    def configure_model(self):
        mesh = getattr(self, "device_mesh", None)
        if mesh is None:
            return
        from torch.distributed.fsdp import fully_shard

        dp = mesh["data_parallel"]
        fully_shard(self.net[0], mesh=dp)
        if not self.root_owns_head:
            fully_shard(self.net[2], mesh=dp)
        fully_shard(self.net, mesh=dp)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        out = self.compute_loss(logits, y, aux={"logit_l2": aux_objective(logits)}, log=False)
        if self.automatic_optimization:
            return out.to_dict()
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_loss_backward(out)
        opt.step()
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM)


class RankRows(LightningDataModule):
    def __init__(self, micro: int, batches: int = K):
        super().__init__()
        self.micro, self.batches = micro, batches

    def train_dataloader(self):
        x, y = data()
        r = self.trainer.global_rank
        idx = torch.cat(
            [torch.arange(k * GLOBAL + 4 * r, k * GLOBAL + 4 * r + 4) for k in range(self.batches)]
        )
        return DataLoader(TensorDataset(x[idx], y[idx]), batch_size=self.micro, shuffle=False)


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def fsdp():
    return ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1)


def fit(
    strategy,
    *,
    manual=False,
    accumulate=1,
    max_steps=K,
    batches=K,
    ckpt=None,
    save=None,
    root_owns_head=False,
):
    model = Model(manual=manual, root_owns_head=root_owns_head)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        callbacks=[EMAGradientProjection(ema=EMA, lbda=LBDA)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
    )
    trainer.fit(model, datamodule=RankRows(4 // accumulate, batches), ckpt_path=ckpt)
    if save is not None:
        trainer.save_checkpoint(save)
    opt = trainer.optimizers[0]
    names = [n for n, _ in model.net.named_parameters()]
    params = {n: _full(p.detach()).clone() for n, p in model.net.named_parameters()}
    ema = {
        n: _full(opt.state[p][EMA_STATE_KEY]).clone()
        for n, p in zip(names, model.net.parameters(), strict=True)
    }
    sharded = any(hasattr(p, "device_mesh") for p in model.parameters())
    return trainer.global_rank, {"params": params, "ema": ema, "sharded": sharded}


def main(out: str) -> None:
    results = {}
    rank, results["ddp"] = fit("ddp")
    _, results["ddp_accum"] = fit("ddp", accumulate=2)
    _, results["fsdp"] = fit(fsdp(), manual=True)
    _, results["fsdp_root"] = fit(fsdp(), manual=True, root_owns_head=True)
    _, full = fit(fsdp(), manual=True, batches=1)
    fit(fsdp(), manual=True, batches=1, max_steps=1, save=f"{out}.ckpt")
    _, resumed = fit(fsdp(), manual=True, batches=1, ckpt=f"{out}.ckpt")
    results["fsdp_resume"] = {"full": full, "resumed": resumed}
    torch.save(results, f"{out}.rank{rank}")
    # Tear the gloo group down before the interpreter exits: left to exit-time destructors, its
    # threads can abort the process ("terminate called without an active exception").
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
