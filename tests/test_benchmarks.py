"""Every benchmark script's smoke mode runs and writes its outputs, so `make bench` cannot rot.

The scripts run in this process (imported from their paths through `benchmarks/run_all.py`,
`main(["--smoke", "--out", tmp])`): one import of torch and Lightning instead of one per script.
Each smoke run must write its JSON, markdown table and figure into the temporary directory, with
the expected content, and nothing into `benchmarks/results/` or `docs/assets/`.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
PROTECTED = (BENCH / "results", ROOT / "docs" / "assets")


def _load_run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_benchmarks_run_all", BENCH / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUN_ALL = _load_run_all()


# -- what each smoke run must produce: the JSON's content, beyond the files existing --------------


def _bloop(r: dict, mod: ModuleType) -> None:
    assert set(r) >= {"least_squares", "digits", "cost", "config", "max_plain_loop_gap"}
    assert set(r["least_squares"]) == set(mod.LS_METHODS)
    assert set(r["digits"]) == set(mod.DIG_METHODS)
    assert r["max_plain_loop_gap"] < 1e-4  # the callback matches the plain loop
    for row in r["cost"].values():
        assert row["summed_ms"] > 0 and row["bloop_ms"] > 0 and row["ratio"] > 0


def _grad_cache(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "rows"}
    assert r["rows"][0]["method"] == "full batch"
    for row in r["rows"][1:]:
        assert row["max_grad_diff"] < 1e-5 and row["memory_ratio"] < 1.0


def _grokking(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "results"}
    assert list(r["results"]) == [arm[0] for arm in mod.ARMS]
    keys = {"steps_to_generalise", "train_acc", "test_acc", "softmax_collapse", "curve"}
    for runs in r["results"].values():
        for run in runs:
            assert keys <= set(run)


def _gpu_readiness(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "losses", "recipes", "memory"}
    assert r["meta"]["dry_run"] and "CPU" in r["meta"]["device"]
    assert [row["loss"] for row in r["losses"]] == list(mod.DRY_RUN_LOSSES)
    assert all(row["ok"] for row in r["losses"]), r["losses"]
    assert [row["recipe"] for row in r["recipes"]] == mod.base_recipes()
    assert {"vision/digits_noisy.yaml", "recsys/mf_bpr.yaml"} <= set(mod.base_recipes())
    assert "recsys/pld.yaml" not in mod.base_recipes()  # an overlay
    assert all(row["ok"] for row in r["recipes"]), "a base recipe's config is missing"
    assert all("--trainer.precision=bf16-mixed" in row["command"] for row in r["recipes"])
    assert [row["ok"] for row in r["memory"]] == [True]


def _hpm(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "summary", "runs"}
    assert {(row["task"], row["method"]) for row in r["summary"]} == {
        (task, method) for task in mod.TASKS for method in ("random", "hpm")
    }
    for row in r["summary"]:
        keys = {"rank_acc", "loss_random_masks", "loss_hpm_masks", "probe_acc", "step_ms"}
        assert keys <= set(row)
        assert ("ink_share_hard" in row) == (row["task"] == "strokes")


def _lm_memory(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "rows"}
    measured, estimated = r["rows"]  # the larger point is too big for naive: estimated
    assert {"naive", "chunked", "chunked_none", "peak_ratio", "none_peak_ratio"} <= set(measured)
    assert measured["loss_abs_diff"] < 1e-4
    assert {"chunked", "naive_estimate_mib", "peak_ratio_vs_estimate"} <= set(estimated)
    assert "naive" not in estimated


def _losses_speed(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "rows", "skipped"}
    assert r["skipped"] == []  # a case that no longer finds its loss would hide here
    assert [row["loss"] for row in r["rows"]] == [c.name for c in mod.build_cases()]
    for row in r["rows"]:
        assert {"ours_ms", "peer_ms", "time_ratio", "saved_ratio", "value_abs_diff"} <= set(row)


def _macro_auc(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "summary", "runs"}
    assert set(r["summary"]) == set(mod.LOSSES)
    for s in r["summary"].values():
        for key in ("test_macro_auroc", "test_rare_auroc"):
            assert 0.0 <= s[key]["mean"] <= 1.0
    assert len(r["runs"]) == len(mod.LOSSES)
    for row in r["runs"]:
        assert {"lr", "weight_decay", "val_macro_auroc"} <= set(row)


def _metric_learning(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "rows"}
    assert [row["method"] for row in r["rows"]] == list(mod.METHODS)
    for row in r["rows"]:
        assert 0 <= row["recall@1_mean"] <= 1 and 0 <= row["map_mean"] <= 1


def _moe_balancing(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"config", "total_s", "summary", "runs"}
    assert set(r["summary"]) == {"none", "aux 0.01", "aux 0.1", "loss-free u=0.01"}
    for arm in r["summary"].values():
        assert set(arm) == {"maxvio_global", "val_ppl", "step_ms", "overhead"}
        assert len(arm["val_ppl"]) == 1
    # The smoke run also runs the paper regime (real text, held-out and shifted evaluation).
    out = Path(r["config"]["out"])
    long = json.loads((out / "moe_balancing_long.json").read_text())
    assert long["eval_sets"] == [
        "held-out (train dist.)",
        "licences (shift)",
        "grammar (strong shift)",
    ]
    assert set(long["summary"]) == set(r["summary"])
    for arm in long["summary"].values():
        assert all(len(values) == 1 for values in arm.values())
        assert 0 <= arm["maxvio_global | licences (shift)"][0] <= 3  # top-2 of 8: at most 3
    assert (out / "moe_balancing_long.png").stat().st_size > 0


def _multi_task(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "toy", "digits", "callback_gap", "cost"}
    assert set(r["toy"]) == set(mod.METHODS) == set(r["digits"])
    assert r["callback_gap"] < 1e-4  # the callback equals the plain-PyTorch loop
    assert r["cost"]["direction_gap"] < 1e-4  # the same direction as torchjd
    assert r["cost"]["ours_ms"] > 0 and r["cost"]["torchjd_ms"] > 0
    assert r["cost"]["gramian_direction_gap"] < 1e-4  # the Gramian-only path = the Jacobian path
    assert r["cost"]["gramian_ms"] > 0 and r["cost"]["autogram_ms"] > 0


def _noisy_labels(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "results"}
    assert list(r["results"]) == [label for label, _, _ in mod.LOSSES]
    columns = [f"{kind} {int(rate * 100)}%" for kind, rate in mod.SETTINGS]
    for per_setting in r["results"].values():
        assert list(per_setting) == columns
        for metrics in per_setting.values():
            assert set(metrics) == {"test_acc", "test_ece", "memorised_noisy"}


def _pld(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"config", "runs", "recipe_check", "overhead", "summary", "selection"}
    assert {t["method"] for t in r["summary"]} == set(mod.METHODS)
    for t in r["summary"]:
        assert {"val_recall@20", "recall@20", "ndcg@20", "noisy_share_last"} <= set(t)
    (sel,) = r["selection"]  # the smoke run has one noise rate
    for method in mod.METHODS:  # each method at its best *validation* score, never test
        rows = [t for t in r["summary"] if t["method"] == method]
        best = max(rows, key=lambda t: t["val_recall@20"]["mean"])
        assert sel[method]["config"] == best["config"]
    assert len(sel["paired"]["recall@20"]["values"]) == r["config"]["seeds"]
    assert [row["model"] for row in r["recipe_check"]] == list(mod.BASES)
    assert [o["model"] for o in r["overhead"]] == [
        "mf (a) callback",
        "mf (b) inline",
        "lightgcn (b) inline",
        "lightgcn (a) callback",
    ]


def _reweighting(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"config", "corpora", "overhead", "runs"}
    assert set(r["corpora"]) == {"clean", "corrupted"}
    for corpus in r["corpora"].values():
        assert set(corpus) == {"uniform", "linupper"}
    assert set(r["corpora"]["corrupted"]["linupper"]["kind_weight"]) == set(mod.KINDS)
    assert set(r["overhead"]) == {"linupper"}


def _reweighting_toy(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "results"}
    assert list(r["results"]) == [str(lr) for lr in mod.LRS]
    for per_lr in r["results"].values():
        assert [row["strategy"] for row in per_lr["rows"]] == list(mod.STRATEGIES)


def _quantile_regression(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "summary", "runs"}
    assert [row["variant"] for row in r["summary"]] == list(mod.VARIANTS)
    for row in r["summary"]:
        assert {"pinball", "coverage_80", "crossing_rate", "interval_width"} <= set(row)
        assert 0.0 <= row["coverage_80"]["mean"] <= 1.0
        if row["variant"] in ("sort", "increments"):
            assert row["crossing_rate"]["max"] == 0.0  # non-crossing by construction


def _robust_regression(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "summary", "runs"}
    assert {(s["rate"], s["loss"]) for s in r["summary"]} == {
        (rate, loss) for rate in mod.SMOKE["rates"] for loss in mod.LOSSES
    }
    for s in r["summary"]:
        assert 0 <= s["mean"] < float("inf")


def _sam(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "results"}
    assert list(r["results"]) == [s for s, _ in mod.SETTINGS]
    for arms in r["results"].values():
        assert list(arms) == [a for a, _ in mod.ARMS]
        for row in arms.values():
            assert {"lr", "wd", "test_acc", "sharpness", "step_ms", "cost_ratio"} <= set(row)


def _segmentation_imbalance(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "results"}
    assert list(r["results"]) == [label for label, _, _ in mod.LOSSES]
    n = len(r["meta"]["class_names"])
    for row in r["results"].values():
        assert set(row) == {"lr", "val_by_lr", "dice", "iou", "dice_fg", "miou"}
        assert row["lr"] in r["meta"]["lr_grid"] and len(row["dice"]) == len(row["iou"]) == n
        assert all(0 <= c["mean"] <= 1 for c in row["dice"] + row["iou"])


def _vat_semi(r: dict, mod: ModuleType) -> None:
    assert set(r) == {"meta", "summary", "paired_vat_minus_supervised", "runs"}
    assert set(r["summary"]) == set(mod.ARMS)
    for run in r["runs"]:
        assert run["chosen"] in mod.GRIDS[run["arm"]]
        assert 0.0 <= run["test_acc"] <= 1.0
        # the configuration kept is the best on validation, never chosen on test
        assert run["val_acc"] == max(run["val_by_config"].values())


CHECKS: dict[str, Callable[[dict, ModuleType], None]] = {
    "bloop": _bloop,
    "gpu_readiness": _gpu_readiness,
    "grad_cache": _grad_cache,
    "grokking": _grokking,
    "hpm": _hpm,
    "lm_memory": _lm_memory,
    "losses_speed": _losses_speed,
    "macro_auc": _macro_auc,
    "metric_learning": _metric_learning,
    "moe_balancing": _moe_balancing,
    "multi_task": _multi_task,
    "noisy_labels": _noisy_labels,
    "pld": _pld,
    "quantile_regression": _quantile_regression,
    "reweighting": _reweighting,
    "reweighting_toy": _reweighting_toy,
    "robust_regression": _robust_regression,
    "sam": _sam,
    "segmentation_imbalance": _segmentation_imbalance,
    "vat_semi": _vat_semi,
}
NO_FIGURE = {"gpu_readiness", "losses_speed", "reweighting_toy"}


def _snapshot() -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for folder in PROTECTED for p in folder.rglob("*")}


@pytest.fixture
def isolated() -> Iterator[None]:
    """Undo the process-wide settings that a benchmark makes for its own measurements."""
    threads, environ = torch.get_num_threads(), dict(os.environ)
    pl_log = logging.getLogger("lightning.pytorch")
    level, modules = pl_log.level, set(sys.modules)
    before = _snapshot()
    with torch.random.fork_rng(devices=[]):
        yield
    assert _snapshot() == before, "a smoke run wrote into benchmarks/results/ or docs/assets/"
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)
    os.environ.clear()
    os.environ.update(environ)
    pl_log.setLevel(level)
    for name in set(sys.modules) - modules:  # the imported scripts, not their dependencies
        if name.startswith("_benchmark_"):
            del sys.modules[name]


def test_every_script_has_a_smoke_check():
    assert [p.stem for p in RUN_ALL.SCRIPTS] == sorted(CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_smoke(name: str, tmp_path: Path, isolated: None) -> None:
    module = RUN_ALL.load(BENCH / f"{name}.py")
    module.main(["--smoke", "--out", str(tmp_path)])
    expected = {f"{name}{suffix}" for suffix in (".json", ".md", ".png")}
    if name in NO_FIGURE:
        expected.remove(f"{name}.png")
    written = {p.name for p in tmp_path.iterdir() if p.is_file()}
    assert expected <= written, f"missing {sorted(expected - written)}"
    for file in expected:
        assert (tmp_path / file).stat().st_size > 0
    result = json.loads((tmp_path / f"{name}.json").read_text())
    CHECKS[name](result, module)
    assert "|---" in (tmp_path / f"{name}.md").read_text()  # a markdown table


def test_output_paths() -> None:
    common = RUN_ALL.load(BENCH / "_common.py")
    full = common.parse(common.make_parser("A benchmark.", "demo", plot=True), [])
    assert (full.out, full.plot, full.smoke) == (
        BENCH / "results",
        common.ASSETS / "demo.png",
        False,
    )
    named = common.parse(common.make_parser(None, "demo"), ["--name", "demo.long"])
    assert common.output(named, ".json") == BENCH / "results" / "demo.long.json"
    assert "plot" not in named
    smoke = common.parse(common.make_parser(None, "demo", plot=True), ["--smoke"])
    try:  # a smoke run without --out gets a fresh temporary directory, figure included
        assert smoke.out.is_dir() and not smoke.out.resolve().is_relative_to(ROOT)
        assert smoke.plot == smoke.out / "demo.png"
    finally:
        smoke.out.rmdir()
    for bad in (["--out", str(BENCH / "results" / "x")], ["--plot", str(common.ASSETS / "x.png")]):
        with pytest.raises(SystemExit):
            common.parse(common.make_parser(None, "demo", plot=True), ["--smoke", *bad])


def test_smoke_refuses_to_write_into_results(isolated: None) -> None:
    module = RUN_ALL.load(BENCH / "reweighting_toy.py")
    with pytest.raises(SystemExit):
        module.main(["--smoke", "--out", str(BENCH / "results")])


def test_run_all_smoke(tmp_path: Path, isolated: None) -> None:
    assert RUN_ALL.main(["--smoke", "--out", str(tmp_path), "--only", "reweighting_toy"]) == 0
    assert (tmp_path / "reweighting_toy.json").exists()
    with pytest.raises(SystemExit):
        RUN_ALL.main(["--smoke", "--only", "no_such_benchmark"])


@pytest.mark.slow
def test_segmentation_imbalance_tversky_grid_smoke(tmp_path: Path, isolated: None) -> None:
    module = RUN_ALL.load(BENCH / "segmentation_imbalance.py")
    module.main(["--smoke", "--out", str(tmp_path), "--tversky-grid"])
    result = json.loads((tmp_path / "segmentation_imbalance_tversky.json").read_text())
    assert [(r["alpha"], r["beta"]) for r in result["rows"]] == [(0.3, 0.3), (0.7, 0.3)]
    assert "|---" in (tmp_path / "segmentation_imbalance_tversky.md").read_text()
