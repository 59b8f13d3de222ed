"""The segmentation recipe under 2-rank DDP (gloo, CPU) equals one process replaying both ranks.

The worker (``_segmentation_worker.py``) trains 2 steps with Dice + CE and validates once. The
replay feeds each rank's recorded batch to one model, averages the two ranks' losses (what DDP's
gradient averaging gives; BatchNorm normalises each rank's batch alone, as the replay does) and
steps AdamW with one thread, as each rank had: the per-rank losses and the final parameters
must match (1e-5; with the same reduction order they agree bit for bit). The validation
metrics, synced over the ranks, must equal the metrics of the two validation shards evaluated
with each rank's own weights and BatchNorm statistics.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from lightning_losses.data import SegmentationDataModule
from lightning_losses.recipes.segmentation import SegmentationModule
from tests._dist import run_python

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
HERE = Path(__file__).resolve().parent


def _worker():
    spec = importlib.util.spec_from_file_location(
        "_segmentation_worker", HERE / "_segmentation_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _replay(w, ranks, train) -> SegmentationModule:
    torch.manual_seed(0)
    model = SegmentationModule(**w.MODEL)
    opt = model.configure_optimizers()
    model.train()
    for step in range(2):
        losses = []
        for r in ranks:
            idx = r["steps"][step]["index"]
            loss = model.compute_loss(model(train.images[idx]), train.masks[idx]).loss
            torch.testing.assert_close(
                r["steps"][step]["loss"], loss.detach(), atol=1e-5, rtol=1e-5
            )
            losses.append(loss)
        opt.zero_grad()
        (sum(losses) / len(losses)).backward()  # what DDP's gradient averaging gives
        opt.step()
    return model


def test_ddp_matches_single_process_replay(tmp_path):
    prefix = tmp_path / "out"
    run_python([str(HERE / "_segmentation_worker.py"), str(prefix)], cwd=tmp_path, timeout=400)
    ranks = [torch.load(f"{prefix}.rank{r}.pt", weights_only=False) for r in range(2)]
    w = _worker()
    dm = SegmentationDataModule(**w.DATA)
    dm.setup("fit")
    train, val, _ = dm.splits

    # Each rank trained on its own half of the epoch.
    assert [len(r["steps"]) for r in ranks] == [2, 2]
    seen = [torch.cat([s["index"] for s in r["steps"]]) for r in ranks]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())

    # One thread, as each rank had: the same reduction order. (With another order, AdamW's
    # g / (|g| + eps) turns the rounding noise of near-zero gradients into ±lr updates.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _replay(w, ranks, train)
    finally:
        torch.set_num_threads(threads)
    for r in ranks:
        for name, value in model.named_parameters():
            torch.testing.assert_close(
                r["params"][name], value.detach(), atol=1e-5, rtol=1e-5, msg=name
            )

    # Validation: rank r scores images r, r + 2, ... (DistributedSampler, no shuffle) with its
    # own BatchNorm statistics; the logged metrics are synced over both shards.
    assert ranks[0]["metrics"] == ranks[1]["metrics"]
    model.eval()
    with torch.no_grad():
        for rank, r in enumerate(ranks):
            model.load_state_dict({**r["params"], **r["buffers"]})
            shard = torch.arange(rank, len(val.masks), 2)
            batch = {"image": val.images[shard], "mask": val.masks[shard]}
            model._evaluate(batch, 1, "val")
    dice = model.metrics["val_dice"].compute()
    iou = model.metrics["val_iou"].compute()
    logged = ranks[0]["metrics"]
    for c in range(4):
        for name, value in ((f"val/dice_{c}", dice[c]), (f"val/iou_{c}", iou[c])):
            want = float("nan") if math.isnan(value) or value < 0 else float(value)
            assert logged[name] == pytest.approx(want, abs=1e-5, nan_ok=True), name
    # The figure is drawn once, by rank 0.
    assert len(list(tmp_path.rglob("segmentation_val.png"))) == 1
