"""Contract-test specs of family D · ranking and recommendation."""

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample, ranking_example

_NAN = float("nan")
_INF = float("inf")

SPECS = [
    LossSpec(
        "bpr",
        ranking_example,
        invalid_kwargs=({"gamma": -1.0}, {"gamma": _NAN}, {"gamma": _INF}, {"gamma": "0.1"}),
        min_size=1,
    ),
    LossSpec(
        "cosine_contrastive",
        ranking_example,
        invalid_kwargs=(
            {"margin": 2.0},
            {"margin": _NAN},
            {"margin": True},
            {"negative_weight": 0.0},
            {"negative_weight": -1.0},
            {"negative_weight": _INF},
            {"negative_weight": _NAN},
        ),
        min_size=1,
        notes="hinge terms: piecewise-linear by design (gradcheck at random points is fine)",
    ),
    LossSpec(
        "sampled_softmax",
        ranking_example,
        invalid_kwargs=(
            {"temperature": 0.0},
            {"temperature": -1.0},
            {"temperature": _INF},
            {"temperature": _NAN},
            {"logq_correction": "False"},
            {"logq_correction": 1},
        ),
        min_size=1,
        bool_flags=("logq_correction",),
    ),
    LossSpec("bce_rec", ranking_example, min_size=1),
]


def _macro_auc_example(n: int, labels: int, generator: torch.Generator) -> LossExample:
    """Scores `[n, labels]` and binary targets with a positive and a negative in every label.

    Rows 0 and 1 are forced to a positive and a negative of each label (when `n ≥ 2`), so no
    label is skipped and a NaN in `input[0, 0]` reaches row 0 (`n = 1`: every label skipped).
    """
    scores = torch.randn(n, labels, generator=generator)
    target = torch.randint(0, 2, (n, labels), generator=generator).float()
    if n >= 2:
        target[0], target[1] = 1.0, 0.0
    return LossExample(inputs=(scores,), targets=(target,))


SPECS += [
    LossSpec(
        "pairwise_macro_auc",
        _macro_auc_example,
        invalid_kwargs=(
            {"surrogate": "exp"},
            {"surrogate": None},
            {"margin": -1.0},
            {"margin": _NAN},
            {"margin": _INF},
            {"margin": "1"},
        ),
        min_size=1,
        notes="squared hinge is C¹, the hinge is piecewise-linear (gradcheck at random points)",
    ),
    LossSpec("reweighted_univariate_auc", _macro_auc_example, min_size=1),
]
