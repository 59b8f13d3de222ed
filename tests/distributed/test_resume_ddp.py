"""2-rank DDP mid-epoch resume of the NLP and recsys recipes (one launch, both recipes).

Each rank's resumed run trains on exactly the batches that rank saw after step `STOP` in the
full run and ends with the full run's weights: the loader position survives Lightning's
`DistributedSamplerWrapper` and the rank sharding, and each rank gets its own random states back
(the worker gives the ranks different dropout streams). Each rank also logs what the full run
logged after step `STOP`, the epoch means of the interrupted epoch included (each rank's
accumulators travel in the checkpoint: the synced losses need both, an unsynced probe its own).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests._dist import run_python
from tests.recipes.test_resume_mid_epoch import STOP, TOTAL, assert_same_rows

SCRIPT = Path(__file__).with_name("_resume_worker.py")


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_mid_epoch_resume_matches_the_full_run_on_every_rank(tmp_path):
    run_python([str(SCRIPT), str(tmp_path)], timeout=540)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for recipe in ("nlp", "recsys"):
        for rank, out in enumerate(ranks):
            full, resumed = out[recipe]["full"], out[recipe]["resumed"]
            assert [s for s, _ in full["batches"]] == list(range(TOTAL)), (recipe, rank)
            assert resumed["batches"] == full["batches"][STOP:], (recipe, rank)
            assert_same_rows(full["rows"], resumed["rows"])
            for name, value in full["weights"].items():
                torch.testing.assert_close(
                    resumed["weights"][name], value, rtol=0, atol=0, msg=f"{recipe} {name}"
                )
        # The ranks trained on different shards, and DDP kept their replicas equal.
        assert {f for _, f in ranks[0][recipe]["full"]["batches"]}.isdisjoint(
            f for _, f in ranks[1][recipe]["full"]["batches"]
        )
        for name, value in ranks[0][recipe]["resumed"]["weights"].items():
            torch.testing.assert_close(ranks[1][recipe]["resumed"]["weights"][name], value)
        # The logged losses are the means over the ranks (`sync_dist`): every rank logs the same
        # values, so the resumed epoch mean above needed both ranks' own accumulators back.
        epoch_means = [
            [
                r["train/loss_epoch"]
                for _, r in out[recipe]["resumed"]["rows"]
                if "train/loss_epoch" in r
            ]
            for out in ranks
        ]
        assert epoch_means[0] and epoch_means[0] == epoch_means[1], recipe
        # The unsynced per-rank probe differs by rank: each rank got its own accumulators back.
        probes = [
            [r["rank_probe"] for _, r in out[recipe]["resumed"]["rows"] if "rank_probe" in r]
            for out in ranks
        ]
        assert probes[0] and probes[0] != probes[1], recipe
    assert ranks[0]["recsys"]["part"]["batches"] == ranks[0]["recsys"]["full"]["batches"][:STOP]
