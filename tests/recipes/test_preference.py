"""Preference recipe: synthetic pairs, the frozen reference, any DPO-family criterion, the CLI run.

The headline check trains the YAML recipe through `LossesCLI` (shrunk) and shows the effect DPO
is for: the held-out chosen–rejected reward margin rises from exactly 0 (policy = reference at
the start) and the reward accuracy approaches 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import lightning_losses.functional as LF
from lightning_losses.data.preference import (
    PreferenceDataModule,
    synthetic_preference_pairs,
)
from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.preference import PreferenceLM
from tests._lightning import cli_output_args, quiet_trainer

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "recipes/nlp/preference_dpo.yaml"


def _tiny(criterion="dpo") -> PreferenceLM:
    torch.manual_seed(0)
    return PreferenceLM(
        criterion=criterion, vocab_size=160, hidden_size=32, num_layers=1, num_heads=2
    )


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    dm = PreferenceDataModule(num_pairs=n, num_val_pairs=2, batch_size=n)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def test_pairs_follow_the_known_rule_and_are_deterministic():
    pairs = synthetic_preference_pairs(50, seed=3)
    assert pairs == synthetic_preference_pairs(50, seed=3)
    for p in pairs:
        chosen, rejected = p["chosen"].split(), p["rejected"].split()
        assert chosen != rejected and sorted(chosen) == sorted(rejected)
        assert chosen[-1] == "." and len(p["prompt"].split()) == 3

    dm = PreferenceDataModule(num_pairs=40, num_val_pairs=8, batch_size=8, flip_fraction=0.25)
    dm.setup("fit")
    item = dm.train_set[0]
    ids, labels = item["chosen_input_ids"], item["chosen_labels"]
    # Labels are the next tokens; -100 on the prompt (bos + 3 words) and on the padding.
    scored = labels != -100
    assert not scored[:3].any() and scored[3]
    torch.testing.assert_close(labels[scored], torch.cat([ids[1:], ids[:1]])[scored])
    assert (ids[:4] == item["rejected_input_ids"][:4]).all()  # the same prompt
    flipped = dm.train_set.flipped
    assert int(flipped.sum()) == 10
    # A flipped pair presents the shuffled response as chosen: its chosen side ends out of order.
    i = int(flipped.nonzero()[0])
    clean = PreferenceDataModule(num_pairs=40, num_val_pairs=8, batch_size=8)
    clean.setup("fit")
    torch.testing.assert_close(
        dm.train_set[i]["chosen_input_ids"], clean.train_set[i]["rejected_input_ids"]
    )
    with pytest.raises(ValueError, match="flip_fraction"):
        PreferenceDataModule(flip_fraction=0.5)
    with pytest.raises(ValueError, match="max_length"):
        PreferenceDataModule(num_pairs=8, max_length=6).setup("fit")


def test_step_uses_policy_and_frozen_reference_for_every_preference_loss():
    batch = _batch()
    model = _tiny()
    for criterion in ("dpo", "conservative_dpo", "robust_dpo", "rpo", "ipo"):
        model.configure_criterion(criterion)
        model.zero_grad()
        out = model.preference_loss(batch)
        assert out.per_sample.shape == (4,) and torch.isfinite(out.loss)
        # At the start policy == reference: every log-ratio, hence every reward, is exactly 0.
        assert out.extras["rewards/margins"] == 0 and out.extras["rewards/accuracies"] == 0
        out.loss.backward()
        assert all(p.grad is None for p in model.reference.parameters())
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.parameters())
    # The per-pair losses are the criterion's on the sequence log-probs (here: DPO on h = 0).
    model.configure_criterion("dpo")
    ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    logp, _ = LF.sequence_log_probs(model(ids), labels)
    pc, pr = logp.chunk(2)
    torch.testing.assert_close(
        model.preference_loss(batch).per_sample,
        LF.dpo_loss(pc, pr, pc.detach(), pr.detach(), reduction="none"),
    )


def test_wrong_kind_of_criterion_and_too_small_vocabulary_fail_early(tmp_path):
    with pytest.raises(
        ValueError, match=r"PreferenceLM takes .preference. losses: conservative_dpo, dpo, ipo"
    ):
        PreferenceLM(criterion="cross_entropy", vocab_size=32, hidden_size=16, num_heads=2)
    model = PreferenceLM(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2)
    dm = PreferenceDataModule(num_pairs=16, num_val_pairs=4, batch_size=4)
    with pytest.raises(ValueError, match="vocab_size >= "):
        quiet_trainer(max_steps=1, default_root_dir=tmp_path).fit(model, dm)


def test_cli_recipe_raises_the_held_out_reward_margin(tmp_path):
    args = [
        "--config", str(CONFIG),
        "--model.hidden_size", "32",
        "--model.num_layers", "1",
        "--model.num_heads", "2",
        "--data.num_pairs", "512",
        "--data.num_val_pairs", "64",
        "--data.batch_size", "16",
        "--model.lr", "0.003",
        "--trainer.max_steps", "40",
        "--trainer.val_check_interval", "40",
        "--trainer.limit_val_batches", "4",
        *cli_output_args(tmp_path),
    ]  # fmt: skip
    # At the start the policy is the reference: margin and accuracy are exactly 0 (see
    # test_step_uses_policy_and_frozen_reference_for_every_preference_loss).
    cli = build_cli(["fit", *args])
    assert type(cli.model.criterion).__name__ == "DPOLoss" and cli.model.criterion.beta == 0.1
    metrics = cli.trainer.callback_metrics
    assert cli.trainer.global_step == 40
    # Measured (seed 0, 40 steps): val margin 0 -> 1.74 (mean β·h), accuracy 0 -> 1.0, val loss
    # log 2 = 0.693 -> 0.21.
    assert metrics["val/rewards/margins"] > 1.0
    assert metrics["val/rewards/accuracies"] >= 0.95
    assert metrics["val/loss"] < 0.35
    # The reference stayed frozen.
    model = cli.model
    assert not any(p.requires_grad for p in model.reference.parameters())
