"""A `torch.compile`d network trains with `LossMixin` and each behaviour callback, like eager.

For each case of `tests/callbacks/_cases.py`, the module's network (the submodule named by the
case) is compiled in place with `nn.Module.compile` (backend `aot_eager`, fast on CPU; one case
with inductor is marked `slow`); the callbacks themselves stay eager. A few optimizer steps must
give finite losses, and the same losses and parameters as the eager run to a float32 tolerance.
Where the network compiles as one graph with each callback (`fullgraph=True`), the test says
so; the graph breaks that remain are listed in `docs/design/callbacks.md`.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback
from torch._dynamo.utils import counters

from tests._lightning import quiet_trainer
from tests.callbacks._cases import CASES, Case
from tests.callbacks._resume import ResumableLoader

STEPS = 4
# Networks with data-dependent shapes, compiled with graph breaks there (see the design page):
# the MoE feed-forward splits tokens by expert (`bincount(...).tolist()`), and the MAE encoder
# keeps `L - n_mask` patches, `n_mask` read from the mask HardPatchMining writes (`int(...)`).
_PARTIAL = {"balancing", "hpm"}


class _Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(loss.detach().clone())


def _fit(case: Case, backend: str | None):
    torch._dynamo.reset()
    module = case.module()
    if backend is not None:
        network = getattr(module, case.network)
        fullgraph = case_name(case) not in _PARTIAL
        if case.methods:  # e.g. matrix factorisation: the recipe calls embeddings() and score()
            for method in case.methods:
                compiled = torch.compile(
                    getattr(network, method), backend=backend, fullgraph=fullgraph
                )
                setattr(network, method, compiled)
        else:
            network.compile(backend=backend, fullgraph=fullgraph)
    counters.clear()
    record = _Losses()
    trainer = quiet_trainer(
        max_steps=STEPS,
        callbacks=[case.callback(), record],
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    trainer.fit(module, ResumableLoader(case.batches()))
    if backend is not None:  # the compiled code really ran
        assert counters["stats"]["unique_graphs"] >= 1, case_name(case)
    params = {n: p.detach().clone() for n, p in module.named_parameters()}
    return torch.stack(record.losses), params


def case_name(case: Case) -> str:
    return next(name for name, c in CASES.items() if c is case)


def _check(name: str, backend: str, atol: float, rtol: float) -> None:
    case = CASES[name]
    eager_losses, eager_params = _fit(case, None)
    losses, params = _fit(case, backend)
    assert len(losses) == STEPS and torch.isfinite(losses).all(), name
    torch.testing.assert_close(losses, eager_losses, atol=atol, rtol=rtol, msg=name)
    assert params.keys() == eager_params.keys()
    for key, value in params.items():
        torch.testing.assert_close(value, eager_params[key], atol=atol, rtol=rtol, msg=key)
    # The run trained: the parameters moved.
    start = dict(case.module().named_parameters())
    assert any(not torch.equal(start[k].detach(), v) for k, v in params.items())


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_network_trains_like_eager(name):
    _check(name, "aot_eager", atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_inductor_compiled_network_with_sam_trains_like_eager():
    # SAM runs the compiled network twice per step (at w and at w + eps) and restores w in place.
    _check("sam", "inductor", atol=1e-5, rtol=1e-4)
