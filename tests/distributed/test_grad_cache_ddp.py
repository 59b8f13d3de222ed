"""GradCache under 2-rank DDP with a gathered InfoNCE loss == one process on the global batch.

The worker (tests/distributed/_grad_cache_ddp_worker.py) trains two SGD steps on 2 gloo ranks,
each rank encoding its half of the batch in chunks of 3 and scoring its anchors against the
gathered batch; here the same model trains on the global batches in one process with a plain
forward and no gather. Each parameter's gradient reaches DDP's reducer once per backward (DDP
raises otherwise), DDP averages over ranks, and the gather's backward sums what every rank's
loss sends to a row: together the global mean's gradient. Tolerance: float32 round-off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests._dist import run_python
from tests._lightning import quiet_trainer
from tests.distributed import _grad_cache_ddp_worker as worker

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_grad_cache_ddp_equals_one_process_on_the_global_batch(tmp_path):
    out = tmp_path / "ddp.pt"
    run_python([str(Path(worker.__file__)), str(out)])
    ddp = torch.load(out)

    model = worker.TwoTower(chunk=None, gather=False)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(*worker.data()), batch_size=worker.GLOBAL_BATCH)
    quiet_trainer(max_steps=worker.STEPS, enable_checkpointing=False).fit(model, loader)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(ddp[name], value, atol=2e-6, rtol=1e-5, msg=name)
        assert not torch.equal(value, initial[name]), f"{name} did not train"
