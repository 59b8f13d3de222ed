"""Logit-adjusted cross-entropy (`losses/classification/logit_adjusted.py`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import (
    LogitAdjustedLoss,
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
def test_logit_adjusted_matches_shifted_cross_entropy(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = class_target(shape)
    c = shape[1]
    counts = torch.arange(1, c + 1, dtype=dtype) ** 2
    priors = counts / counts.sum()
    view = (1, c) + (1,) * (len(shape) - 2)
    for tau in (0.5, 1.0):
        assert_value_and_grad(
            lambda z, tau=tau: LF.logit_adjusted_loss(z, y, counts, tau=tau, reduction="none"),
            lambda z, tau=tau: F.cross_entropy(
                z + tau * priors.log().view(view), y, reduction="none"
            ),
            x,
        )
    # tau = 0 and uniform priors are plain CE.
    ce = F.cross_entropy(x, y)
    torch.testing.assert_close(LF.logit_adjusted_loss(x, y, priors, tau=0.0), ce)
    torch.testing.assert_close(LF.logit_adjusted_loss(x, y, torch.full((c,), 3.0, dtype=dtype)), ce)


def test_logit_adjusted_priors_at_construction_or_call():
    x, y = randn(6, 4), randint(4, 6)
    priors = torch.tensor([0.4, 0.3, 0.2, 0.1])
    soft = torch.softmax(randn(6, 4, seed=3), 1)
    a = LogitAdjustedLoss(class_priors=priors, label_smoothing=0.1)(x, soft)
    b = LogitAdjustedLoss(label_smoothing=0.1)(x, soft, class_priors=priors)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, F.cross_entropy(x + priors.log(), soft, label_smoothing=0.1))
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss()(x, y)
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss()(x, y, class_priors=torch.ones(3))
    assert "class_priors" in LogitAdjustedLoss(class_priors=priors).state_dict()


def test_logit_adjusted_priors_checks_and_integer_counts():
    x, y = randn(6, 3), randint(3, 6)
    counts = [30, 6, 1]
    torch.testing.assert_close(
        LogitAdjustedLoss(class_priors=counts)(x, y),
        F.cross_entropy(x + torch.tensor(counts, dtype=torch.float32).log(), y),
    )
    torch.testing.assert_close(
        LF.logit_adjusted_loss(x, y, torch.tensor(counts)),
        F.cross_entropy(x + torch.tensor(counts, dtype=torch.float32).log(), y),
    )
    with pytest.raises(ValueError, match="class_priors must be finite and > 0"):
        LF.logit_adjusted_loss(x, y, torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss(class_priors=[1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="class_priors"):
        LogitAdjustedLoss(class_priors=[[1.0, 2.0]])
    # validate_args=False skips the (host-syncing) positivity check, not the shape check.
    LF.logit_adjusted_loss(x, y, torch.tensor([1.0, 0.5, 2.0]), validate_args=False)
    with pytest.raises(ValueError, match="class_priors"):
        LF.logit_adjusted_loss(x, y, torch.ones(4), validate_args=False)
