"""2-rank worker of the distributed matrix: recipe x behaviour callback cells, DDP and FSDP2.

Launched once with ``torchrun --standalone --nproc_per_node 2``; every case's Trainer reuses the
process group. A case is a recipe module (tiny, seeded), the callbacks of its column, a strategy
(``"ddp"`` or ``"fsdp"`` = ``ModelParallelStrategy`` with the recipe's ``configure_model``) and
``STEPS`` fixed global batches of ``GLOBAL_BATCH`` rows; rank r trains on rows
``[r * B / 2, (r + 1) * B / 2)`` of each (no sampler: the data split is fixed, so the test can
rebuild the global batch). Every case uses SGD (linear in the gradient: no AdamW amplification of
rounding noise). Per rank and case it saves the local training losses and the final (full)
parameters (and, for the masked-image-modeling cases, the random masks of every step: see
``MaskTape``); a case whose callback the strategy refuses saves the error message instead. The
test (``test_matrix.py``) trains the same module and callbacks in one process on the global
batches (replaying the ranks' masks, concatenated).
Usage: ``torchrun ... _matrix_worker.py OUT_PREFIX`` (writes ``OUT_PREFIX.rank{0,1}.pt``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader

STEPS = 2
GLOBAL_BATCH = 8
VOCAB, SEQ = 64, 8
USERS, ITEMS = 16, 32
# The U-Net's deepest BatchNorm sees (IMAGE / 32)^2 values per image and channel: at 32 pixels
# (one value) the float32 run drifts 1e-3 from float64 in two steps; at 64, 1e-5.
IMAGE = 64
MIM_IMAGE = 16  # 4x4 patches of 4 pixels


# ----------------------------------------------------------------------------------- models
def _sgd(model: Any, lr: float) -> Any:
    model.set_optimizer_config({"class_path": "torch.optim.SGD", "init_args": {"lr": lr}})
    return model


def vision() -> LightningModule:
    from lightning_losses.recipes.image_classification import ImageClassifier

    return _sgd(ImageClassifier(num_features=16, num_classes=4, hidden=16), 0.5)


def nlp(**kwargs: Any) -> LightningModule:
    from lightning_losses.recipes.nlp import CausalLM

    lm = CausalLM(
        vocab_size=VOCAB,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=SEQ,
        warmup_steps=0,
        min_lr_ratio=1.0,
        **kwargs,
    )
    return _sgd(lm, 0.5)


def metric(**criterion: Any) -> Callable[[], LightningModule]:
    def build() -> LightningModule:
        from lightning_losses.recipes.metric_learning import MetricLearningModule

        # Deterministic views when the loss gathers: one process then sees the same inputs.
        views = {"noise_std": 0.0, "drop_prob": 0.0} if criterion else {}
        loss = {"name": "nt_xent", **criterion}
        model = MetricLearningModule(loss, num_features=16, embedding_dim=8, hidden=16, **views)
        return _sgd(model, 0.5)

    return build


def preference() -> LightningModule:
    from lightning_losses.recipes.preference import PreferenceLM

    lm = PreferenceLM(
        vocab_size=VOCAB, hidden_size=16, num_layers=1, num_heads=2, max_position_embeddings=SEQ
    )
    return _sgd(lm, 0.5)


def recsys(l2_reg: float = 0.0) -> LightningModule:
    from lightning_losses.recipes.recsys import RecsysModule

    model = RecsysModule(embedding_dim=8, l2_reg=l2_reg, n_users=USERS, n_items=ITEMS)
    return _sgd(model, 0.5)


def recsys_l2() -> LightningModule:
    # The aux objective "l2" is a mean over the batch's rows, like the main loss.
    return recsys(l2_reg=0.1)


def segmentation() -> LightningModule:
    from lightning_losses.recipes.segmentation import SegmentationModule

    model = SegmentationModule(num_classes=4, decoder_channels=[16, 16, 8, 8, 8], figure_samples=0)
    return _sgd(model, 0.1)


def mim() -> LightningModule:
    from lightning_losses.recipes.masked_image_modeling import MaskedImageModeling

    model = MaskedImageModeling(
        img_size=MIM_IMAGE,
        patch_size=4,
        embed_dim=16,
        depth=1,
        num_heads=2,
        decoder_dim=16,
        decoder_heads=2,
    )
    return _sgd(model, 0.1)


class MaskTape:
    """The MIM recipe's training masks, per step and call: recorded, or replayed.

    Without hard-patch mining the recipe draws MAE's random masks from the process's global RNG,
    so one process on the global batch cannot draw what the ranks drew. The tape wraps the
    module's ``mim_loss``: it keeps the mask of every call (``steps[step][call]``, ``SAM`` calls it
    twice per step) and, given ``replay`` (the same layout), passes those masks instead.
    """

    def __init__(self, model: Any, replay: list[list[torch.Tensor]] | None = None) -> None:
        self.steps: list[list[torch.Tensor]] = []
        loss = model.mim_loss

        def mim_loss(batch: Any, mask: torch.Tensor | None = None, stage: str = "train") -> Any:
            step = model.trainer.global_step
            while len(self.steps) <= step:
                self.steps.append([])
            calls = self.steps[step]
            if replay is not None and mask is None:
                mask = replay[step][len(calls)]
            out = loss(batch, mask=mask, stage=stage)
            calls.append(out.extras["mae"].mask.detach().clone())
            return out

        model.mim_loss = mim_loss


def per_rank_batchnorm(model: LightningModule, world: int = 2) -> LightningModule:
    """One process whose BatchNorm layers normalise each rank's rows with their own statistics.

    What DDP without ``sync_batchnorm`` computes in training; the rest of the step (the loss and
    the callbacks) sees the global batch. Running statistics are not compared (buffers).
    """
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            forward = module.forward
            module.forward = lambda x, f=forward: torch.cat([f(c) for c in x.chunk(world)])
    return model


# ------------------------------------------------------------------------------------ data
def vision_batches(g: torch.Generator) -> list[Any]:
    return [
        (torch.randn(GLOBAL_BATCH, 16, generator=g), torch.randint(4, (GLOBAL_BATCH,), generator=g))
        for _ in range(STEPS)
    ]


def per_rank_steps(model: LightningModule, world: int = 2) -> LightningModule:
    """One process computing what W ranks average: the loss of each rank's rows, then the mean.

    Every rank starts a step from the same RNG state (all seeded alike, nothing else draws), so
    each slice restarts from the step's state, and the step ends where one rank's would.
    """
    step = model.training_step

    def training_step(batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        state = torch.get_rng_state()
        losses = []
        for rank in range(world):
            torch.set_rng_state(state)
            losses.append(step(rank_rows(batch, rank, world), batch_idx)["loss"])
        return {"loss": torch.stack(losses).mean()}

    model.training_step = training_step  # type: ignore[method-assign]
    return model


def token_batches(g: torch.Generator) -> list[Any]:
    out = []
    for _ in range(STEPS):
        ids = torch.randint(VOCAB, (GLOBAL_BATCH, SEQ), generator=g)
        labels = ids.clone()
        labels[:, : 1 + torch.randint(3, (1,), generator=g).item()] = -100  # uneven token counts
        out.append({"input_ids": ids, "labels": labels})
    return out


def preference_batches(g: torch.Generator) -> list[Any]:
    out = []
    for _ in range(STEPS):
        batch = {}
        for side in ("chosen", "rejected"):
            ids = torch.randint(VOCAB, (GLOBAL_BATCH, SEQ), generator=g)
            labels = ids.clone()
            labels[:, :3] = -100  # the prompt
            batch[f"{side}_input_ids"], batch[f"{side}_labels"] = ids, labels
        out.append(batch)
    return out


def interaction_batches(g: torch.Generator) -> list[Any]:
    # The negatives are drawn into the batch: the loss is per (user, positive, negative) row.
    return [
        {
            "user": torch.randint(USERS, (GLOBAL_BATCH,), generator=g),
            "pos_item": torch.randint(ITEMS, (GLOBAL_BATCH,), generator=g),
            "neg_item": torch.randint(ITEMS, (GLOBAL_BATCH,), generator=g),
        }
        for _ in range(STEPS)
    ]


def image_mask_batches(g: torch.Generator) -> list[Any]:
    return [
        {
            "image": torch.randn(GLOBAL_BATCH, 1, IMAGE, IMAGE, generator=g),
            "mask": torch.randint(4, (GLOBAL_BATCH, IMAGE, IMAGE), generator=g),
        }
        for _ in range(STEPS)
    ]


def image_batches(g: torch.Generator) -> list[Any]:
    return [
        {"image": torch.randn(GLOBAL_BATCH, 1, MIM_IMAGE, MIM_IMAGE, generator=g)}
        for _ in range(STEPS)
    ]


def rank_rows(batch: Any, rank: int, world: int) -> Any:
    """Rows ``[rank * n / world, (rank + 1) * n / world)`` of every tensor of a batch."""
    if isinstance(batch, dict):
        return {k: rank_rows(v, rank, world) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(rank_rows(v, rank, world) for v in batch)
    n = batch.shape[0] // world
    return batch[rank * n : (rank + 1) * n]


class FixedBatches(LightningDataModule):
    """Each rank's rows of fixed global batches (one process: the whole batches)."""

    def __init__(self, batches: list[Any]) -> None:
        super().__init__()
        self.batches = batches

    def train_dataloader(self) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        local = [rank_rows(b, rank, world) for b in self.batches]
        return DataLoader(local, batch_size=None, shuffle=False)


