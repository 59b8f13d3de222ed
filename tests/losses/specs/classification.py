"""Contract-test specs of family A · classification."""

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import (
    class_prior_example,
    classification_example,
    multilabel_example,
)

NAN = float("nan")
INF = float("inf")

SPECS = [
    LossSpec(
        "cross_entropy",
        classification_example,
        invalid_kwargs=({"label_smoothing": 1.5}, {"label_smoothing": -0.1}, {"weight": "x"}),
        ignore_index=True,
    ),
    LossSpec(
        "label_smoothing_ce",
        classification_example,
        invalid_kwargs=({"smoothing": 2.0},),
        ignore_index=True,
    ),
    LossSpec(
        "poly",
        classification_example,
        invalid_kwargs=(
            {"epsilon": -2.0},
            {"epsilon": NAN},
            {"epsilon": INF},
            {"epsilon": "one"},
            {"epsilon": True},
            {"epsilon": (-1.5, 0.5)},
            {"epsilon": (1.0, NAN)},
            {"epsilon": ()},
            {"label_smoothing": 1.5},
            {"weight": torch.tensor([1.0, NAN, 1.0])},
            {"weight": torch.ones(2, 2)},
        ),
        ignore_index=True,
    ),
    LossSpec(
        "focal",
        classification_example,
        invalid_kwargs=(
            {"gamma": -1.0},
            {"gamma": NAN},
            {"gamma": "2"},
            {"alpha": -0.5},
            {"alpha": INF},
            {"alpha": torch.tensor([0.5, -0.1])},
            {"alpha": torch.tensor([0.5, NAN])},
            {"alpha": torch.ones(2, 2)},
            {"weight": torch.tensor([1.0, INF])},
        ),
        ignore_index=True,
    ),
    LossSpec(
        "sigmoid_focal",
        multilabel_example,
        invalid_kwargs=(
            {"gamma": -1.0},
            {"gamma": INF},
            {"alpha": 1.5},
            {"alpha": NAN},
            {"alpha": "0.25"},
        ),
        per_element=True,
    ),
    LossSpec(
        "poly_focal",
        multilabel_example,
        invalid_kwargs=(
            {"epsilon": -1.5},
            {"epsilon": NAN},
            {"gamma": -1.0},
            {"alpha": 1.5},
            {"alpha": INF},
            {"epsilon": False},
        ),
        per_element=True,
    ),
    LossSpec("squentropy", classification_example, ignore_index=True),
    LossSpec("stablemax_ce", classification_example, ignore_index=True),
    LossSpec(
        "logit_adjusted",
        class_prior_example,
        invalid_kwargs=(
            {"tau": -1.0},
            {"tau": NAN},
            {"class_priors": [0.5, 0.0]},
            {"class_priors": [0.5, NAN]},
            {"class_priors": torch.ones(2, 2)},
            {"class_priors": "uniform"},
            {"label_smoothing": 2.0},
        ),
        ignore_index=True,
    ),
    LossSpec("one_vs_rest", classification_example, ignore_index=True),
    LossSpec(
        "spherical_z",
        classification_example,
        invalid_kwargs=({"a": 0.0}, {"a": INF}, {"b": NAN}, {"b": "10"}),
        ignore_index=True,
    ),
]
