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


def test_demo_reports_the_best_validation_checkpoint(tmp_path, capsys):
    results = demo.main(["--epochs", "3", "--out", str(tmp_path)])
    assert set(results) == set(demo.CRITERIA)
    for res in results.values():
        assert 0.0 <= res["test_acc"] <= 1.0 and len(res["val_acc"]) == 3
        # The reported numbers belong to the checkpoint with the best validation accuracy.
        assert res["best_val_acc"] == pytest.approx(max(res["val_acc"]))
        assert res["val_acc"][res["best_epoch"]] == pytest.approx(res["best_val_acc"])
        assert 0.0 <= res["last_test_acc"] <= 1.0
    assert (tmp_path / "demo_curves.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "demo_results.json").read_text()).keys() == results.keys()
    out = capsys.readouterr().out
    assert "best (clean) validation accuracy" in out and "last acc" in out and "NCE+RCE" in out


def test_demo_tests_the_best_checkpoint_not_the_last_weights(monkeypatch):
    # Make the last epoch worse than the first: a huge learning rate after epoch 0.
    class Diverge(demo.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                for group in trainer.optimizers[0].param_groups:
                    group["lr"] = 5.0

    original = demo.Trainer

    def trainer(**kwargs):
        kwargs["callbacks"] = [*kwargs["callbacks"], Diverge()]
        return original(**kwargs)

    monkeypatch.setattr(demo, "Trainer", trainer)
    res = demo.run_one("cross_entropy", epochs=3, noise=0.0, seed=0)
    assert res["best_epoch"] == 0 and res["val_acc"][0] > max(res["val_acc"][1:])
    assert res["test_acc"] > res["last_test_acc"]