# ----------------------------------------------------------------------------------- cases
def _callbacks(name: str, aux: str = "z_loss") -> list[Callback]:
    from lightning_losses.callbacks import (
        SAM,
        EMAGradientProjection,
        GradientAggregation,
        KLDROReweighting,
        LossReweighting,
        PerpGrad,
    )

    return {
        "none": [],
        "reweighting": [LossReweighting(burnout_steps=0, kl_reg=0.5)],
        "kl_dro": [KLDROReweighting(lam=0.5)],
        "perp_grad": [PerpGrad()],
        # Synced: one perturbation from the global pass-1 gradient, as one process computes it.
        "sam": [SAM(rho=0.05, sync_perturbation=True)],
        "bloop": [EMAGradientProjection(ema=0.5, lbda=0.5)],
        "multi_task": [GradientAggregation("upgrad", tasks=[aux], log_stats=False)],
    }[name]


@dataclass(frozen=True)
class Case:
    recipe: str
    callback: str
    strategy: str  # "ddp" or "fsdp"
    model: Callable[[], LightningModule]
    batches: Callable[[torch.Generator], list[Any]]
    refused: str | None = None  # the error message expected instead of a run
    # "global": W ranks == one process on the global batch; "per_rank": == the mean of the
    # losses of the W row slices, each computed alone (per-rank negatives, batch statistics);
    # "per_rank_batchnorm": one process on the global batch whose BatchNorm layers normalise
    # each rank's rows alone (DDP without sync_batchnorm).
    relation: str = "global"
    contrast: bool = False  # the test also checks that the other relation differs
    kwargs: dict[str, Any] = field(default_factory=dict)
    aux: str = "z_loss"  # the aux objective of the multi_task column

    @property
    def id(self) -> str:
        return f"{self.recipe}-{self.callback}-{self.strategy}"

    def build(self) -> tuple[LightningModule, list[Callback], list[Any]]:
        torch.manual_seed(0)
        model = self.model()
        batches = self.batches(torch.Generator().manual_seed(1))
        torch.manual_seed(2)  # the training draws (augmentations), alike on every rank
        return model, _callbacks(self.callback, self.aux), batches


