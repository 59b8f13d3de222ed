"""Contract-test specs of family A · calibration."""

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import classification_example

SPECS = [
    LossSpec(
        "dual_focal",
        classification_example,
        invalid_kwargs=({"gamma": -1.0}, {"gamma": float("nan")}, {"gamma": True}),
        ignore_index=True,
    ),
    LossSpec(
        "encouraging",
        classification_example,
        invalid_kwargs=(
            {"log_end": 0.0},
            {"log_end": 1.5},
            {"log_end": float("inf")},
            {"weight": torch.tensor([1.0, float("nan")])},
        ),
        ignore_index=True,
    ),
]
