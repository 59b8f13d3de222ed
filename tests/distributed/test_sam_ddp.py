"""SAM under 2-rank DDP (gloo) vs a single-process float64 emulation of the same steps.

Emulation, written from the paper's formulas (arXiv:2010.01412): rank r holds rows
[4r, 4r + 4) of each global batch of 8. Per-rank (m-sharpness, the default): each rank computes
$g_r = \\nabla L_r(w)$, $\\hat\\epsilon_r = \\rho g_r / \\lVert g_r\\rVert$ and
$\\nabla L_r(w + \\hat\\epsilon_r)$; DDP averages the latter. Synced: $\\hat\\epsilon$ from the
average of the $g_r$, shared by both ranks. With accumulation, each micro-batch of 2 rows is its
own perturbation. Then SGD with momentum. Tolerance: float32 runs vs float64, `atol=1e-6,
rtol=1e-5`; the two ranks agree exactly.

The same launch also runs `KLDROReweighting` (arXiv:2308.00311) under DDP: its weights
$\\mathrm{softmax}(\\ell/\\lambda)$ over the 8 rows of the global batch, each rank's slice times 2,
must give the single-process weighted gradient $\\sum_i w_i \\nabla\\ell_i$.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests._dist import run_python

HERE = Path(__file__).resolve().parent


def _worker():
    spec = importlib.util.spec_from_file_location("_sam_worker", HERE / "_sam_worker.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _grad(net, params, x, y):
    return torch.autograd.grad(F.cross_entropy(net(x), y), params)


def _ascent(net, params, x, y, eps):
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p += e
    g = _grad(net, params, x, y)
    with torch.no_grad():
        for p, e in zip(params, eps, strict=True):
            p -= e
    return g


def _eps(g, rho):
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    return [rho * gi / (norm + 1e-12) for gi in g]


def _reference(mod, mode):
    net = mod.init_state().double()
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    x, y = mod.data()
    x = x.double()
    buf = None
    for k in range(mod.K):
        rows = [slice(k * mod.GLOBAL + 4 * r, k * mod.GLOBAL + 4 * r + 4) for r in range(2)]
        if mode == "kl_dro":
            losses = F.cross_entropy(
                net(x[k * 8 : k * 8 + 8]), y[k * 8 : k * 8 + 8], reduction="none"
            )
            w = torch.softmax(losses.detach() / mod.LAM, 0)
            g = torch.autograd.grad((w * losses).sum(), params)
            gs = [g, g]
        elif mode == "plain":
            gs = [_grad(net, params, x[s], y[s]) for s in rows]
        elif mode == "local":
            gs = []
            for s in rows:
                gs.append(
                    _ascent(net, params, x[s], y[s], _eps(_grad(net, params, x[s], y[s]), mod.RHO))
                )
        elif mode == "sync":
            g0 = [_grad(net, params, x[s], y[s]) for s in rows]
            eps = _eps([(a + b) / 2 for a, b in zip(*g0, strict=True)], mod.RHO)
            gs = [_ascent(net, params, x[s], y[s], eps) for s in rows]
        else:  # local_accum: micro-batches of 2 rows per rank, each perturbed on its own
            gs = []
            for s in rows:
                parts = []
                for m in range(2):
                    sub = slice(s.start + 2 * m, s.start + 2 * m + 2)
                    eps = _eps(_grad(net, params, x[sub], y[sub]), mod.RHO)
                    parts.append(_ascent(net, params, x[sub], y[sub], eps))
                gs.append([(a + b) / 2 for a, b in zip(*parts, strict=True)])
        g = [(a + b) / 2 for a, b in zip(*gs, strict=True)]
        buf = g if buf is None else [mod.MOMENTUM * b + gi for b, gi in zip(buf, g, strict=True)]
        with torch.no_grad():
            for p, b in zip(params, buf, strict=True):
                p -= mod.LR * b
    return {n: p.detach() for n, p in zip(names, params, strict=True)}


@pytest.mark.slow
@pytest.mark.distributed
def test_sam_ddp_matches_single_process_emulation(tmp_path):
    prefix = tmp_path / "sam"
    run_python([str(HERE / "_sam_worker.py"), str(prefix)], timeout=300)
    ranks = [torch.load(f"{prefix}.rank{r}") for r in range(2)]
    mod = _worker()
    refs = {}
    for run in ("plain", "local", "sync", "local_accum", "kl_dro"):
        refs[run] = _reference(mod, run)
        for r in range(2):
            for n, ref in refs[run].items():
                got = ranks[r][run]["params"][n].double()
                torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5, msg=f"{run} {r} {n}")
        for n in refs[run]:
            assert torch.equal(ranks[0][run]["params"][n], ranks[1][run]["params"][n])
    # Per-rank SAM adds no collective to plain DDP; the synced option adds one per step.
    for r in range(2):
        plain = ranks[r]["plain"]["all_reduce"]
        assert ranks[r]["local"]["all_reduce"] == plain
        assert ranks[r]["sync"]["all_reduce"] == plain + mod.K
    # The variants really differ (else the comparison could not tell them apart).
    gap = max((refs["local"][n] - refs["sync"][n]).abs().max().item() for n in refs["local"])
    assert gap > 1e-5
    gap = max((refs["kl_dro"][n] - refs["plain"][n]).abs().max().item() for n in refs["plain"])
    assert gap > 1e-4
