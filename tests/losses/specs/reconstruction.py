"""Contract-test specs of the reconstruction losses."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")


def patch_pixels_example(n: int, p: int, generator: torch.Generator) -> LossExample:
    """Predicted pixels `[n, L=3, p]` (differentiable) and target pixels in $[0, 1]$ `[n, 3, p]`.

    `size` is the number of pixels per patch (≥ 2: the per-patch normalisation needs a variance).
    """
    pred = torch.randn(n, 3, p, generator=generator)
    target = torch.rand(n, 3, p, generator=generator)
    return LossExample(inputs=(pred,), targets=(target,))


SPECS = [
    LossSpec(
        "norm_pix",
        patch_pixels_example,
        invalid_kwargs=({"eps": -1.0}, {"eps": _NAN}, {"eps": _INF}, {"eps": "1e-6"}),
        per_element=True,
        bool_flags=("normalize",),
        notes="reduction='none' gives one loss per patch, [N, L]",
    ),
]
