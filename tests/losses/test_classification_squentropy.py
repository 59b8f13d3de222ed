"""Squentropy (`losses/classification/squentropy.py`) against a float64 reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import (
    SquentropyLoss,
)
from tests.losses._helpers import (
    DTYPES,
    SHAPES,
    assert_value_and_grad,
    class_target,
    randint,
    randn,
)


def test_squentropy_is_cross_entropy_when_wrong_logits_are_zero():
    y = randint(6, 8)
    z = F.one_hot(y, 6).double() * randn(8, 1, dtype=torch.float64)
    torch.testing.assert_close(
        LF.squentropy_loss(z, y, reduction="none"), F.cross_entropy(z, y, reduction="none")
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_squentropy_matches_naive_reference(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = class_target(shape)
    c = shape[1]

    def reference(z):
        zz = z.double().movedim(1, -1).reshape(-1, c)
        yy = y.reshape(-1)
        ce = torch.logsumexp(zz, 1) - zz.gather(1, yy[:, None]).squeeze(1)
        sq = sum((zz[:, k] ** 2) * (yy != k) for k in range(c)) / (c - 1)
        return (ce + sq).reshape(y.shape).to(dtype)

    assert_value_and_grad(lambda z: SquentropyLoss(reduction="none")(z, y), reference, x)
