"""Chunked linear cross-entropy under FSDP2 (2 gloo CPU ranks) == one process on the global batch.

Tolerance: 1e-5 relative / 1e-6 absolute (float32; FSDP2 sums the two ranks' gradients in a
different order than one process).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests._dist import run_python
from tests.distributed import _chunked_ce_fsdp_worker as worker

pytestmark = [pytest.mark.slow, pytest.mark.distributed]


def test_fsdp2_loss_and_full_gradients_match_single_process(tmp_path):
    out = tmp_path / "result.pt"
    run_python([str(Path(worker.__file__)), str(out)], timeout=240)
    res = torch.load(out, weights_only=False)

    model = worker.make_model()
    ids, labels = worker.make_batch()
    tok = model(ids, labels)
    loss = tok.sum() / (labels != -100).sum()
    loss.backward()
    assert (tok[labels == -100] == 0).all() and (tok[labels != -100] > 0).all()
    # The two ranks' local token sums add up to the global one.
    torch.testing.assert_close(res["inside_sum"]["per_token"].sum(), tok.detach().sum())
    for mode in ("inside", "inside_sum", "after"):
        got = res[mode]
        if mode != "inside_sum":
            torch.testing.assert_close(got["per_token"], tok.detach(), rtol=1e-5, atol=1e-6)
        assert sorted(got["grads"]) == sorted(n for n, _ in model.named_parameters())
        for name, p in model.named_parameters():
            torch.testing.assert_close(
                got["grads"][name], p.grad, rtol=1e-5, atol=1e-6, msg=f"{mode}: {name}"
            )
