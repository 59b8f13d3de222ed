"""MoE language models in the NLP recipe: balance aux loss, pad-free counts, YAML + overlays,
and a transformers DeepSeek-V3 trained with LossFreeBalancing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning_losses.callbacks import LossFreeBalancing
from lightning_losses.nn import TopKRouter, moe_balance_state
from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.nlp import CausalLM
from tests._lightning import cli_output_args, quiet_trainer

ROOT = Path(__file__).resolve().parents[2]


def _moe(**kw):
    torch.manual_seed(0)
    return CausalLM(
        model_type="llama_moe",
        vocab_size=50,
        hidden_size=32,
        num_layers=2,
        num_heads=2,
        max_position_embeddings=16,
        model_config=dict(num_experts=4, num_experts_per_tok=2, gating="softmax"),
        **kw,
    )


def test_balance_loss_is_an_aux_term_equal_to_mixtrals_per_layer_mean():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    model = _moe(balance_loss_coeff=0.05)
    logits_seen = []
    for m in model.modules():
        if isinstance(m, TopKRouter):
            m.register_forward_hook(lambda mod, a, o: logits_seen.append(o.logits))
    ids = torch.randint(50, (3, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.roll(-1, dims=1)
    out = model.lm_loss(ids, labels)
    ref = torch.stack([load_balancing_loss_func((lg,), 4, 2) for lg in logits_seen]).mean()
    torch.testing.assert_close(out.aux["balance_loss"], 0.05 * ref)
    ce = F.cross_entropy(model(ids).reshape(-1, 50), labels.reshape(-1), reduction="none")
    torch.testing.assert_close(out.per_sample, ce.reshape(3, 10).mean(1))
    torch.testing.assert_close(out.loss, out.per_sample.mean() + out.aux["balance_loss"])
    # The aux term trains the routers (and only through the router probabilities).
    router = model.model.model.layers[0].mlp.router
    (g,) = torch.autograd.grad(out.aux["balance_loss"], router.weight, retain_graph=True)
    assert g.abs().sum() > 0
    # No coefficient: no aux term, and no balance loss computed at all.
    assert "balance_loss" not in _moe().lm_loss(ids, labels).aux


def test_attention_mask_keeps_pad_tokens_out_of_the_counts():
    model = _moe()
    ids = torch.randint(50, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, 5:] = 0
    model.lm_loss(ids, ids, attention_mask=mask)
    assert [int(s.load.counts.sum()) for s in moe_balance_state(model)] == [13 * 2, 13 * 2]


def test_balance_loss_needs_a_moe_model_and_a_non_negative_coefficient():
    with pytest.raises(ValueError, match="llama_moe"):
        CausalLM(vocab_size=50, hidden_size=32, num_layers=1, num_heads=2, balance_loss_coeff=0.1)
    with pytest.raises(ValueError, match="balance_loss_coeff"):
        _moe(balance_loss_coeff=-1.0)


def test_fit_moe_yaml_with_lossfree_overlay(tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/nlp/grammar_moe.yaml"),
            "--config",
            str(ROOT / "recipes/nlp/grammar_moe_lossfree.yaml"),
            "--model.hidden_size",
            "32",
            "--model.num_layers",
            "1",
            "--model.num_heads",
            "2",
            "--model.vocab_size",
            "300",
            "--data.vocab_size",
            "300",
            "--data.num_docs",
            "200",
            "--data.block_size",
            "32",
            "--data.batch_size",
            "4",
            "--data.tokenizer_dir",
            str(tmp_path / "tok"),
            "--trainer.max_steps",
            "3",
            "--trainer.val_check_interval",
            "3",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.log_every_n_steps",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    assert cli.trainer.global_step == 3
    metrics = cli.trainer.callback_metrics
    for key in ("moe/maxvio_batch", "moe/maxvio_global", "moe/load_e7", "val/ppl"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    cb = next(c for c in cli.trainer.callbacks if isinstance(c, LossFreeBalancing))
    assert cb.rate == 1e-3
    (state,) = moe_balance_state(cli.model)
    assert state.bias.abs().max().item() == pytest.approx(3e-3, abs=1e-7)  # 3 steps of ±u


def test_transformers_deepseek_v3_trains_with_lossfree_balancing():
    torch.manual_seed(0)
    model = CausalLM(
        model_type="deepseek_v3",
        vocab_size=40,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        max_position_embeddings=16,
        model_config=dict(
            moe_intermediate_size=16,
            first_k_dense_replace=0,
            n_routed_experts=4,
            num_experts_per_tok=2,
            n_group=1,
            topk_group=1,
            n_shared_experts=1,
            q_lora_rank=None,
            kv_lora_rank=8,
            qk_rope_head_dim=4,
            qk_nope_head_dim=4,
            v_head_dim=8,
        ),
        lr=1e-2,
        warmup_steps=1,
    )
    ids = torch.randint(40, (8, 9), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": r[:-1], "labels": r[1:]} for r in ids]
    trainer = quiet_trainer(
        max_steps=2,
        callbacks=[LossFreeBalancing(rate=0.01)],
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    trainer.fit(model, DataLoader(data, batch_size=4))
    (state,) = moe_balance_state(model)
    gate = model.model.model.layers[0].mlp.gate
    assert state.bias is gate.e_score_correction_bias and state.bias.grad is None
    steps = state.bias / 0.01  # two sign steps of ±0.01 from 0
    assert steps.abs().max() > 0.5
    torch.testing.assert_close(steps, steps.round(), atol=1e-5, rtol=0)
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert id(state.bias) not in opt_params
