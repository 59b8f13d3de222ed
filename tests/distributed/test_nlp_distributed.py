"""The NLP recipe on 2 CPU ranks: DDP through the CLI, FSDP2 through ModelParallelStrategy."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

from lightning_losses.callbacks import loss_weights
from tests._dist import run_python
from tests._lightning import cli_output_args

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def test_nlp_recipe_with_reweighting_runs_under_ddp_cli(tmp_path):
    proc = run_python(
        [
            "-m",
            "lightning_losses.recipes.cli",
            "fit",
            "--config",
            str(ROOT / "recipes/nlp/grammar_llama.yaml"),
            "--config",
            str(ROOT / "recipes/nlp/grammar_llama_reweighting.yaml"),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
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
            "--trainer.callbacks.init_args.burnout_steps",
            "0",
            "--trainer.max_steps",
            "2",
            "--trainer.val_check_interval",
            "2",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.log_every_n_steps",
            "1",
            *cli_output_args(tmp_path),
        ],
        cwd=tmp_path,
        timeout=240,
    )
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    ess = [float(r["reweight/ess"]) for r in rows if r.get("reweight/ess")]
    assert ess, "reweight/ess was not logged"
    # Global normalisation over 2 × 4 sequences: with r = 1 the weight ratio is ≤ e, so the
    # effective sample size is ≥ 8·4e/(1+e)² ≈ 6.3 — impossible for a per-rank batch of 4.
    assert all(6.0 < v <= 8.0 + 1e-4 for v in ess)
    ppl = [float(r["val/ppl"]) for r in rows if r.get("val/ppl")]
    assert ppl and all(v == v and v > 1 for v in ppl)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fsdp2_two_steps_match_single_process(tmp_path):
    """Both criteria (logits CE, chunked linear CE on the hidden states) vs one process (logits)."""
    out = tmp_path / "fsdp"
    tok = tmp_path / "tok"
    run_python(
        [str(HERE / "_nlp_distributed_worker.py"), str(out), str(tok)], cwd=tmp_path, timeout=360
    )
    w = _load("_nlp_distributed_worker")
    for tag in w.CRITERIA:
        ranks = [torch.load(f"{out}.{tag}.rank{r}", weights_only=False) for r in range(2)]
        assert all(r["fsdp_modules"] == 3 for r in ranks)  # 2 decoder layers + the root
        _check_against_single_process(w, ranks, tok)


def _check_against_single_process(w, ranks, tok) -> None:
    from lightning_losses.data.text import TextDataModule
    from lightning_losses.recipes.nlp import CausalLM

    dm = TextDataModule(tokenizer_dir=str(tok), **w.DATA)
    dm.setup("fit")
    torch.manual_seed(0)
    model = CausalLM(**w.MODEL)  # the reference always takes the logits path
    opt = torch.optim.AdamW(
        model.parameters(), lr=w.MODEL["lr"], betas=(0.9, 0.95), weight_decay=0.0
    )
    for step in range(2):
        idx = torch.cat([r["steps"][step]["index"] for r in ranks])
        blocks = dm.train_set.blocks[idx]
        out_sp = model.lm_loss(blocks[:, :-1], blocks[:, 1:])
        per = out_sp.per_sample
        fsdp_per = torch.cat([r["steps"][step]["per_sample"] for r in ranks])
        torch.testing.assert_close(fsdp_per, per.detach(), atol=2e-5, rtol=1e-4)
        weights = loss_weights(per.detach(), "linupper", kl_reg=0.5)
        # Each rank's loss = world · Σ_local w_i l_i with the global weights.
        n0 = len(ranks[0]["steps"][step]["index"])
        local = [(weights * per.detach())[:n0].sum() * 2, (weights * per.detach())[n0:].sum() * 2]
        for r in range(2):
            torch.testing.assert_close(
                ranks[r]["steps"][step]["loss"], local[r], atol=2e-5, rtol=1e-4
            )
        opt.zero_grad()
        (weights * per).sum().backward()  # what DDP/FSDP averaging of the rank losses gives
        opt.step()
