"""The distributed matrix: recipe x behaviour callback cells on 2 gloo ranks vs one process.

One ``torchrun`` launch (``_matrix_worker.py``) trains every case of ``CASES`` for 2 SGD steps
under DDP or FSDP2 (``ModelParallelStrategy``, the recipe's ``configure_model``), rank r on its
half of each fixed global batch of 8. The reference trains the same seeded module with the same
callbacks in this process, on the whole global batches. For every cell: the mean of the two
ranks' training losses equals the reference loss at each step (all the recipes here average
per-sample losses, and the reweighting callbacks return each rank's slice of the global
weights times the world size), and both ranks' final parameters equal the reference's.

Where the difference is inherent (``relation="per_rank"``: metric learning's per-rank negatives
without ``gather_distributed``, the MoE balance loss, a product of two batch means), the
reference is what DDP optimises instead: the mean of the losses of the two row slices, each
computed alone from the same RNG state (each rank draws its augmentations from the same seed).
For those cells, and for the gathering metric-learning loss, the test also checks that the other
relation gives a different result, so the documented difference is real. Segmentation
(``relation="per_rank_batchnorm"``, no ``sync_batchnorm``): the reference trains on the global
batch, but every BatchNorm layer normalises each rank's rows with their own statistics, as the
ranks do; the loss and the callbacks see the global batch. Masked image modeling draws MAE's
random masks from each rank's RNG: the worker records every rank's masks at every step and the
reference replays the concatenated global masks (``_global_masks``).
Tolerances (float32, different reduction order and sharding): losses ``1e-5`` absolute,
parameters ``atol=1e-6, rtol=1e-5`` (largest measured gaps: 5e-7 and 2e-7). A cell whose
callback the strategy refuses must fail with the callback's message. Each callback cell is also
checked to change the result: its reference differs from the recipe's reference without callback.

The matrix with every cell's test, and the cells that are not meaningful, is
``docs/design/distributed.md``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lightning_losses.nn.patches import num_masked
from tests._dist import run_torchrun
from tests.distributed import _matrix_worker as worker

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
HERE = Path(__file__).resolve().parent
CASES = {case.id: case for case in worker.CASES}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("matrix")
    prefix = tmp_path / "out"
    run_torchrun(str(HERE / "_matrix_worker.py"), str(prefix), cwd=tmp_path, timeout=400)
    return [torch.load(f"{prefix}.rank{r}.pt", weights_only=False) for r in range(2)]


_references: dict[tuple, dict] = {}


def _reference(case: worker.Case, masks: list[list[torch.Tensor]] | None = None) -> dict:
    """One process, the whole global batches (cached: the "none" runs are shared).

    ``masks``: the MIM masks to replay, per step and call (see ``_global_masks``).
    """
    tape = () if masks is None else tuple(m.numpy().tobytes() for ms in masks for m in ms)
    key = (case.recipe, case.callback, case.relation, tape)
    if key not in _references:
        _references[key] = worker.fit(case, devices=1, masks=masks)
    return _references[key]


def _global_masks(runs: list[dict]) -> list[list[torch.Tensor]] | None:
    """The masks of the global batch, per step and call: rank 0's rows, then rank 1's."""
    if runs[0]["masks"] is None:
        return None
    steps = [run["masks"] for run in runs]
    assert all(len(s) == worker.STEPS for s in steps)
    return [[torch.cat(ms) for ms in zip(*calls, strict=True)] for calls in zip(*steps)]


def test_every_case_ran_on_both_ranks(ranks):
    assert all(set(r) == set(CASES) for r in ranks)


@pytest.mark.parametrize("cell", [c for c, case in CASES.items() if case.refused is None])
def test_two_ranks_equal_one_process_on_the_global_batch(ranks, cell):
    case = CASES[cell]
    runs = [r[cell] for r in ranks]
    masks = _global_masks(runs)
    ref = _reference(case, masks)
    if case.strategy == "fsdp":  # the recipe's configure_model did shard
        assert all(run["fsdp_modules"] > 0 for run in runs)
    else:
        assert all(run["fsdp_modules"] == 0 for run in runs)
    for step in range(worker.STEPS):
        mean = torch.stack([run["losses"][step] for run in runs]).mean()
        torch.testing.assert_close(mean, ref["losses"][step], atol=1e-5, rtol=0, msg=f"step {step}")
    for rank, run in enumerate(runs):
        assert set(run["params"]) == set(ref["params"])
        for name, value in ref["params"].items():
            torch.testing.assert_close(
                run["params"][name], value, atol=1e-6, rtol=1e-5, msg=f"rank {rank} {name}"
            )
    if case.contrast:  # the relation matters: the other one gives another result
        other = {"global": "per_rank"}.get(case.relation, "global")
        alt = _reference(dataclasses.replace(case, relation=other), masks)
        gap = max((alt["params"][n] - v).abs().max().item() for n, v in ref["params"].items())
        assert gap > 1e-4, gap
    if case.callback != "none":  # the callback acts: without it the reference differs
        # SAM's two passes draw one mask (its replay_rng): the plain run replays each step's.
        plain_masks = None if masks is None else [calls[:1] for calls in masks]
        plain = _reference(dataclasses.replace(case, callback="none"), plain_masks)
        gap = max((plain["params"][n] - v).abs().max().item() for n, v in ref["params"].items())
        assert gap > 1e-4, gap


@pytest.mark.parametrize("cell", [c for c, case in CASES.items() if case.refused is not None])
def test_refused_cells_fail_with_the_callbacks_message(ranks, cell):
    for r in ranks:
        assert r[cell]["error"] is not None and CASES[cell].refused in r[cell]["error"]


MIM_CELLS = [c for c, case in CASES.items() if case.recipe == "mim" and case.refused is None]


def test_mim_masks_are_each_ranks_draws_and_the_replay_matters(ranks):
    """The MIM cells replay the ranks' random masks; without the replay one process differs.

    Each rank draws MAE's masks for its own rows from its global RNG. Seeded alike (as
    Lightning's ``seed_everything`` seeds every rank), the ranks draw the same masks for their
    i-th rows; SAM's two passes draw one mask (``replay_rng``).
    """
    assert MIM_CELLS
    patches = (worker.MIM_IMAGE // 4) ** 2
    for cell in MIM_CELLS:
        runs = [r[cell] for r in ranks]
        for calls0, calls1 in zip(runs[0]["masks"], runs[1]["masks"], strict=True):
            assert len(calls0) == (2 if CASES[cell].callback == "sam" else 1)
            for m0, m1 in zip(calls0, calls1, strict=True):
                assert m0.shape == (worker.GLOBAL_BATCH // 2, patches)
                assert (m0.sum(1) == num_masked(patches, 0.75)).all()  # MAE's uniform masks
                assert torch.equal(m0, m1)
                assert torch.equal(m0, calls0[0])
        masks = _global_masks(runs)
        ref = _reference(CASES[cell], masks)
        assert all(torch.equal(a, b) for s, t in zip(ref["masks"], masks) for a, b in zip(s, t))
    case = CASES["mim-none-ddp"]
    own = worker.fit(case, devices=1)  # one process drawing its own masks for 8 rows
    ref = _reference(case, _global_masks([r["mim-none-ddp"] for r in ranks]))
    assert not torch.equal(own["masks"][0][0], ref["masks"][0][0])
    gap = max((own["params"][n] - v).abs().max().item() for n, v in ref["params"].items())
    assert gap > 1e-4, gap
