"""LossReweighting under 2-rank DDP equals the documented single-process objective."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_losses.callbacks import loss_weights
from tests._dist import run_python

HERE = Path(__file__).resolve().parent


def _worker():
    spec = importlib.util.spec_from_file_location(
        "_reweighting_ddp_worker", HERE / "_reweighting_ddp_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sgd_step(mod, objective):
    net = torch.nn.Linear(6, 4)
    net.load_state_dict(mod.init_state())
    objective(net).backward()
    return {k: (p - mod.LR * p.grad).detach() for k, p in net.named_parameters()}


@pytest.mark.slow
@pytest.mark.distributed
def test_global_and_local_normalization_match_single_process(tmp_path):
    out = tmp_path / "ddp.pt"
    run_python([str(HERE / "_reweighting_ddp_worker.py"), str(out)])
    res = torch.load(out)
    mod = _worker()
    x, y = mod.global_batch()
    n0 = mod.SIZES[0]

    def global_objective(net):
        per = F.cross_entropy(net(x), y, reduction="none")
        w = loss_weights(per.detach(), "linupper", kl_reg=0.5)
        return (w * per).sum()

    def local_objective(net):
        per = F.cross_entropy(net(x), y, reduction="none")
        parts = [per[:n0], per[n0:]]
        # Each rank normalises its own batch; DDP averages the two ranks' gradients.
        return sum((loss_weights(p.detach(), "linupper", kl_reg=0.5) * p).sum() for p in parts) / 2

    ref_global = _sgd_step(mod, global_objective)
    ref_local = _sgd_step(mod, local_objective)
    for k in ref_global:
        torch.testing.assert_close(res["global"][k], ref_global[k], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(res["local"][k], ref_local[k], atol=1e-6, rtol=1e-5)
    # The two scopes really differ (otherwise the test could not tell them apart).
    assert (res["global"]["weight"] - res["local"]["weight"]).abs().max() > 1e-4
    with torch.no_grad():
        net = torch.nn.Linear(6, 4)
        net.load_state_dict(mod.init_state())
        per = F.cross_entropy(net(x), y, reduction="none")
    torch.testing.assert_close(res["global_weights"], loss_weights(per, "linupper", kl_reg=0.5))
