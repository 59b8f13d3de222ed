"""The behaviour callbacks' test cases shared by the resume and the torch.compile tests.

Each `Case` names a tiny module, four base batches (served by `ResumableLoader`), a callback
factory, the callback's logging namespace, an extra piece of callback state to compare, and the
submodule that `torch.compile` wraps (the module's network; the callback stays eager).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import Callback

from lightning_losses.callbacks import (
    SAM,
    EMAGradientProjection,
    HardPatchMining,
    KLDROReweighting,
    LossFreeBalancing,
    LossReweighting,
    PerpGrad,
    PLDResampling,
)
from lightning_losses.mixins import LossMixin

MAX_STEPS = 10


class Classifier(LossMixin, LightningModule):
    """A LossMixin classifier with one aux objective (Bloop needs one), SGD with momentum."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
        )
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        return self.compute_loss(logits, y, aux={"l2": 0.5 * logits.square().mean()}).to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _xy_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 5, generator=g), torch.randint(3, (32,), generator=g)
    return [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]


def _image_batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 4, 1, 16, 16, generator=g)
    return [{"image": images[i]} for i in range(4)]


def _token_batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    data = torch.randint(40, (8, 9), generator=g)
    return [
        {"input_ids": data[i : i + 2, :-1], "labels": data[i : i + 2, 1:]} for i in (0, 2, 4, 6)
    ]


def _interaction_batches() -> list[dict[str, torch.Tensor]]:
    from lightning_losses.data import InteractionDataModule

    torch.manual_seed(0)
    dm = InteractionDataModule(
        num_users=40, num_items=120, positives_per_user=12, batch_size=16, pool_size=4
    )
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append({k: v.clone() for k, v in batch.items()})
        if len(batches) == 4:
            return batches
    raise AssertionError("the interaction data has fewer than 4 batches")


def _mim() -> LightningModule:
    from lightning_losses.recipes.masked_image_modeling import MaskedImageModeling

    torch.manual_seed(0)
    return MaskedImageModeling(
        img_size=16,
        patch_size=4,
        embed_dim=32,
        depth=1,
        num_heads=2,
        decoder_dim=32,
        decoder_heads=2,
    )


def _moe_lm() -> LightningModule:
    from lightning_losses.recipes.nlp import CausalLM

    torch.manual_seed(0)
    return CausalLM(
        model_type="llama_moe",
        vocab_size=40,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=16,
        model_config=dict(num_experts=4, num_experts_per_tok=2),
        lr=1e-2,
        warmup_steps=2,
        min_lr_ratio=0.5,
    )


def _recsys() -> LightningModule:
    from lightning_losses.recipes.recsys import RecsysModule

    torch.manual_seed(0)
    return RecsysModule(n_users=40, n_items=120, lr=0.05, pld_inline=False)


@dataclass
class Case:
    module: Callable[[], LightningModule]
    batches: Callable[[], list[Any]]
    callback: Callable[[], Callback]
    prefix: str
    extra: Callable[[Any], Any] = field(default=lambda cb: None)
    network: str = "net"  # the submodule torch.compile wraps
    # Its methods the module calls instead of forward (compiled one by one); () = forward.
    methods: tuple[str, ...] = ()


CASES = {
    # Warm-up ends at step 2 and the temperature decays over steps 2..6: the schedule crosses
    # both resume points.
    "reweighting": Case(
        Classifier,
        _xy_batches,
        lambda: LossReweighting(burnout_steps=2, kl_reg_start=3.0, kl_reg_decay_steps=4),
        "reweight/",
    ),
    "kl_dro": Case(Classifier, _xy_batches, lambda: KLDROReweighting(lam=0.5), "kl_dro/"),
    "bloop": Case(
        Classifier,
        _xy_batches,
        lambda: EMAGradientProjection(ema=0.3, lbda=0.5),
        "bloop/",
        lambda cb: cb.steps,
    ),
    "perp_grad": Case(Classifier, _xy_batches, lambda: PerpGrad(), "perp_grad/"),
    # interval=2: SAM steps on even global steps only; the resume points are odd and even.
    "sam": Case(
        Classifier,
        _xy_batches,
        lambda: SAM(rho=0.2, adaptive=True, eta=0.01, interval=2),
        "sam/",
        lambda cb: cb.skipped,
    ),
    "hpm": Case(
        _mim,
        _image_batches,
        lambda: HardPatchMining(
            seed=3, schedule="step", schedule_length=MAX_STEPS, ema_decay=(0.9, 0.99), ema_epochs=2
        ),
        "hpm/",
        network="mae",
    ),
    "balancing": Case(
        _moe_lm,
        _token_batches,
        lambda: LossFreeBalancing(rate=0.01),
        "moe/",
        lambda cb: cb.last_maxvio_batch,
        network="model",
    ),
    # start_epoch=1: uniform choice in epoch 0, PLD from epoch 1 (the resume points straddle it).
    "pld": Case(
        _recsys,
        _interaction_batches,
        lambda: PLDResampling(temperature=0.3, seed=5, start_epoch=1),
        "pld/",
        lambda cb: cb.history,
        network="model",
        methods=("embeddings", "score"),
    ),
}
