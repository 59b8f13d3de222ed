"""NLP recipe: per-sequence LM loss, z-loss, perplexity, reweighting wiring, YAML via the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_losses.callbacks import LossReweighting, loss_weights
from lightning_losses.functional import z_loss
from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.nlp import CausalLM
from tests._lightning import cli_output_args, quiet_trainer

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--model.hidden_size",
    "32",
    "--model.num_layers",
    "1",
    "--model.num_heads",
    "2",
    "--data.num_docs",
    "200",
    "--data.block_size",
    "32",
    "--data.batch_size",
    "4",
    "--data.vocab_size",
    "300",
    "--model.vocab_size",
    "300",
]


def _tiny_model(**kw):
    torch.manual_seed(0)
    return CausalLM(
        vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=16, **kw
    )


def test_per_sample_is_sequence_mean_token_ce_and_z_loss_is_aux():
    model = _tiny_model(z_loss_coeff=1e-3)
    ids = torch.randint(50, (3, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.roll(-1, dims=1)
    labels[0, 5:] = -100
    labels[2, :2] = -100
    out = model.lm_loss(ids, labels)
    logits = model(ids)
    ce = F.cross_entropy(
        logits.reshape(-1, 50), labels.reshape(-1), reduction="none", ignore_index=-100
    ).reshape(3, 10)
    valid = (labels != -100).float()
    expected = (ce * valid).sum(1) / valid.sum(1)
    torch.testing.assert_close(out.per_sample, expected)
    zl = z_loss(logits.transpose(1, 2), labels, coeff=1e-3)
    torch.testing.assert_close(out.aux["z_loss"], zl)
    torch.testing.assert_close(out.loss, expected.mean() + zl)
    # The gradient reaches the model through both terms.
    out.loss.backward()
    assert model.model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_reweighting_weights_sequences_by_their_mean_ce():
    model = _tiny_model()
    model.__dict__["sample_weighter"] = LossReweighting(burnout_steps=0)
    ids = torch.randint(50, (4, 12), generator=torch.Generator().manual_seed(2))
    out = model.lm_loss(ids, ids.roll(-1, 1))
    torch.testing.assert_close(out.weights, loss_weights(out.per_sample.detach()))
    torch.testing.assert_close(out.loss, (out.weights * out.per_sample).sum())


def test_validation_perplexity_is_exp_of_token_mean_ce(tmp_path):

    from lightning_losses.data.text import TextDataModule

    dm = TextDataModule(
        num_docs=200, block_size=16, vocab_size=300, batch_size=3, tokenizer_dir=str(tmp_path)
    )
    torch.manual_seed(0)
    model = CausalLM(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    trainer = quiet_trainer(default_root_dir=tmp_path)
    res = trainer.validate(model, datamodule=dm)[0]
    # Independent: total CE over every validation token / token count (batches are uneven).
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits = model(batch["input_ids"])
            total += F.cross_entropy(
                logits.reshape(-1, 300), batch["labels"].reshape(-1), reduction="sum"
            ).item()
            count += batch["labels"].numel()
    assert math.isclose(res["val/ppl"], math.exp(total / count), rel_tol=1e-4)


def test_fit_from_yaml_with_reweighting(tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/nlp/grammar_llama.yaml"),
            "--config",
            str(ROOT / "recipes/nlp/grammar_llama_reweighting.yaml"),
            *TINY,
            "--data.tokenizer_dir",
            str(tmp_path / "tok"),
            "--trainer.max_steps",
            "3",
            "--trainer.val_check_interval",
            "3",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.callbacks.init_args.burnout_steps",
            "1",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
            "--trainer.default_root_dir",
            str(tmp_path),
        ]
    )
    assert cli.trainer.global_step == 3
    metrics = cli.trainer.callback_metrics
    assert "val/ppl" in metrics and torch.isfinite(metrics["val/ppl"])
    assert metrics["reweight/active"] == 1.0
    assert "reweight/ess" in metrics and metrics["reweight/ess"] <= 4.0 + 1e-5
    cb = next(c for c in cli.trainer.callbacks if isinstance(c, LossReweighting))
    assert cb.burnout_steps == 1 and cb.strategy == "linupper"


def test_plain_yaml_bf16_mixed_on_cpu(tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/nlp/grammar_llama.yaml"),
            *TINY,
            "--data.tokenizer_dir",
            str(tmp_path / "tok"),
            "--trainer.precision",
            "bf16-mixed",
            "--trainer.max_steps",
            "2",
            "--trainer.limit_val_batches",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    assert cli.trainer.global_step == 2
    assert torch.isfinite(cli.trainer.callback_metrics["train/loss_step"])
    assert "train/z_loss_step" in cli.trainer.callback_metrics


def test_block_size_above_max_positions_fails_at_setup_naming_both_flags(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"--data.block_size 64 exceeds the model's --model.max_position_embeddings 32",
    ):
        build_cli(
            [
                "fit",
                "--config",
                str(ROOT / "recipes/nlp/grammar_llama.yaml"),
                *TINY,
                "--data.block_size",
                "64",
                "--model.max_position_embeddings",
                "32",
                "--data.tokenizer_dir",
                str(tmp_path / "tok"),
                "--trainer.max_steps",
                "1",
                *cli_output_args(tmp_path),
            ]
        )


def test_vocab_too_small_fails_at_setup(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        build_cli(
            [
                "fit",
                "--config",
                str(ROOT / "recipes/nlp/grammar_llama.yaml"),
                *TINY,
                "--model.vocab_size",
                "100",
                "--data.tokenizer_dir",
                str(tmp_path / "tok"),
                "--trainer.max_steps",
                "1",
                "--trainer.logger.init_args.save_dir",
                str(tmp_path),
                "--trainer.default_root_dir",
                str(tmp_path),
            ]
        )


@pytest.mark.parametrize(
    "max_steps,interval,per_epoch,warns",
    [
        (30, 50, None, True),
        (50, 50, None, False),
        (-1, 50, None, False),
        (30, 0.5, 1, False),
        (30, 50, 1, False),
    ],
)
def test_a_run_that_cannot_reach_validation_warns_naming_the_setting(
    max_steps, interval, per_epoch, warns, recwarn
):
    trainer = quiet_trainer(
        max_steps=max_steps, val_check_interval=interval, check_val_every_n_epoch=per_epoch
    )
    CausalLM._warn_no_validation(trainer)
    messages = [str(w.message) for w in recwarn if "never validates" in str(w.message)]
    if warns:
        assert messages == [
            f"max_steps={max_steps} is below val_check_interval={interval}: this run never "
            "validates (no val/ppl, no checkpoint at a validation); lower "
            "--trainer.val_check_interval or raise --trainer.max_steps"
        ]
    else:
        assert not messages
