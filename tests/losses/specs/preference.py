"""Contract-test specs of family E · preference optimisation (the DPO family)."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")
_BETA_INVALID = ({"beta": 0.0}, {"beta": -0.1}, {"beta": _NAN}, {"beta": _INF}, {"beta": "0.1"})


def preference_example(n: int, max_len: int, generator: torch.Generator) -> LossExample:
    """Policy log-probs `[n]` (chosen, rejected: the differentiable inputs), reference log-probs
    `[n]` (constants, in `targets`) and response token counts in `[1, max_len]` as kwargs."""
    pc = -torch.rand(n, generator=generator) * 10 - 0.5
    pr = -torch.rand(n, generator=generator) * 10 - 0.5
    rc = -torch.rand(n, generator=generator) * 10 - 0.5
    rr = -torch.rand(n, generator=generator) * 10 - 0.5
    lengths = {
        "chosen_lengths": torch.randint(1, max_len + 1, (n,), generator=generator),
        "rejected_lengths": torch.randint(1, max_len + 1, (n,), generator=generator),
    }
    return LossExample(inputs=(pc, pr), targets=(rc, rr), kwargs=lengths)


SPECS = [
    LossSpec(
        "dpo",
        preference_example,
        invalid_kwargs=(*_BETA_INVALID, {"reference_free": "False"}),
        min_size=1,
        bool_flags=("reference_free",),
    ),
    LossSpec(
        "conservative_dpo",
        preference_example,
        invalid_kwargs=(
            *_BETA_INVALID,
            {"label_smoothing": -0.1},
            {"label_smoothing": 0.6},
            {"label_smoothing": _NAN},
        ),
        min_size=1,
    ),
    LossSpec(
        "robust_dpo",
        preference_example,
        invalid_kwargs=(
            *_BETA_INVALID,
            {"epsilon": 0.5},
            {"epsilon": 0.7},
            {"epsilon": -0.1},
            {"epsilon": _NAN},
        ),
        min_size=1,
    ),
    LossSpec(
        "rpo",
        preference_example,
        invalid_kwargs=(
            *_BETA_INVALID,
            {"eta": -1.0},
            {"eta": _INF},
            {"nll_normalize": "mean"},
        ),
        min_size=1,
    ),
    LossSpec(
        "ipo",
        preference_example,
        invalid_kwargs=(*_BETA_INVALID, {"average_log_probs": 1}),
        min_size=1,
        bool_flags=("average_log_probs",),
    ),
]