def _nlp_z() -> LightningModule:
    return nlp(z_loss_coeff=1e-2)


def moe(balance_loss_coeff: float = 0.0) -> LightningModule:
    # The balance loss multiplies two batch means: a rank's is not a share of the global one.
    return nlp(
        model_type="llama_moe",
        model_config={"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
        balance_loss_coeff=balance_loss_coeff,
    )


def moe_z() -> LightningModule:
    # An aux objective (the router-free z-loss) for the bloop and multi_task columns.
    return nlp(
        model_type="llama_moe",
        model_config={"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16},
        z_loss_coeff=1e-2,
    )


def moe_balance() -> LightningModule:
    return moe(balance_loss_coeff=1.0)


CASES = [
    Case("vision", "none", "ddp", vision, vision_batches),
    Case("vision", "reweighting", "ddp", vision, vision_batches),
    Case("vision", "kl_dro", "ddp", vision, vision_batches),
    Case("vision", "perp_grad", "ddp", vision, vision_batches),
    Case("vision", "sam", "ddp", vision, vision_batches),
    Case("preference", "none", "ddp", preference, preference_batches),
    Case("preference", "reweighting", "ddp", preference, preference_batches),
    Case("preference", "kl_dro", "ddp", preference, preference_batches),
    Case("preference", "sam", "ddp", preference, preference_batches),
    Case("preference", "perp_grad", "ddp", preference, preference_batches),
    Case("nlp", "none", "ddp", nlp, token_batches),
    Case("nlp", "reweighting", "ddp", nlp, token_batches),
    Case("nlp", "kl_dro", "ddp", nlp, token_batches),
    Case("nlp", "sam", "ddp", nlp, token_batches),
    Case("nlp", "perp_grad", "ddp", nlp, token_batches),
    Case("nlp", "bloop", "ddp", _nlp_z, token_batches),
    Case("nlp", "multi_task", "ddp", _nlp_z, token_batches),
    Case("nlp", "none", "fsdp", nlp, token_batches),
    Case("nlp", "kl_dro", "fsdp", nlp, token_batches),
    Case("nlp", "sam", "fsdp", nlp, token_batches),
    Case("nlp", "bloop", "fsdp", _nlp_z, token_batches),
    Case("metric", "none", "ddp", metric(), vision_batches, relation="per_rank", contrast=True),
    Case(
        "metric_gather",
        "none",
        "ddp",
        metric(gather_distributed=True),
        vision_batches,
        contrast=True,
    ),
    *(
        Case("metric_gather", cb, "ddp", metric(gather_distributed=True), vision_batches)
        for cb in ("reweighting", "kl_dro", "sam", "perp_grad")
    ),
    Case(
        "moe_balance", "none", "ddp", moe_balance, token_batches, relation="per_rank", contrast=True
    ),
    Case("moe", "none", "ddp", moe, token_batches),
    Case("moe", "reweighting", "ddp", moe, token_batches),
    Case("moe", "kl_dro", "ddp", moe, token_batches),
    Case("moe", "sam", "ddp", moe, token_batches),
    Case("moe", "perp_grad", "ddp", moe, token_batches),
    Case("moe_z", "bloop", "ddp", moe_z, token_batches),
    Case("moe_z", "multi_task", "ddp", moe_z, token_batches),
    Case("moe", "none", "fsdp", moe, token_batches),
    Case("moe", "reweighting", "fsdp", moe, token_batches),
    Case("moe", "kl_dro", "fsdp", moe, token_batches),
    Case("moe", "sam", "fsdp", moe, token_batches),
    Case("moe_z", "bloop", "fsdp", moe_z, token_batches),
    *(
        Case("recsys", cb, "ddp", recsys, interaction_batches)
        for cb in ("none", "reweighting", "kl_dro", "sam", "perp_grad")
    ),
    Case("recsys_l2", "bloop", "ddp", recsys_l2, interaction_batches),
    Case("recsys_l2", "multi_task", "ddp", recsys_l2, interaction_batches, aux="l2"),
    *(
        Case(
            "segmentation",
            cb,
            "ddp",
            segmentation,
            image_mask_batches,
            relation="per_rank_batchnorm",
            contrast=cb == "reweighting",
        )
        for cb in ("reweighting", "kl_dro", "sam", "perp_grad")
    ),
    *(
        Case(
            "segmentation",
            cb,
            "fsdp",
            segmentation,
            image_mask_batches,
            relation="per_rank_batchnorm",
        )
        for cb in ("reweighting", "kl_dro", "sam")
    ),
    # MIM: the ranks' random masks are recorded and replayed (MaskTape); the task of the
    # multi_task column is the loss predictor's objective ("loss_pred"); Bloop trains the loss
    # predictor, which only the aux objective reaches, along λh (docs/design/distributed.md, 16).
    *(
        Case("mim", cb, "ddp", mim, image_batches)
        for cb in ("none", "reweighting", "kl_dro", "sam", "perp_grad", "bloop")
    ),
    Case("mim", "multi_task", "ddp", mim, image_batches, aux="loss_pred"),
    *(
        Case("mim", cb, "fsdp", mim, image_batches)
        for cb in ("none", "reweighting", "kl_dro", "sam", "bloop")
    ),
    Case("mim", "perp_grad", "fsdp", mim, image_batches, refused="does not support the sharded"),
    Case(
        "mim",
        "multi_task",
        "fsdp",
        mim,
        image_batches,
        refused="does not support sharded (FSDP2) parameters",
        aux="loss_pred",
    ),
    Case("nlp", "perp_grad", "fsdp", nlp, token_batches, refused="does not support the sharded"),
]


# --------------------------------------------------------------------------------- running
class Recorder(Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach().float().clone())


def _full(tensor: torch.Tensor) -> torch.Tensor:
    full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
    return full.detach().float().clone()


def fit(
    case: Case, *, devices: int = 2, masks: list[list[torch.Tensor]] | None = None
) -> dict[str, Any]:
    """Train ``case`` for ``STEPS`` steps on ``devices`` (1: the whole batches, no strategy).

    A MIM case records its masks (``"masks"`` in the result), or replays ``masks``.
    """
    from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy

    model, callbacks, batches = case.build()
    tape = MaskTape(model, masks) if hasattr(model, "mim_loss") else None
    if devices == 1 and case.relation == "per_rank":
        model = per_rank_steps(model)
    if devices == 1 and case.relation == "per_rank_batchnorm":
        model = per_rank_batchnorm(model)
    if devices == 1:
        strategy: Any = "auto"
    elif case.strategy == "ddp":
        strategy = DDPStrategy()
    else:
        strategy = ModelParallelStrategy(data_parallel_size=devices, tensor_parallel_size=1)
    rec = Recorder()
    trainer = Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=STEPS,
        callbacks=[*callbacks, rec],
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, FixedBatches(batches))
    from torch.distributed.fsdp import FSDPModule

    return {
        "losses": rec.losses,
        "params": {k: _full(v) for k, v in model.named_parameters()},
        "fsdp_modules": sum(isinstance(m, FSDPModule) for m in model.modules()),
        "masks": None if tape is None else tape.steps,
    }


def main(prefix: str) -> None:
    torch.set_num_threads(1)
    results: dict[str, Any] = {}
    for case in CASES:
        if case.refused is not None:
            try:
                fit(case)
                results[case.id] = {"error": None}
            except ValueError as err:  # raised in the callback's setup, on every rank
                results[case.id] = {"error": str(err)}
            continue
        results[case.id] = fit(case)
    torch.save(results, f"{prefix}.rank{torch.distributed.get_rank()}.pt")
    # Tear the gloo group down before the interpreter exits (exit-time destructors can abort).
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
