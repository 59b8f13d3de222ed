"""The recsys recipe under 2-rank DDP: each rank resamples its own users with its own stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_losses.data import InteractionDataModule
from lightning_losses.data.interactions import TrainBatches
from tests._dist import run_python

SCRIPT = Path(__file__).with_name("_recsys_ddp_worker.py")


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_ranks_resample_their_own_users_with_distinct_streams(tmp_path):
    prefix = tmp_path / "out"
    run_python([str(SCRIPT), str(prefix)], timeout=240)
    r0, r1 = (torch.load(f"{prefix}.rank{r}.pt", weights_only=False) for r in (0, 1))

    # Distinct RNG streams: rank r seeds its generator with seed + r.
    for r, out in enumerate((r0, r1)):
        assert torch.equal(out["initial_state"], torch.Generator().manual_seed(11 + r).get_state())
    assert not torch.equal(r0["initial_state"], r1["initial_state"])

    # Each rank trains on its own share of the epoch: rank r gets batches r, r + 2, ...
    dm = InteractionDataModule(
        num_users=40, num_items=120, positives_per_user=12, batch_size=64, pool_size=4, seed=0
    )
    dm.setup()
    ds = TrainBatches(dm.data, batch_size=64, pool_size=4, num_negatives=1, seed=0)
    single = list(ds)
    assert r0["steps"] == r1["steps"] == len(single) // 2
    for r, out in enumerate((r0, r1)):
        assert len(out["users"]) == len(single) // 2
        for step, users in enumerate(out["users"]):
            assert torch.equal(users, single[2 * step + r]["user"])
    assert not torch.equal(r0["users"][0], r1["users"][0])

    # DDP keeps the replicas in sync, and the synced metrics agree across ranks.
    assert torch.equal(r0["weights"], r1["weights"])
    assert r0["metrics"] == r1["metrics"] and "val/recall@20" in r0["metrics"]
    assert r0["history"] and r1["history"]
