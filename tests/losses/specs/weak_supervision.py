"""Contract-test specs of the weakly supervised losses: aggregate responses, label proportions."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")


def _bag_ids(n: int, generator: torch.Generator) -> torch.Tensor:
    # Non-contiguous, unsorted ids; row 0 shares its bag with row 1 when n ≥ 2.
    ids = 7 * torch.randint(0, max(1, n // 2), (n,), generator=generator) + 3
    if n >= 2:
        ids[1] = ids[0]
    return ids


def _per_bag(ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    # One value per bag, repeated on every instance of the bag.
    _, inverse = torch.unique(ids, return_inverse=True)
    return values[: int(inverse.max()) + 1][inverse]


def aggregate_example(n: int, _size: int, generator: torch.Generator) -> LossExample:
    """Predictions `[n]`, bag responses `[n]` (constant within bags), bag ids `[n]`."""
    ids = _bag_ids(n, generator)
    pred = torch.randn(n, generator=generator)
    response = _per_bag(ids, torch.randn(n, generator=generator))
    return LossExample(inputs=(pred,), targets=(response, ids))


def proportion_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits `[n, c]`, bag proportions `[n, c]` (constant within bags), bag ids `[n]`."""
    ids = _bag_ids(n, generator)
    logits = torch.randn(n, c, generator=generator)
    props = torch.rand(n, c, generator=generator) + 0.05
    props = _per_bag(ids, props / props.sum(1, keepdim=True))
    return LossExample(inputs=(logits,), targets=(props, ids))


def ci_proportion_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """`proportion_example` plus per-bag interval bounds `[n, c]` around the proportions."""
    ex = proportion_example(n, c, generator)
    props, ids = ex.targets
    width = _per_bag(ids, 0.2 * torch.rand(n, c, generator=generator))
    ex.targets = (props, ids, props - width, props + width)
    return ex


SPECS = [
    LossSpec("bag_level", aggregate_example),
    LossSpec("instance_level", aggregate_example),
    LossSpec(
        "interpolating_aggregate",
        aggregate_example,
        invalid_kwargs=({"rho": -0.1}, {"rho": 1.5}, {"rho": _NAN}, {"rho": _INF}, {"rho": "0.5"}),
    ),
    LossSpec("proportion", proportion_example),
    LossSpec(
        "confidence_interval_proportion",
        ci_proportion_example,
        notes="piecewise by design: a class whose bag mean is inside its interval gets no gradient",
    ),
]
