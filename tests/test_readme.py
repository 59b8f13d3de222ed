"""The README's Python snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_blocks()[0], "README quick start", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.finished and trainer.global_step > 0
    assert torch.isfinite(trainer.callback_metrics["train/loss_epoch"])


def test_loss_snippet_runs():
    namespace = {"logits": torch.randn(4, 10), "labels": torch.tensor([0, 1, 2, 3])}
    exec(compile(python_blocks()[1], "README losses", "exec"), namespace)
    assert namespace["per_sample"].shape == (4,)
    assert "focal" in namespace["list_losses"]("*focal*")
