"""SAM under 2-rank FSDP2 (`ModelParallelStrategy`, gloo) vs a single-process float64 emulation.

Emulation, written from the papers' formulas (SAM, arXiv:2010.01412; ASAM, arXiv:2102.11600):
rank r holds rows [4r, 4r + 4) of each global batch of 8. Under FSDP2 the ascent direction is the
rank-averaged gradient $\\bar g = \\tfrac12(g_0 + g_1)$ (each rank only holds its shard of the
reduce-scattered gradient), $\\hat\\epsilon = \\rho T^2 \\bar g / \\lVert T \\bar g\\rVert$ with
$T = I$ (SAM) or $T = |w| + \\eta$ (ASAM), then the ranks' gradients at $w + \\hat\\epsilon$ are
averaged and SGD with momentum steps. With accumulation, each micro-batch of 2 rows per rank is
its own perturbation (from the average of the ranks' micro-batch gradients). Tolerance: float32
runs vs float64, `atol=1e-6, rtol=1e-5`; the two ranks agree exactly. The per-rank perturbation
(`sync_perturbation=False`) is refused under FSDP2 (tested in `tests/callbacks/test_sam.py`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests._dist import run_torchrun
from tests.distributed.test_sam_ddp import _ascent, _grad

HERE = Path(__file__).resolve().parent


def _module(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _eps(g, params, rho, eta=None):
    # eta=None: SAM; else ASAM with T = |w| + eta.
    t = [torch.ones_like(p) if eta is None else p.detach().abs() + eta for p in params]
    s = [gi * ti for gi, ti in zip(g, t, strict=True)]
    norm = torch.sqrt(sum((si**2).sum() for si in s))
    return [rho * ti * si / (norm + 1e-12) for ti, si in zip(t, s, strict=True)]


def _mean(gs):
    return [sum(parts) / len(parts) for parts in zip(*gs, strict=True)]


def _reference(mod, mode, eta):
    net = mod.init_state().double()
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    x, y = mod.data()
    x = x.double()
    buf = None
    for k in range(mod.K):
        rows = [range(k * mod.GLOBAL + 4 * r, k * mod.GLOBAL + 4 * r + 4) for r in range(2)]
        micro = 2 if mode == "sync_accum" else 4
        per_micro = []
        for m in range(4 // micro):
            subs = [slice(r.start + micro * m, r.start + micro * (m + 1)) for r in rows]
            if mode == "plain":
                per_micro.append(_mean([_grad(net, params, x[s], y[s]) for s in subs]))
                continue
            g0 = _mean([_grad(net, params, x[s], y[s]) for s in subs])
            eps = _eps(g0, params, mod.RHO, eta if mode == "adaptive" else None)
            per_micro.append(_mean([_ascent(net, params, x[s], y[s], eps) for s in subs]))
        g = _mean(per_micro)
        buf = g if buf is None else [mod.MOMENTUM * b + gi for b, gi in zip(buf, g, strict=True)]
        with torch.no_grad():
            for p, b in zip(params, buf, strict=True):
                p -= mod.LR * b
    return {n: p.detach() for n, p in zip(names, params, strict=True)}


@pytest.mark.slow
@pytest.mark.distributed
def test_sam_fsdp2_matches_single_process_emulation(tmp_path):
    prefix = tmp_path / "sam"
    worker = HERE / "_sam_fsdp_worker.py"
    run_torchrun(str(worker), str(prefix), cwd=tmp_path, timeout=400)
    ranks = [torch.load(f"{prefix}.rank{r}", weights_only=False) for r in range(2)]
    mod, fsdp = _module("_sam_worker"), _module("_sam_fsdp_worker")
    refs = {}
    for run in ("plain", "sync", "sync_accum", "adaptive"):
        refs[run] = _reference(mod, run, fsdp.ETA)
        for r in range(2):
            assert ranks[r][run]["sharded"], run  # the parameters really were FSDP2 shards
            for n, ref in refs[run].items():
                got = ranks[r][run]["params"][n].double()
                torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5, msg=f"{run} {r} {n}")
        for n in refs[run]:
            assert torch.equal(ranks[0][run]["params"][n], ranks[1][run]["params"][n])
    # The variants really differ (else the comparison could not tell them apart).
    for a, b in (("plain", "sync"), ("sync", "sync_accum"), ("sync", "adaptive")):
        gap = max((refs[a][n] - refs[b][n]).abs().max().item() for n in refs[a])
        assert gap > 1e-5, (a, b)
