"""Contract-test specs of family F · language-model losses."""

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import classification_example

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
]
