"""Loss-free MoE balancing on 2 CPU ranks (gloo): DDP and FSDP2 in one subprocess launch.

Both ranks must hold identical biases after every step, equal to one process that trains on the
concatenated global batch and updates the biases from its (global) counts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lightning_losses.callbacks import balance_bias_update
from lightning_losses.nn import moe_balance_state
from lightning_losses.recipes.nlp import CausalLM
from tests._dist import run_python

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
HERE = Path(__file__).resolve().parent


def _load_worker():
    spec = importlib.util.spec_from_file_location(
        "_moe_distributed_worker", HERE / "_moe_distributed_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _single_process_replay(w, ranks, kind):
    """One process, global batch of each step: mean loss (= DDP/FSDP average), global counts."""
    torch.manual_seed(0)
    model = CausalLM(**w.MODEL)
    opt = torch.optim.AdamW(model.parameters(), lr=w.MODEL["lr"], betas=(0.9, 0.95), weight_decay=0)
    data = w.Tokens().data
    for s in moe_balance_state(model):
        s.load.zero()
    for step in range(w.STEPS):
        idx = torch.cat([r[kind]["steps"][step]["index"] for r in ranks])
        out = model.lm_loss(data[idx, :-1], data[idx, 1:])
        dist_per = torch.cat([r[kind]["steps"][step]["per_sample"] for r in ranks])
        torch.testing.assert_close(dist_per, out.per_sample.detach(), atol=2e-5, rtol=1e-4)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        with torch.no_grad():
            for s in moe_balance_state(model):
                s.bias.copy_(balance_bias_update(s.bias, s.load.counts, w.RATE))
                s.load.zero()
        expected = torch.stack([s.bias for s in moe_balance_state(model)])
        for r in ranks:
            # Sign steps of ±RATE from 0: exact while the routing matches.
            torch.testing.assert_close(r[kind]["steps"][step]["bias"], expected, atol=1e-7, rtol=0)
    return expected


def test_ddp_and_fsdp2_biases_identical_across_ranks_and_equal_single_process(tmp_path):
    out = tmp_path / "moe"
    run_python([str(HERE / "_moe_distributed_worker.py"), str(out)], cwd=tmp_path, timeout=400)
    ranks = [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(2)]
    w = _load_worker()
    assert ranks[0]["fsdp"]["fsdp_modules"] == 3  # 2 decoder layers + the root
    for kind in ("ddp", "fsdp"):
        a, b = (r[kind]["steps"] for r in ranks)
        assert len(a) == len(b) == w.STEPS
        # The ranks saw different data but apply the identical (all-reduced) update.
        assert not torch.equal(a[0]["index"], b[0]["index"])
        for sa, sb in zip(a, b, strict=True):
            assert torch.equal(sa["bias"], sb["bias"])
        final = _single_process_replay(w, ranks, kind)
        assert final.abs().max() > 0
