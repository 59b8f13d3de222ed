"""Every registered loss compiles with `torch.compile(fullgraph=True)` and matches eager.

One graph per loss, no graph break: a data-dependent branch (`if mask.any()`), a host sync
(`.item()`) or boolean-mask indexing in a loss's compiled path fails here. Each loss is compiled
with `validate_args=False` (the data checks are host syncs by design), then called on two batch
sizes with the same compiled object (the second one recompiles with a dynamic batch size), with
and without ignored rows where the loss takes `ignore_index` — Liger's fused linear
cross-entropy once returned a silently wrong loss under compile exactly in that case. Value and
input gradient must equal eager's.

The registry-wide sweep uses the `aot_eager` backend: it captures the same graph (dynamo) and
traces the same forward/backward (AOTAutograd) as inductor, at a fraction of the compile time
on a 2-core CI machine. The headline losses are also compiled with inductor, the default backend
(`slow`: each costs seconds of C++ compilation).
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses import get_loss_class, list_losses
from tests.losses.specs import LossSpec, all_specs
from tests.losses.specs.examples import LossExample
from tests.losses.test_contract import make_example, with_ignored

ALL_SPECS = all_specs()
SPECS = [ALL_SPECS[n] for n in list_losses() if n in ALL_SPECS]
# Losses that cannot be one static graph, with the reason (kept strict: an entry that starts
# compiling must leave this list).
NOT_FULLGRAPH: dict[str, str] = {
    "partial_fc": (
        "the sampled class set keeps every class of the batch, so its size depends on the "
        "labels (torch.unique); it compiles with a graph break at the sampling"
    ),
}
INDUCTOR_NAMES = (
    "cross_entropy",
    "focal",
    "poly",
    "supcon",
    "bpr",
    "dpo",
    "chunked_linear_cross_entropy",
)


def _value_and_grads(fn, ex: LossExample, targets: tuple[torch.Tensor, ...]):
    inputs = [x.detach().clone().requires_grad_() for x in ex.inputs]
    out = fn(*inputs, *targets, **ex.kwargs)
    out.sum().backward()
    return out.detach(), [x.grad for x in inputs]


def _check_compiles(spec: LossSpec, backend: str) -> None:
    torch._dynamo.reset()
    cls = get_loss_class(spec.name)
    eager = cls(validate_args=False)
    module = cls(validate_args=False)
    module.load_state_dict(eager.state_dict())  # e.g. learnable temperatures: the same start
    # `dynamic=None`, the default a user gets: the first call compiles for its shapes, the
    # second batch size recompiles once with a dynamic batch dimension (hyperparameter floats
    # stay constants, as they are in a training run).
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    for n in (6, 9):
        ex = make_example(spec, n)
        cases = [ex.targets]
        if spec.ignore_index and ex.class_target is not None:
            cases.append(with_ignored(ex)[1])
        for targets in cases:
            want, want_grads = _value_and_grads(eager, ex, targets)
            got, got_grads = _value_and_grads(compiled, ex, targets)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
            for g, w in zip(got_grads, want_grads, strict=True):
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(
            s,
            marks=pytest.mark.xfail(
                s.name in NOT_FULLGRAPH, strict=True, reason=NOT_FULLGRAPH.get(s.name, "")
            ),
        )
        for s in SPECS
    ],
    ids=[s.name for s in SPECS],
)
def test_loss_compiles_as_one_graph_and_matches_eager(spec):
    _check_compiles(spec, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", INDUCTOR_NAMES)
def test_headline_losses_compile_with_inductor(name):
    _check_compiles(ALL_SPECS[name], "inductor")
