"""The segmentation recipe on 2 gloo CPU ranks, DDP and FSDP2, equals one process replaying them.

One ``torchrun`` launch (``_segmentation_worker.py``) trains 2 steps with Dice + CE under DDP,
then under FSDP2 (``ModelParallelStrategy``, the recipe's ``configure_model``), and validates
once after each. The replay feeds each rank's recorded batch to one model, averages the two
ranks' losses (what DDP's gradient averaging and FSDP2's reduce-scatter give) and steps AdamW
with one thread, as each rank had: the per-rank losses and the final parameters must match
(1e-5; with the same reduction order they agree bit for bit, and so do the DDP and FSDP2 runs).

BatchNorm: in training every rank normalises its own batch with that batch's statistics, under
both strategies (as the replay does; no ``sync_batchnorm``), and updates its running statistics
with it. What happens to those running statistics differs: FSDP2 shards parameters only and never
touches buffers, so rank r's running mean and variance follow rank r's batches alone; DDP
(``broadcast_buffers=True``, Lightning's default) copies rank 0's buffers to every rank at each
forward, so after the validation forward every rank holds rank 0's statistics. The replay tracks
each rank's own statistics and checks both relations. The validation metrics, synced over the
ranks, must equal the metrics of the two validation shards evaluated with each rank's weights and
final BatchNorm statistics.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from lightning_losses.data import SegmentationDataModule
from lightning_losses.recipes.segmentation import SegmentationModule, _shard_units
from tests._dist import run_torchrun

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
HERE = Path(__file__).resolve().parent
KINDS = ("ddp", "fsdp")


def _worker():
    spec = importlib.util.spec_from_file_location(
        "_segmentation_worker", HERE / "_segmentation_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _buffers(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def _load_buffers(model, buffers) -> None:
    # New tensors, not copy_: the autograd graph of the rank before holds the old ones.
    for name, value in buffers.items():
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner), attr, value.clone())


def _replay(w, ranks, train):
    """One process, both ranks' batches; returns the model and each rank's own buffers."""
    torch.manual_seed(0)
    model = SegmentationModule(**w.MODEL)
    opt = model.configure_optimizers()
    model.train()
    rank_buffers = [_buffers(model) for _ in ranks]
    for step in range(2):
        losses = []
        for rank, r in enumerate(ranks):
            _load_buffers(model, rank_buffers[rank])  # the running statistics rank r updates
            idx = r["steps"][step]["index"]
            loss = model.compute_loss(model(train.images[idx]), train.masks[idx]).loss
            torch.testing.assert_close(
                r["steps"][step]["loss"], loss.detach(), atol=1e-5, rtol=1e-5
            )
            rank_buffers[rank] = _buffers(model)
            losses.append(loss)
        opt.zero_grad()
        (sum(losses) / len(losses)).backward()  # what DDP / FSDP2 gradient averaging gives
        opt.step()
    return model, rank_buffers


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("segmentation")
    prefix = tmp_path / "out"
    run_torchrun(str(HERE / "_segmentation_worker.py"), str(prefix), cwd=tmp_path, timeout=400)
    ranks = [torch.load(f"{prefix}.rank{r}.pt", weights_only=False) for r in range(2)]
    return tmp_path, ranks


@pytest.mark.parametrize("kind", KINDS)
def test_two_ranks_match_single_process_replay(runs, kind):
    tmp_path, results = runs
    ranks = [r[kind] for r in results]
    w = _worker()
    dm = SegmentationDataModule(**w.DATA)
    dm.setup("fit")
    train, val, _ = dm.splits

    # Each rank trained on its own half of the epoch.
    assert [len(r["steps"]) for r in ranks] == [2, 2]
    seen = [torch.cat([s["index"] for s in r["steps"]]) for r in ranks]
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    if kind == "fsdp":  # every encoder stage and decoder block, plus the network
        units = len(_shard_units(SegmentationModule(**w.MODEL).net))
        assert all(r["fsdp_modules"] == units + 1 for r in ranks)

    # One thread, as each rank had: the same reduction order. (With another order, AdamW's
    # g / (|g| + eps) turns the rounding noise of near-zero gradients into ±lr updates.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, rank_buffers = _replay(w, ranks, train)
    finally:
        torch.set_num_threads(threads)
    if kind == "ddp":  # rank 0's buffers, broadcast at every forward, last at validation
        rank_buffers = [rank_buffers[0]] * len(ranks)
    else:  # unsynchronised: the ranks' statistics differ
        assert not torch.equal(*(b["net.encoder.model.bn1.running_mean"] for b in rank_buffers))
    for rank, r in enumerate(ranks):
        for name, value in model.named_parameters():
            torch.testing.assert_close(
                r["params"][name], value.detach(), atol=1e-5, rtol=1e-5, msg=name
            )
        for name, value in rank_buffers[rank].items():
            torch.testing.assert_close(
                r["buffers"][name], value, atol=1e-5, rtol=1e-5, msg=f"rank {rank} {name}"
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
    # The figure is drawn once per run, by rank 0.
    assert len(list(tmp_path.rglob(f"out_{kind}_root/**/segmentation_val.png"))) == 1


def test_ddp_and_fsdp2_train_the_same_parameters(runs):
    # Same batches, same per-rank BatchNorm in training, gradients averaged: equal weights.
    _, results = runs
    for r in results:
        for name, value in r["ddp"]["params"].items():
            torch.testing.assert_close(r["fsdp"]["params"][name], value, atol=1e-6, rtol=1e-6)
