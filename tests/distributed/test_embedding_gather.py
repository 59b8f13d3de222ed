"""`gather_distributed=True` on 2 gloo ranks == one process on the concatenated batch.

Generic over every registered loss whose constructor takes `gather_distributed` (the contrastive
and metric families), discovered through the registry and driven by its `LossSpec` example, in
ONE subprocess launch (tests/distributed/_embedding_gather_worker.py).

How a rank's loss relates to the global one (the semantics `EmbeddingLoss` declares as
`DistributedSemantics.GATHER`): each rank scores its local anchors against the batch gathered
from all ranks, so

- `reduction="none"` is local: the ranks' outputs, concatenated in rank order, equal the
  single-process output on the global batch;
- `reduction="mean"` is the mean over local anchors; with equal shards the mean of the rank
  means equals the global mean. Autograd through the gather sums, on the rank that owns a row,
  the gradients every rank's loss sends to it, so a rank's input gradient is W times the
  gradient of the global mean (DDP's averaging of parameter gradients divides by W again), and
  the loss parameters' gradients averaged over ranks equal the global ones.

Everything in float64, compared within 1e-5 (absolute and relative; observed differences are
~1e-15). Also checked: `gather_batch` on uneven shards (3 and 5 rows) and the number of
collectives per call (the row-count exchange is skipped once equal shards were seen).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_losses import get_loss
from tests._dist import run_python
from tests.distributed import _embedding_gather_worker as worker

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

TOL = {"rtol": 1e-5, "atol": 1e-5}
WORLD = 2


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedding_gather") / "result"
    run_python([str(Path(worker.__file__)), str(out)], timeout=300)
    return [torch.load(f"{out}.{r}", weights_only=False) for r in range(WORLD)]


def test_every_gather_loss_was_run(results):
    names = worker.gather_loss_names()
    # The contrastive family's batch losses at least; the metric family adds its own.
    assert {"info_nce", "nt_xent", "supcon", "sigmoid_contrastive", "alignment_uniformity"} <= set(
        names
    )
    for r in results:
        assert sorted(r["losses"]) == names


@pytest.mark.parametrize("name", worker.gather_loss_names())
def test_two_ranks_equal_one_process_on_the_global_batch(results, name):
    ex = worker.global_example(name)
    inputs = [x.clone().requires_grad_(True) for x in ex.inputs]
    none = get_loss(name, gather_distributed=True, reduction="none").double()
    torch.manual_seed(0)
    module = worker.build(name)
    expected_none = none(*inputs, *ex.targets, **ex.kwargs).detach()
    mean = module(*inputs, *ex.targets, **ex.kwargs)
    params = [p for p in module.parameters() if p.requires_grad]
    grads = torch.autograd.grad(mean, [*inputs, *params], allow_unused=True)

    ranks = [r["losses"][name] for r in results]
    torch.testing.assert_close(torch.cat([r["none"] for r in ranks]), expected_none, **TOL)
    torch.testing.assert_close(torch.stack([r["mean"] for r in ranks]).mean(), mean.detach(), **TOL)
    for i, x in enumerate(inputs):
        got = torch.cat([r["input_grads"][i] for r in ranks]) / WORLD
        want = grads[i] if grads[i] is not None else torch.zeros_like(x)
        if x.shape[0] == worker.GLOBAL_N:
            torch.testing.assert_close(got, want, **TOL)
    for j, p in enumerate(params):
        want = grads[len(inputs) + j]
        want = torch.zeros_like(p) if want is None else want
        for r in ranks:
            torch.testing.assert_close(r["param_grads"][j], want, **TOL)


def test_gather_batch_uneven_shards_and_gradient(results):
    full = torch.arange(16, dtype=torch.float64).reshape(8, 2)
    weight = torch.arange(1, 17, dtype=torch.float64).reshape(8, 2)
    for rank, r in enumerate(results):
        g = r["gather_batch"]
        torch.testing.assert_close(g["uneven_z"], full)
        assert g["uneven_y"].tolist() == [10 * i for i in range(8)]
        assert g["uneven_offset"] == sum(worker.UNEVEN[:rank])
        start = g["uneven_offset"]
        # Both ranks' losses send `weight` to every row: the owner receives the sum.
        torch.testing.assert_close(
            g["uneven_grad"], WORLD * weight[start : start + worker.UNEVEN[rank]]
        )


def test_size_exchange_is_skipped_for_equal_shards(results):
    for r in results:
        g = r["gather_batch"]
        # Uneven shards: sizes + embeddings + labels on every call.
        assert g["uneven_calls"] == [3, 3]
        # Equal shards: the first call exchanges sizes, later calls only gather the data.
        assert g["equal_calls"] == [3, 2, 2]
        assert (g["off_calls"], g["off_rows"], g["off_offset"]) == (0, 6, 0)
