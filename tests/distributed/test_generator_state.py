"""Callback RNG state survives a 2-rank resume: every rank replays its own stream exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests._dist import run_python
from tests.distributed import _generator_state_worker as worker

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_every_rank_resumes_its_own_stream(tmp_path):
    out = tmp_path / "result.pt"
    run_python([str(Path(worker.__file__)), str(out)], timeout=180)
    res = torch.load(out)
    assert res["shape"][0] == 2  # rank 0's checkpoint holds both ranks' states
    for rank in range(2):
        uninterrupted, resumed = res["rows"][rank]
        torch.testing.assert_close(resumed, uninterrupted, rtol=0, atol=0)
    assert not torch.equal(res["rows"][0][0], res["rows"][1][0])  # distinct streams per rank
    assert res["flags"].tolist() == [True, False]  # no saved stream for rank 1 -> caller reseeds
