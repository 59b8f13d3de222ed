"""Contract-test specs of family A · label-noise-robust losses."""

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import classification_example

_INF = float("inf")

SPECS = [
    LossSpec(
        "gce",
        classification_example,
        invalid_kwargs=({"q": 0.0}, {"q": 1.5}, {"q": _INF}, {"q": "0.7"}, {"q": True}),
        ignore_index=True,
    ),
    LossSpec(
        "normalized_ce",
        classification_example,
        invalid_kwargs=({"scale": -1.0}, {"scale": _INF}, {"scale": "1"}),
        ignore_index=True,
    ),
    LossSpec(
        "nfl",
        classification_example,
        invalid_kwargs=({"gamma": -1.0}, {"scale": -1.0}, {"gamma": _INF}),
        ignore_index=True,
        gradcheck=False,
        bool_flags=("detach_focal_weights",),
        notes="gradient follows the official code (focal weights detached), so it is not the "
        "derivative of the value; tests/losses/test_robust.py gradchecks "
        "detach_focal_weights=False instead",
    ),
    LossSpec(
        "rce",
        classification_example,
        invalid_kwargs=({"log_zero": 0.5}, {"log_zero": 0.0}, {"log_zero": -_INF}, {"scale": -1.0}),
        ignore_index=True,
    ),
    LossSpec(
        "prob_mae",
        classification_example,
        invalid_kwargs=({"scale": -1.0}, {"scale": _INF}),
        ignore_index=True,
    ),
    LossSpec(
        "comp_sum",
        classification_example,
        invalid_kwargs=({"tau": -0.1}, {"tau": 2.5}, {"tau": _INF}),
        ignore_index=True,
    ),
    LossSpec(
        "sce",
        classification_example,
        invalid_kwargs=(
            {"alpha": -1.0},
            {"beta": -1.0},
            {"log_zero": 0.0},
            {"beta": _INF},
            {"alpha": "0.1"},
        ),
        ignore_index=True,
    ),
    LossSpec(
        "ldr_kl",
        classification_example,
        invalid_kwargs=({"lam": 0.0}, {"lam": _INF}, {"margin": -1.0}, {"margin": _INF}),
        ignore_index=True,
        bool_flags=("normalize_scores",),
    ),
    LossSpec(
        "apl",
        classification_example,
        invalid_kwargs=(
            {"active": "ce"},
            {"active": "NCE"},
            {"passive": "kl"},
            {"alpha": -1.0},
            {"beta": _INF},
            {"gamma": -0.5},
            {"log_zero": 1.0},
        ),
        ignore_index=True,
    ),
]
