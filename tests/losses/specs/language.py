"""Contract-test specs of family F · language-model losses."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample, classification_example

_LM_CE_INVALID = (
    {"z_loss_coeff": -1.0},
    {"z_loss_coeff": float("inf")},
    {"z_loss_coeff": "1e-4"},
    {"label_smoothing": 1.5},
    {"label_smoothing": -0.1},
    {"ignore_index": 1.5},
)


def linear_ce_example(n: int, v: int, generator: torch.Generator) -> LossExample:
    """Hidden states `[n, H=3]`, an LM-head weight `[v, 3]` (both differentiable), token ids `[n]`.

    The contract tests treat `inputs[0]` (the hidden states) as the per-row input: ignored
    tokens' rows must get zero gradient, and a NaN in a counted row makes that row's loss NaN.
    """
    hidden = torch.randn(n, 3, generator=generator)
    weight = torch.randn(v, 3, generator=generator)
    target = torch.randint(0, v, (n,), generator=generator)
    return LossExample(inputs=(hidden, weight), targets=(target,), class_target=0, num_classes=v)


SPECS = [
    LossSpec(
        "z_loss",
        # Logits [N, V] + token ids [N]: the vocabulary at dim 1, as for every loss.
        classification_example,
        invalid_kwargs=(
            {"coeff": -1.0},
            {"coeff": float("nan")},
            {"coeff": float("inf")},
            {"coeff": "1e-4"},
            {"ignore_index": 1.5},
        ),
        ignore_index=True,
    ),
    LossSpec(
        "cross_entropy_z_loss",
        classification_example,
        invalid_kwargs=_LM_CE_INVALID,
        ignore_index=True,
    ),
    LossSpec(
        "chunked_linear_cross_entropy",
        linear_ce_example,
        invalid_kwargs=(*_LM_CE_INVALID, {"chunk_size": 0}, {"chunk_size": 2.0}),
        ignore_index=True,
        notes="inputs are (hidden [N, H], weight [V, H]); gradcheck covers both",
    ),
]
