"""Cross-entropy and label-smoothed cross-entropy (`losses/classification/ce.py`).

Peers (test-only): `torch.nn.functional.cross_entropy` and timm's `LabelSmoothingCrossEntropy` /
`SoftTargetCrossEntropy`, value and gradient, with the settings that reproduce our defaults
(timm's `smoothing=0.1` is ours).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import (
    LabelSmoothingCrossEntropyLoss,
)
from tests.losses._helpers import (
    DTYPES,
    SHAPES,
    assert_value_and_grad,
    class_target,
    randint,
    randn,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_ce_matches_torch(dtype, shape, smoothing):
    x = randn(*shape, dtype=dtype)
    y = class_target(shape)
    w = torch.rand(shape[1], generator=torch.Generator().manual_seed(2), dtype=dtype) + 0.5
    for weight in (None, w):
        for reduction in ("none", "mean", "sum"):
            assert_value_and_grad(
                lambda z, weight=weight, reduction=reduction: LF.cross_entropy(
                    z, y, weight=weight, label_smoothing=smoothing, reduction=reduction
                ),
                lambda z, weight=weight, reduction=reduction: F.cross_entropy(
                    z, y, weight=weight, label_smoothing=smoothing, reduction=reduction
                ),
                x,
            )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(8, 5), (32, 100)])
@pytest.mark.parametrize("smoothing", [0.1, 0.25])
def test_label_smoothing_ce_matches_timm(dtype, n, c, smoothing):
    from timm.loss import LabelSmoothingCrossEntropy as TimmLSCE

    x = randn(n, c, dtype=dtype)
    y = randint(c, n)
    # timm smooths with ε·mean_k(-log p_k), torch with ε/C per class: the same formula.
    assert_value_and_grad(
        lambda z: LabelSmoothingCrossEntropyLoss(smoothing=smoothing)(z, y),
        lambda z: TimmLSCE(smoothing=smoothing)(z, y),
        x,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(8, 5), (16, 50)])
def test_soft_target_ce_matches_timm(dtype, n, c):
    from timm.loss import SoftTargetCrossEntropy

    x = randn(n, c, dtype=dtype)
    soft = torch.softmax(randn(n, c, dtype=dtype, seed=7), dim=-1)
    assert_value_and_grad(
        lambda z: LF.cross_entropy(z, soft), lambda z: SoftTargetCrossEntropy()(z, soft), x
    )


@pytest.mark.parametrize("fn", [LF.cross_entropy, LF.poly_loss, LF.focal_loss, LF.squentropy_loss])
def test_mean_over_only_ignored_targets_is_zero_with_zero_gradient(fn):
    z = randn(3, 4).requires_grad_(True)
    loss = fn(z, torch.full((3,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (z.grad == 0).all()
