"""The metric-learning recipe: loss call modes, retrieval metrics, and a YAML run that learns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.metric_learning import MetricLearningModule, leave_one_out_retrieval
from tests._lightning import cli_output_args

ROOT = Path(__file__).resolve().parents[2]


def _naive_retrieval(z: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Float64 leave-one-out MAP and Recall@1, written from the definitions."""
    z = torch.nn.functional.normalize(z.double(), dim=1)
    sim = z @ z.T
    aps, hits = [], []
    for i in range(len(y)):
        others = [j for j in range(len(y)) if j != i]
        order = sorted(others, key=lambda j: -float(sim[i, j]))
        relevant = [int(y[j] == y[i]) for j in order]
        hits.append(relevant[0])
        if sum(relevant) == 0:
            aps.append(0.0)  # torchmetrics' default for a query without relevant items
            continue
        found, precisions = 0, []
        for rank, rel in enumerate(relevant, start=1):
            if rel:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / len(precisions))
    return sum(aps) / len(aps), sum(hits) / len(hits)


def test_leave_one_out_retrieval_matches_the_definitions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 6, generator=g)
    y = torch.randint(0, 4, (40,), generator=g)
    got = leave_one_out_retrieval(z, y)
    ap, r1 = _naive_retrieval(z, y)
    assert got["map"] == pytest.approx(ap, abs=1e-5)
    assert got["recall@1"] == pytest.approx(r1, abs=1e-6)


def test_leave_one_out_retrieval_rejects_bad_shapes():
    with pytest.raises(ValueError, match="embeddings"):
        leave_one_out_retrieval(torch.randn(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        leave_one_out_retrieval(torch.randn(4, 3), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize(
    ("criterion", "anchors"),
    [
        ("supcon", 8),  # [N, V, D] + labels: one value per sample
        ("nt_xent", 8),  # paired views: [N, 2] per view, averaged per sample by the mixin
        ("circle", 16),  # concatenated views + repeated labels
        ({"name": "arcface", "num_classes": 4, "embedding_size": 16}, 16),
    ],
)
def test_each_loss_family_gets_the_views_in_its_form(criterion, anchors):
    torch.manual_seed(0)
    model = MetricLearningModule(criterion, embedding_dim=16, hidden=32)
    out = model.views_loss(torch.randn(8, 64), torch.arange(8) % 4)
    assert out.per_sample.shape == (anchors,)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_loss_parameters_are_trained_with_the_encoder():
    model = MetricLearningModule({"name": "arcface", "num_classes": 10, "embedding_size": 32})
    opt = model.configure_optimizers()
    trained = {id(p) for group in opt.param_groups for p in group["params"]}
    assert id(model.criterion.weight) in trained


def test_unsupported_criteria_fail_at_construction():
    with pytest.raises(TypeError, match="GE2ELoss"):  # [speakers, utterances, D] inputs
        MetricLearningModule("ge2e")
    with pytest.raises((TypeError, ValueError), match="input"):  # not an embedding loss
        MetricLearningModule("cross_entropy")
    with pytest.raises(ValueError, match="views"):
        MetricLearningModule(views=1)
    with pytest.raises(TypeError, match="views"):
        MetricLearningModule(views=2.0)
    with pytest.raises(ValueError, match="noise_std"):
        MetricLearningModule(noise_std=-0.1)
    with pytest.raises(ValueError, match="drop_prob"):
        MetricLearningModule(drop_prob=1.0)


@pytest.mark.slow
def test_yaml_recipe_learns_retrievable_embeddings(tmp_path):
    from lightning_losses.data import NoisyDigitsDataModule

    dm = NoisyDigitsDataModule(noise_rate=0.0)
    dm.setup()
    torch.manual_seed(0)
    with torch.no_grad():
        untrained = leave_one_out_retrieval(
            MetricLearningModule()(dm.splits.x_val), dm.splits.y_val
        )
    cli = build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/vision/digits_supcon.yaml"),
            "--trainer.max_epochs",
            "3",
            *cli_output_args(tmp_path),
        ]
    )
    assert type(cli.model.criterion).__name__ == "SupConLoss"
    trained = float(cli.trainer.callback_metrics["val/map"])
    # Measured: untrained MLP ≈ 0.5 MAP, 3 epochs (27 steps) of SupCon ≈ 0.94.
    assert trained > untrained["map"] + 0.25, (untrained, trained)
    assert float(cli.trainer.callback_metrics["val/recall@1"]) > 0.9
