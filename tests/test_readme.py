"""The README's Python snippets run as written, and its install and `make demo` claims hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def _run(block: str, name: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(block, name, "exec"), namespace)
    return namespace


def _check_quick_start(namespace: dict, out: str) -> None:
    trainer = namespace["trainer"]
    assert trainer.state.finished and trainer.global_step > 0
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])
    # 5 epochs on digits with 40 % noise: far above chance (0.1); the user sees the number.
    assert 0.5 < float(trainer.callback_metrics["val/acc"]) <= 1.0
    assert "clean validation accuracy: " in out


def _check_loss_snippet(namespace: dict, out: str) -> None:
    assert namespace["per_sample"].shape == namespace["labels"].shape
    assert "focal" in namespace["list_losses"]("*focal*") and "focal" in out


# Extra checks for the blocks that contain a marker; every block runs either way.
CHECKS = {"Trainer(": _check_quick_start, "focal_loss": _check_loss_snippet}


def test_the_checked_blocks_are_in_the_readme():
    for marker in CHECKS:
        assert sum(marker in block for block in python_blocks()) == 1, marker


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_python_block_runs_as_written(index, tmp_path, monkeypatch, capsys):
    # A fresh namespace: a block may not lean on a name another block (or the test) defines.
    monkeypatch.chdir(tmp_path)
    block = python_blocks()[index]
    namespace = _run(block, f"README python block {index}")
    out = capsys.readouterr().out
    for marker, check in CHECKS.items():
        if marker in block:
            check(namespace, out)


def _make_recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)*)", text, re.M)
    assert match, f"no Makefile rule for {target}"
    return match[1]


def test_make_demo_installs_only_the_demos_extras_with_progress():
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo: \$\(DEMO_STAMP\)\s", text, re.M), "make demo must not need [test]"
    extras = re.search(r"^DEMO_EXTRAS\s*:=\s*(\S+)", text, re.M)
    assert extras and set(extras[1].split(",")) == {"vision", "plots"}
    install = _make_recipe("$(DEMO_STAMP)")
    assert "-c constraints.txt" in install and "$(DEMO_EXTRAS)" in install
    assert " -q" not in install, "the demo's install shows pip's progress"
    # The README names the same extras and the CPU-only torch index of the PyTorch docs.
    readme = README.read_text(encoding="utf-8")
    assert ".[vision,plots]" in readme
    assert "pip install -c constraints.txt torch torchvision --index-url " in readme
    assert "https://download.pytorch.org/whl/cpu" in readme
    assert "outputs/demo_curves.png" in readme and "outputs/demo_results.json" in readme


def test_demo_prints_a_line_per_run(tmp_path, capsys, monkeypatch):
    from lightning_losses.recipes import demo

    def fake_run(criterion, *, epochs, noise, seed, report_every):
        assert report_every == 10  # the default: a line every 10 epochs
        curve = [0.5] * epochs
        return {
            "test_acc": 0.9,
            "test_ece": 0.1,
            "best_epoch": 0,
            "best_val_acc": 0.5,
            "last_test_acc": 0.8,
            "last_test_ece": 0.2,
            "val_acc": curve,
        }

    monkeypatch.setattr(demo, "run_one", fake_run)
    demo.main(["--epochs", "3", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    for i, name in enumerate(demo.CRITERIA, 1):
        assert f"[{i}/{len(demo.CRITERIA)}] {name}" in out
    assert "demo_curves.png" in out and "demo_results.json" in out


def test_demo_run_prints_the_validation_accuracy_every_n_epochs(capsys):
    from lightning_losses.recipes import demo

    res = demo.run_one("cross_entropy", epochs=3, noise=0.4, seed=0, report_every=2)
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    # epochs 2 and 3 (the last one always), with the run's own numbers
    assert lines == [
        f"epoch   2/3  val acc {res['val_acc'][1]:.3f}",
        f"epoch   3/3  val acc {res['val_acc'][2]:.3f}",
    ]
