"""Class-balanced weights (`losses/utils.py`): formulas, normalisation, use as `weight=`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lightning_losses.functional as LF
from lightning_losses.losses import ClassBalancedWeights
from tests.losses._helpers import (
    randint,
    randn,
)


@pytest.mark.parametrize("mode", ["inverse", "sqrt", "effective"])
def test_class_balanced_weights_uniform_counts_give_ones(mode):
    torch.testing.assert_close(LF.class_balanced_weights([7, 7, 7, 7], mode=mode), torch.ones(4))


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(1, 5000), min_size=2, max_size=12), beta=st.floats(0.0, 0.9999))
def test_class_balanced_weights_match_formulas(counts, beta):
    n = torch.tensor(counts, dtype=torch.float64)
    c = len(counts)
    refs = {
        "inverse": 1 / n,
        "sqrt": 1 / n.sqrt(),
        "effective": (1 - beta) / (1 - beta**n) if beta > 0 else torch.ones_like(n),
    }
    for mode, ref in refs.items():
        w = LF.class_balanced_weights(counts, mode=mode, beta=beta, dtype=torch.float64)
        torch.testing.assert_close(w, ref * c / ref.sum(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(w.sum(), torch.tensor(float(c), dtype=torch.float64))


def test_class_balanced_weights_plug_into_cross_entropy_and_reject_bad_counts():
    w = LF.class_balanced_weights([100, 10, 1])
    x, y = randn(12, 3), randint(3, 12)
    torch.testing.assert_close(LF.cross_entropy(x, y, weight=w), F.cross_entropy(x, y, weight=w))
    with pytest.raises(ValueError, match="counts"):
        LF.class_balanced_weights([3, 0, 2])
    with pytest.raises(ValueError, match="mode"):
        LF.class_balanced_weights([3, 2], mode="log")
    with pytest.raises(ValueError, match="beta"):
        LF.class_balanced_weights([3, 2], mode="effective", beta=1.0)


def test_class_balanced_weights_from_labels_counts_and_checks():
    cbw = ClassBalancedWeights(mode="inverse")
    torch.testing.assert_close(
        cbw.from_labels(torch.tensor([0, 0, 0, 1]), num_classes=2),
        LF.class_balanced_weights([3, 1], mode="inverse"),
    )
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        cbw.from_labels(torch.tensor([0.0, 1.0]), num_classes=2)
    with pytest.raises(TypeError, match="num_classes"):
        cbw.from_labels(torch.tensor([0, 1]), num_classes=True)
    with pytest.raises(ValueError, match="num_classes"):
        cbw.from_labels(torch.tensor([0, 1]), num_classes=0)
    with pytest.raises(ValueError, match=r"labels contains class index 2 outside \[0, 2\)"):
        cbw.from_labels(torch.tensor([0, 2]), num_classes=2)
    with pytest.raises(ValueError, match="counts must be finite and ≥ 1"):  # a class never seen
        cbw.from_labels(torch.tensor([0, 0]), num_classes=2)
