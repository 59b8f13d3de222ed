"""Contract-test specs of the regularisers written as losses."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.contrastive import views_labels_example
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")


def attribution_box_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Attribution maps `[n, size, size + 1]` (differentiable) and one random box mask per map.

    Every box holds at least one pixel; the maps are standard normal, so about half of the
    pixels carry positive energy.
    """
    h, w = size, size + 1
    attr = torch.randn(n, h, w, generator=generator)
    mask = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):
        y0 = int(torch.randint(0, h, (1,), generator=generator))
        x0 = int(torch.randint(0, w, (1,), generator=generator))
        y1 = int(torch.randint(y0 + 1, h + 1, (1,), generator=generator))
        x1 = int(torch.randint(x0 + 1, w + 1, (1,), generator=generator))
        mask[i, y0:y1, x0:x1] = True
    return LossExample(inputs=(attr,), targets=(mask,))


SPECS = [
    LossSpec(
        "energy_pointing",
        attribution_box_example,
        invalid_kwargs=({"eps": -1.0}, {"eps": _NAN}, {"eps": _INF}, {"eps": "1e-7"}),
        notes="attribution maps [N, H, W] and box masks; reduction='none' gives [N]",
    ),
]
SPECS.append(
    LossSpec(
        "contrastive_deep_supervision",
        views_labels_example,
        invalid_kwargs=(
            {"level_weight": -0.1},
            {"level_weight": _NAN},
            {"weights": [0.1, -1.0]},
            {"weights": "0.1"},
            {"weights": []},
            {"temperature": 0.0},
            {"base_temperature": _INF},
        ),
        per_element=True,
        notes="one level is SupCon weighted by 0.1; lists of levels in their own test file",
    )
)
