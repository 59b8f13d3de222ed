"""The recsys recipe: metrics on a hand-computed case, YAML configs through the CLI, learning."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch import Callback

from lightning_losses.callbacks import PLDResampling
from lightning_losses.data import InteractionDataModule
from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.recsys import RecsysModule
from tests._lightning import cli_output_args, quiet_trainer

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "--data.num_users",
    "40",
    "--data.num_items",
    "120",
    "--data.positives_per_user",
    "12",
    "--data.batch_size",
    "64",
]


def test_full_ranking_metrics_match_a_hand_computed_case():
    # 1-d embeddings: user 0 scores items [4, 3, 2, 1], user 1 scores [-4, -3, -2, -1].
    m = RecsysModule(n_users=2, n_items=4, embedding_dim=1, top_k=[2])
    with torch.no_grad():
        m.model.user_embedding.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m.model.item_embedding.weight.copy_(torch.tensor([[4.0], [3.0], [2.0], [1.0]]))
    batch = {
        "user": torch.tensor([0, 1]),
        "target": torch.tensor([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=torch.bool),
        # item 0 is a training item of user 0: excluded, else it would be ranked first
        "exclude": torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool),
    }
    m._eval_step(batch, m.test_metrics)
    out = m.test_metrics.compute()
    # user 0 ranks 1, 2, 3 (0 excluded): top-2 = {1, 2}, 1 of 2 relevant found at rank 1.
    # user 1 ranks 3, 2, 1, 0: its only relevant item (0) is not in the top 2.
    recall = (1 / 2 + 0) / 2
    ndcg_u0 = (1 / math.log2(2)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert out["test/recall@2"].item() == pytest.approx(recall)
    assert out["test/ndcg@2"].item() == pytest.approx(ndcg_u0 / 2, rel=1e-5)


@pytest.mark.parametrize("config", ["mf_bpr.yaml", "lightgcn_bpr.yaml"])
def test_pld_overlay_fits_on_each_base_recipe(tmp_path, config):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/recsys" / config),
            "--config",
            str(ROOT / "recipes/recsys/pld.yaml"),
            *SMALL,
            "--trainer.callbacks.init_args.temperature",
            "0.2",
            "--trainer.max_steps",
            "3",
            "--trainer.check_val_every_n_epoch",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    assert cli.trainer.global_step == 3
    assert type(cli.model.criterion).__name__ == "BPRLoss"
    (pld,) = [c for c in cli.trainer.callbacks if isinstance(c, PLDResampling)]
    assert pld.temperature == 0.2
    assert "train/noisy_share" in cli.trainer.callback_metrics
    # The recipe defaults: no Adam weight decay, the per-batch L2 as the aux objective `l2`.
    assert cli.model.hparams.weight_decay == 0.0 and cli.model.model.l2_reg > 0
    assert cli.trainer.optimizers[0].param_groups[0]["weight_decay"] == 0.0
    assert "train/l2_step" in cli.trainer.callback_metrics


def test_l2_reg_is_an_aux_objective_of_the_training_loss():
    m = RecsysModule(n_users=4, n_items=6, embedding_dim=3, l2_reg=0.5)
    batch = {
        "user": torch.tensor([0, 3]),
        "pos_item": torch.tensor([1, 5]),
        "neg_item": torch.tensor([2, 0]),
        "cand_items": torch.tensor([[1, 1], [5, 5]]),
    }
    out = m.training_step(batch, 0)
    expected = m.model.l2_penalty(batch["user"], batch["pos_item"], batch["neg_item"])
    torch.testing.assert_close(out["aux"]["l2"], expected)
    torch.testing.assert_close(out["loss"], out["main"] + expected)
    assert "l2" not in RecsysModule(n_users=4, n_items=6).training_step(batch, 0)["aux"]


def test_a_non_ranking_criterion_is_rejected_when_built():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss takes 'classification'.*RecsysModule"):
        RecsysModule(criterion="cross_entropy")


class _StepRecorder(Callback):
    """Per training batch: (losses, interactions, all finite, positives drawn from the pool)."""

    def __init__(self):
        self.batches = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        per_sample = outputs["per_sample"]
        from_pool = (batch["cand_items"] == batch["pos_item"][:, None]).any(1).all()
        self.batches.append(
            (
                per_sample.numel(),
                len(batch["user"]),
                bool(torch.isfinite(per_sample).all()),
                bool(from_pool),
            )
        )


def trainer(epochs, callbacks=()):
    return quiet_trainer(
        max_epochs=epochs,
        enable_checkpointing=False,
        callbacks=list(callbacks),
        limit_val_batches=0,
    )


def test_mf_bpr_learns_the_ground_truth():
    L.seed_everything(0)
    dm = InteractionDataModule(
        num_users=200, num_items=400, positives_per_user=30, noise_rate=0.0, batch_size=512, seed=1
    )
    model = RecsysModule(l2_reg=1e-2)
    t = trainer(8)
    t.fit(model, dm)
    recall = t.test(model, dm, verbose=False)[0]["test/recall@20"]
    # Random ranking finds ≈ 20 / 376 ≈ 5 % of the held-out items; a trained MF finds many more.
    assert recall > 0.1, recall


@pytest.mark.parametrize(
    "criterion,similarity,negatives",
    [
        ("bce_rec", "dot", 1),
        ("sampled_softmax", "dot", 4),
        ("ccl", "cosine", 4),
        ({"name": "bpr", "gamma": 0.0}, "dot", 3),
    ],
)
def test_other_losses_train_and_pld_works_with_them(criterion, similarity, negatives):
    L.seed_everything(0)
    dm = InteractionDataModule(
        num_users=40, num_items=120, positives_per_user=12, batch_size=64, num_negatives=negatives
    )
    model = RecsysModule(criterion=criterion, similarity=similarity, pld_inline=False)
    pld = PLDResampling(temperature=0.5)
    steps = _StepRecorder()
    t = trainer(3, [pld, steps])
    t.fit(model, dm)
    assert torch.isfinite(t.callback_metrics["train/loss"])
    assert len(pld.history) == 3
    # The criterion gives one finite loss per interaction of every batch (the per-sample losses
    # PLD and the reweighting callbacks act on), and PLD rewrote the positive of each instance
    # with one of its own candidates.
    assert steps.batches and all(n_loss == n for n_loss, n, _, _ in steps.batches)
    assert all(finite for _, _, finite, _ in steps.batches)
    assert all(from_pool for _, _, _, from_pool in steps.batches)
