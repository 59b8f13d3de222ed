"""Contract-test specs of the segmentation (dense) losses.

`reduction="none"` is one value per sample (`[N]`), so `ignore_index` (per pixel) is tested in
`tests/losses/test_segmentation_dice.py`, not by the per-row contract test.
"""

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

NAN = float("nan")
INF = float("inf")


def dense_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits ``[n, c, 3, 4]`` and class indices ``[n, 3, 4]`` (a tiny 2-D segmentation)."""
    logits = torch.randn(n, c, 3, 4, generator=generator)
    target = torch.randint(0, c, (n, 3, 4), generator=generator)
    return LossExample(inputs=(logits,), targets=(target,), class_target=0, num_classes=c)


DENSE_FLAGS = (
    "include_background",
    "to_onehot_y",
    "sigmoid",
    "softmax",
    "batch",
    "ignore_empty",
)
COMMON_INVALID = (
    {"smooth_nr": -1.0},
    {"smooth_dr": INF},
    {"sigmoid": True, "softmax": True},
    {"ignore_index": 1.5},
)

SPECS = [
    LossSpec(
        "dice",
        dense_example,
        invalid_kwargs=(
            *COMMON_INVALID,
            {"weight": torch.tensor([1.0, -1.0])},
            {"weight": torch.ones(2, 2)},
            {"weight": [1.0, 2.0]},
        ),
        bool_flags=(*DENSE_FLAGS, "squared_pred", "jaccard", "per_class"),
    ),
    LossSpec(
        "generalized_dice",
        dense_example,
        invalid_kwargs=(*COMMON_INVALID, {"w_type": "cube"}),
        bool_flags=DENSE_FLAGS[:-1],
    ),
    LossSpec(
        "tversky",
        dense_example,
        invalid_kwargs=(*COMMON_INVALID, {"alpha": -0.1}, {"beta": NAN}),
        bool_flags=(*DENSE_FLAGS, "per_class"),
    ),
    LossSpec(
        "dice_ce",
        dense_example,
        invalid_kwargs=(
            *COMMON_INVALID,
            {"lambda_dice": -1.0},
            {"lambda_ce": NAN},
            {"label_smoothing": 1.5},
            {"weight": torch.tensor([1.0, -1.0])},
        ),
        bool_flags=(*DENSE_FLAGS, "squared_pred", "jaccard", "per_class"),
    ),
    LossSpec(
        "dice_focal",
        dense_example,
        invalid_kwargs=(
            *COMMON_INVALID,
            {"lambda_focal": -1.0},
            {"gamma": -2.0},
            {"alpha": 1.5},
            {"alpha": NAN},
        ),
        bool_flags=(*DENSE_FLAGS, "squared_pred", "jaccard", "per_class"),
    ),
    LossSpec(
        "deep_supervision",
        dense_example,
        invalid_kwargs=(
            {"weight_mode": "linear"},
            {"weights": [1.0, -0.5]},
            {"weights": "1,0.5"},
            {"loss": "no_such_loss"},
            {"loss": 3},
        ),
        notes="a single head is the inner loss; lists of heads in test_segmentation_dice.py",
    ),
]


def volume_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits ``[n, c, 3, 4, 2]`` and binary float labels of the same shape (a tiny volume)."""
    logits = torch.randn(n, c, 3, 4, 2, generator=generator)
    target = (torch.rand(n, c, 3, 4, 2, generator=generator) < 0.3).float()
    return LossExample(inputs=(logits,), targets=(target,))


SPECS.append(
    LossSpec(
        "max_intensity_projection",
        volume_example,
        invalid_kwargs=(
            {"axes": (0,)},
            {"axes": (-1, -1)},
            {"axes": "z"},
            {"alpha": 1.5},
            {"gamma": 0.0},
            {"smooth": -1.0},
        ),
        min_size=1,
    )
)


def logits_and_prior_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits ``[n, c, 4, 3]`` and per-image prior class proportions ``[n, c]`` (rows sum to 1)."""
    logits = torch.randn(n, c, 4, 3, generator=generator)
    prior = torch.rand(n, c, generator=generator) + 0.1
    return LossExample(inputs=(logits,), targets=(prior / prior.sum(1, keepdim=True),))


SPECS.append(
    LossSpec(
        "prior_entropy_minimization",
        logits_and_prior_example,
        invalid_kwargs=(
            {"lam": -1.0},
            {"power": 0.0},
            {"eps": -1e-3},
            {"weight": torch.tensor([[1.0, 2.0]])},
            {"weight": torch.tensor([1.0, -1.0])},
        ),
        bool_flags=("normalize_by_max",),
        notes="unsupervised: the 'target' is the prior class proportions [N, C]",
    )
)
