"""Contract-test specs of family B · metric learning (pair/triplet losses and class-centre losses).

Pair/triplet examples have every tensor with the batch as dim 0 and are deterministic from the
generator, so the generic 2-rank gather test can split them over ranks. Every anchor of the
default `n = 6` example has a positive and a negative (so a NaN in row 0 reaches row 0's loss).
"""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")


def pair_labels(n: int, generator: torch.Generator) -> torch.Tensor:
    """Labels with classes of two (`[0, 0, 1, 1, ...]`), shuffled by the generator."""
    return (torch.arange(n) // 2)[torch.randperm(n, generator=generator)]


def pair_example(n: int, d: int, generator: torch.Generator) -> LossExample:
    """Embeddings `[n, d]` and labels `[n]` (classes of two)."""
    emb = torch.randn(n, d, generator=generator)
    return LossExample(inputs=(emb,), targets=(pair_labels(n, generator),))


def centre_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Embeddings `[n, 6]`, labels `[n]` in `[0, c)` and class centres `weight=[c, 6]` (a forward
    kwarg: the contract tests pass inputs before targets positionally; the centres' gradient is
    checked in tests/losses/test_metric_margin_softmax.py)."""
    emb = torch.randn(n, 6, generator=generator)
    centres = torch.randn(c, 6, generator=generator)
    labels = torch.randint(0, c, (n,), generator=generator)
    return LossExample(
        inputs=(emb,), targets=(labels,), kwargs={"weight": centres}, class_target=0, num_classes=c
    )


def speaker_example(n: int, m: int, generator: torch.Generator) -> LossExample:
    """GE2E: `[n speakers, m utterances, 4]` embeddings (no targets)."""
    return LossExample(inputs=(torch.randn(n, m, 4, generator=generator),))


def episode_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Prototypical: `n` queries `[n, 4]` with labels in `[0, c)`, and a support set of two
    shots per class (`support`, `support_labels` as forward kwargs)."""
    query = torch.randn(n, 4, generator=generator)
    labels = torch.randint(0, c, (n,), generator=generator)
    support = torch.randn(2 * c, 4, generator=generator)
    return LossExample(
        inputs=(query,),
        targets=(labels,),
        kwargs={"support": support, "support_labels": torch.arange(2 * c) % c},
        class_target=0,
        num_classes=c,
    )


def _positive(name: str) -> tuple[dict, ...]:
    return ({name: 0.0}, {name: -1.0}, {name: _NAN}, {name: _INF}, {name: "1"})


_GATHER = ("gather_distributed",)

SPECS = [
    LossSpec(
        "circle",
        pair_example,
        invalid_kwargs=({"margin": -0.1}, {"margin": 1.5}, {"margin": _NAN}, *_positive("gamma")),
        bool_flags=_GATHER,
        gradcheck=False,
        notes="the weights alpha_p, alpha_n are detached by design (paper, PML), so the gradient "
        "is not the derivative of the value; it is checked against PML and a float64 reference",
    ),
    LossSpec(
        "multi_similarity",
        pair_example,
        invalid_kwargs=(*_positive("alpha"), *_positive("beta"), {"base": 2.0}, {"base": _NAN}),
        bool_flags=_GATHER,
    ),
    LossSpec(
        "contrastive",
        pair_example,
        invalid_kwargs=(
            {"pos_margin": -1.0},
            {"neg_margin": _INF},
            {"pos_margin": 0.5, "neg_margin": 0.2},
            {"neg_margin": "1"},
        ),
        bool_flags=_GATHER,
        notes="hinge terms: piecewise-linear by design (gradcheck at random points is fine)",
    ),
    LossSpec(
        "triplet_margin",
        pair_example,
        invalid_kwargs=({"margin": -1.0}, {"margin": _NAN}, {"margin": "1"}),
        bool_flags=("normalize_embeddings", "average_nonzero", *_GATHER),
        notes="hinge terms: piecewise-linear by design (gradcheck at random points is fine)",
    ),
    LossSpec(
        "arcface",
        centre_example,
        invalid_kwargs=(
            {"margin": -0.1},
            {"margin": 2.0},
            *_positive("scale"),
            {"num_classes": 0, "embedding_size": 4},
            {"num_classes": 3},
            {"embedding_size": 2.5, "num_classes": 3},
        ),
        ignore_index=True,
    ),
    LossSpec(
        "cosface",
        centre_example,
        invalid_kwargs=(
            {"margin": -0.1},
            {"margin": _NAN},
            *_positive("scale"),
            {"num_classes": 3},
        ),
        ignore_index=True,
    ),
    LossSpec(
        "normalized_softmax",
        centre_example,
        invalid_kwargs=(*_positive("temperature"), {"embedding_size": 3}),
        ignore_index=True,
    ),
    LossSpec(
        "adaface",
        centre_example,
        invalid_kwargs=(
            {"margin": -0.1},
            {"h": -1.0},
            {"t_alpha": 1.5},
            {"eps": 0.0},
            *_positive("scale"),
        ),
        ignore_index=True,
        gradcheck=False,
        notes="the margin depends on detached norm statistics that the module updates (EMA) on "
        "every training call, so repeated calls are not one function; the gradient is checked "
        "against a float64 port of the official head with fixed statistics",
    ),
    LossSpec(
        "partial_fc",
        centre_example,
        invalid_kwargs=(
            {"sample_rate": 0.0},
            {"sample_rate": 1.5},
            {"margin_loss": "sphereface"},
            {"seed": 1.5},
            *_positive("scale"),
        ),
        ignore_index=True,
        notes="at the contract sizes (C <= 12, r = 0.1) the subset is the batch's classes, so "
        "repeated calls are deterministic",
    ),
    LossSpec(
        "ge2e",
        speaker_example,
        invalid_kwargs=({"method": "triplet"}, {"init_w": 0.0}, {"init_b": _NAN}),
        per_element=True,
        notes="reduction='none' is [N speakers, M utterances]",
    ),
    LossSpec(
        "prototypical",
        episode_example,
        invalid_kwargs=({"distance": "l1"},),
        min_size=2,
    ),
]
