"""The LossMixin backward seam under 2-rank DDP: a gradient handler sees main and aux apart.

Reference: one process, the two ranks' objectives averaged (what DDP's gradient averaging
optimises with uneven per-rank means), main + lam * aux.
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
    spec = importlib.util.spec_from_file_location(
        "_gradient_handler_ddp_worker", HERE / "_gradient_handler_ddp_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _reference_step(mod, lam):
    net = torch.nn.Linear(6, 4)
    net.load_state_dict(mod.init_state())
    x, y = mod.global_batch()
    n0 = mod.SIZES[0]
    total = 0.0
    for lo, hi in ((0, n0), (n0, len(y))):
        logits = net(x[lo:hi])
        total = total + F.cross_entropy(logits, y[lo:hi]) + lam * mod.aux_objective(logits)
    (total / 2).backward()
    return {k: (p - mod.LR * p.grad).detach() for k, p in net.named_parameters()}


@pytest.mark.slow
@pytest.mark.distributed
def test_gradient_handler_under_ddp_matches_single_process(tmp_path):
    out = tmp_path / "ddp.pt"
    run_python([str(HERE / "_gradient_handler_ddp_worker.py"), str(out)])
    res = torch.load(out)
    mod = _worker()
    for lam in mod.LAMBDAS:
        ref = _reference_step(mod, lam)
        for k in ref:
            torch.testing.assert_close(res[lam][k], ref[k], atol=1e-6, rtol=1e-5)
    # Without a handler the step is main + aux (lam = 1): the seam changes nothing by default.
    for k, v in res["plain"].items():
        torch.testing.assert_close(v, res[1.0][k], atol=1e-6, rtol=1e-5)
    # The aux objective really moves the parameters (otherwise lam could not be told apart).
    assert (res[0.0]["weight"] - res[1.0]["weight"]).abs().max() > 1e-3
