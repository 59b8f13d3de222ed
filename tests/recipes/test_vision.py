"""Vision recipe: backbones, metrics, and the `make demo` script end to end (short run)."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_losses.data.digits import load_digits_splits
from lightning_losses.data.noise import inject_label_noise
from lightning_losses.recipes import demo
from lightning_losses.recipes.vision import ImageClassifier


@pytest.mark.parametrize("backbone", ["mlp", "timm:resnet10t"])
def test_backbones_give_class_logits(backbone):
    model = ImageClassifier(backbone=backbone)
    assert model(torch.randn(3, 64)).shape == (3, 10)


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="backbone"):
        ImageClassifier(backbone="resnet")


@pytest.mark.parametrize("kind", ["symmetric", "asymmetric"])
def test_label_noise_rate_and_mask_are_exact(kind):
    y = torch.arange(1000) % 10
    noisy, mask = inject_label_noise(
        y, 0.3, 10, kind=kind, generator=torch.Generator().manual_seed(0)
    )
    assert mask.float().mean().item() == pytest.approx(0.3, abs=1e-3)
    assert (noisy[mask] != y[mask]).all() and (noisy[~mask] == y[~mask]).all()
    if kind == "asymmetric":
        assert (noisy[mask] == (y[mask] + 1) % 10).all()
    else:  # every wrong class is reachable
        assert len(set(((noisy[mask] - y[mask]) % 10).tolist())) == 9


def test_noise_only_touches_training_labels():
    clean, noisy = load_digits_splits(0.0, seed=3), load_digits_splits(0.6, seed=3)
    assert torch.equal(clean.y_test, noisy.y_test) and torch.equal(clean.y_val, noisy.y_val)
    assert torch.equal(noisy.y_train_clean, clean.y_train)
    assert (noisy.y_train != clean.y_train).float().mean().item() == pytest.approx(0.6, abs=0.01)


def test_demo_runs_and_writes_table_and_plot(tmp_path, capsys):
    results = demo.main(["--epochs", "2", "--out", str(tmp_path)])
    assert set(results) == set(demo.CRITERIA)
    for res in results.values():
        assert 0.0 <= res["test_acc"] <= 1.0 and len(res["val_acc"]) == 2
    assert (tmp_path / "demo_curves.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "demo_results.json").read_text()).keys() == results.keys()
    out = capsys.readouterr().out
    assert "clean test acc" in out and "NCE+RCE" in out
