"""One-vs-the-rest loss (`losses/classification/one_vs_rest.py`)."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

import lightning_losses.functional as LF
from tests.losses._helpers import (
    DTYPES,
    assert_value_and_grad,
    randint,
    randn,
)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_vs_rest_is_summed_binary_cross_entropy(dtype):
    x = randn(9, 5, dtype=dtype)
    y = randint(5, 9)
    assert_value_and_grad(
        lambda z: LF.one_vs_rest_loss(z, y, reduction="none"),
        lambda z: F.binary_cross_entropy_with_logits(
            z, F.one_hot(y, 5).to(dtype), reduction="none"
        ).sum(1),
        x,
    )
