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


def test_soft_target_with_a_negative_entry_is_refused_even_beside_a_nan():
    soft = torch.tensor([[0.5, 0.5], [0.2, 0.8]])
    x = torch.zeros(2, 2)
    LF.cross_entropy(x, soft)  # a distribution: accepted
    for bad in ([[0.5, 0.5], [-0.2, 1.2]], [[0.5, float("nan")], [-0.2, 1.2]]):
        with pytest.raises(ValueError, match="non-negative"):
            LF.cross_entropy(x, torch.tensor(bad))
    LF.cross_entropy(x, torch.tensor([[0.5, float("nan")], [0.2, 0.8]]))  # NaN alone: not < 0


@pytest.mark.parametrize("fn", [LF.cross_entropy, LF.poly_loss, LF.focal_loss, LF.squentropy_loss])
def test_mean_over_only_ignored_targets_is_zero_with_zero_gradient(fn):
    z = randn(3, 4).requires_grad_(True)
    loss = fn(z, torch.full((3,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (z.grad == 0).all()


@pytest.mark.parametrize("validate_args", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ce_ignored_rows_with_non_finite_logits_match_float64_torch(
    reduction, weighted, validate_args
):
    # The [N, C] path masks ignored rows inside its fused backward (no pass over the gradient):
    # NaN / inf / all -inf logits in ignored rows must neither reach the value nor the gradient.
    # Reference: torch in float64 on the same logits with the ignored rows replaced by zeros.
    x = randn(12, 6, dtype=torch.float64)
    y = randint(6, 12)
    y[[1, 4, 7]] = -100
    x[1, 2], x[4, 0], x[7] = float("nan"), float("inf"), float("-inf")
    clean = x.clone()
    clean[y == -100] = 0.0
    w = torch.rand(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.5
    weight = w if weighted else None
    assert_value_and_grad(
        lambda z: LF.cross_entropy(
            z, y, weight=weight, reduction=reduction, validate_args=validate_args
        ),
        lambda z: F.cross_entropy(
            torch.where((y == -100)[:, None], clean, z), y, weight=weight, reduction=reduction
        ),
        x,
    )


def test_ce_counted_row_with_nan_logit_keeps_nan_gradient_like_torch():
    x = randn(5, 4)
    y = torch.tensor([0, -100, 2, 3, 1])
    x[2, 1], x[1, 0] = float("nan"), float("nan")  # counted row 2, ignored row 1
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    LF.cross_entropy(ours, y, reduction="none").sum().backward()
    F.cross_entropy(ref, y, reduction="none").sum().backward()
    assert torch.isnan(ours.grad[2]).all() and torch.isnan(ref.grad[2]).all()
    assert (ours.grad[1] == 0).all()
    keep = torch.tensor([True, False, False, True, True])
    torch.testing.assert_close(ours.grad[keep], ref.grad[keep])


def test_ce_fast_path_is_twice_differentiable():
    x = randn(6, 5, dtype=torch.float64).requires_grad_()
    y = randint(5, 6)
    ignored = y.clone()
    ignored[2] = -100
    w = torch.rand(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.5
    for weight in (None, w):
        assert torch.autograd.gradgradcheck(
            lambda z, weight=weight: LF.cross_entropy(z, ignored, weight=weight), (x,)
        )
    assert torch.autograd.gradgradcheck(lambda z: LF.cross_entropy(z, y, ignore_index=None), (x,))
