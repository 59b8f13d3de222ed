"""Contract-test specs of family D · ranking and recommendation."""

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import ranking_example

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
