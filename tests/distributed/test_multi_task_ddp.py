"""GradientAggregation under 2-rank DDP (plain and with gradient accumulation) vs one process.

One subprocess launch (`_multi_task_worker.py`) runs all of them. Reference: a float64 loop on
the global batch of 8: the rows of the Jacobian are the global-batch gradients of the two
objectives over all parameters, aggregated by `lightning_losses.multitask.aggregate` (checked
against torchjd in tests/multitask), then SGD with momentum. Aggregation is nonlinear, so the
test also checks that averaging per-rank aggregations (what a naive handler would do) gives a
measurably different result: the reference is sensitive to the difference.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conflictfree.momentum_operator import PseudoMomentumOperator

from lightning_losses.multitask import aggregate
from tests._dist import run_python

HERE = Path(__file__).resolve().parent


def _worker():
    spec = importlib.util.spec_from_file_location(
        "_multi_task_worker", HERE / "_multi_task_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(net, params, x, y1, y2):
    h = net["trunk"](x)
    rows = []
    for obj in (F.cross_entropy(net["left"](h), y1), F.cross_entropy(net["right"](h), y2)):
        grads = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, params)
                ]
            )
        )
    return torch.stack(rows)


def _reference(mod, method, *, per_rank=False, shared=False):
    net = mod.init_state().double()
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    x, y1, y2 = mod.data()
    x = x.double()
    buf = None
    op = PseudoMomentumOperator(2)
    trunk = torch.cat(
        [torch.full((p.numel(),), n.startswith("trunk")) for n, p in zip(names, params)]
    )
    for k in range(mod.K):
        sl = slice(k * mod.GLOBAL, (k + 1) * mod.GLOBAL)
        if method == "momentum_config":  # objective k % 2 only, the authors' operator
            d = op.calculate_gradient(k % 2, _rows(net, params, x[sl], y1[sl], y2[sl])[k % 2])
        elif shared:  # the trunk's columns aggregated, the heads summed
            jac = _rows(net, params, x[sl], y1[sl], y2[sl])
            d = jac.sum(0)
            d[trunk] = aggregate(jac[:, trunk], method)
        elif per_rank:
            d = (
                sum(
                    aggregate(
                        _rows(
                            net,
                            params,
                            x[sl][4 * r : 4 * r + 4],
                            y1[sl][4 * r : 4 * r + 4],
                            y2[sl][4 * r : 4 * r + 4],
                        ),
                        method,
                    )
                    for r in range(2)
                )
                / 2
            )
        else:
            d = aggregate(_rows(net, params, x[sl], y1[sl], y2[sl]), method)
        buf = d if buf is None else mod.MOMENTUM * buf + d
        with torch.no_grad():
            offset = 0
            for p in params:
                p -= mod.LR * buf[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
    return {n: p.detach() for n, p in zip(names, params, strict=True)}


@pytest.mark.slow
@pytest.mark.distributed
def test_multi_task_ddp_matches_single_process(tmp_path):
    prefix = tmp_path / "mtl"
    run_python([str(HERE / "_multi_task_worker.py"), str(prefix)], timeout=420)
    ranks = [torch.load(f"{prefix}.rank{r}") for r in range(2)]
    mod = _worker()
    for run, method in (("ddp", "upgrad"), ("ddp_accum", "upgrad"), ("ddp_mgda", "mgda")):
        ref = _reference(mod, method)
        for r in range(2):
            res = ranks[r][run]
            assert res["steps"] == mod.K
            for n, expected in ref.items():
                torch.testing.assert_close(
                    res["params"][n].double(), expected, atol=1e-6, rtol=1e-5, msg=f"{run} {r} {n}"
                )
        for n in ref:  # every rank took the same step
            assert torch.equal(ranks[0][run]["params"][n], ranks[1][run]["params"][n])
        torch.testing.assert_close(
            ranks[0][run]["weights"], ranks[1][run]["weights"], atol=0, rtol=0
        )
    for run, method, shared in (
        ("ddp_shared", "upgrad", True),
        ("ddp_momentum", "momentum_config", False),
    ):
        ref = _reference(mod, method, shared=shared)
        for r in range(2):
            res = ranks[r][run]
            assert res["steps"] == mod.K
            for n, expected in ref.items():
                torch.testing.assert_close(
                    res["params"][n].double(), expected, atol=1e-6, rtol=1e-5, msg=f"{run} {r} {n}"
                )
    naive = _reference(mod, "upgrad", per_rank=True)
    gap = max((naive[n] - _reference(mod, "upgrad")[n]).abs().max().item() for n in naive)
    assert gap > 1e-4, gap  # global != mean of per-rank aggregations on this data
