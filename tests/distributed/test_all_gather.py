"""all_gather_with_grad: 2 gloo ranks == one process on the concatenated batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_losses.distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    get_rank,
    get_world_size,
)
from tests._dist import run_python
from tests.distributed import _all_gather_worker as worker

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_identity_when_not_distributed():
    x = torch.randn(3, 2, requires_grad=True)
    assert all_gather_with_grad(x) is x
    assert get_rank() == 0 and get_world_size() == 1
    assert not all_gather_no_grad(x).requires_grad


def test_two_ranks_match_single_process(tmp_path):
    out = tmp_path / "result.pt"
    run_python([str(Path(worker.__file__)), str(out)], timeout=180)
    res = torch.load(out)

    x, encoder = worker.make_inputs()
    z = encoder(x)
    loss = worker.batch_loss(z)
    loss.backward()

    assert res["world"] == 2
    assert res["ranks"].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]  # uneven shards, rank order
    torch.testing.assert_close(res["gathered"], z.detach())
    torch.testing.assert_close(res["loss"], loss.detach())
    for got, p in zip(res["grads"], encoder.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-6)
