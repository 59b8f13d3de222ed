"""Contract-test specs of family B · contrastive losses (and their example builders).

The distributed test (`tests/distributed/test_embedding_gather.py`) also builds these examples on
a global batch and splits every tensor whose first dimension is the batch across ranks, so each
builder keeps per-sample tensors first and shared tensors (label embeddings) elsewhere.
"""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")


def pair_example(n: int, d: int, generator: torch.Generator) -> LossExample:
    """Two views / modalities `[n, d]` each, the second a noisy copy of the first."""
    z1 = torch.randn(n, d, generator=generator)
    z2 = z1 + 0.5 * torch.randn(n, d, generator=generator)
    return LossExample(inputs=(z1, z2))


def views_labels_example(n: int, d: int, generator: torch.Generator) -> LossExample:
    """Features `[n, 2, d]` (two views) and class ids `[n]` from 3 classes."""
    feats = torch.randn(n, 2, d, generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return LossExample(inputs=(feats,), targets=(labels,))


def multilabel_retrieval_example(n: int, d: int, generator: torch.Generator) -> LossExample:
    """Queries `[n, d]`, 6 label embeddings `[6, d]`, multi-hot targets `[n, 6]`."""
    query = torch.randn(n, d, generator=generator)
    label_emb = torch.randn(6, d, generator=generator)
    targets = torch.rand(n, 6, generator=generator) < 0.4
    return LossExample(inputs=(query, label_emb), targets=(targets,))


def _temperature_errors(name: str = "temperature") -> tuple[dict, ...]:
    return ({name: 0.0}, {name: -0.1}, {name: _NAN}, {name: _INF}, {name: "0.1"})


_GATHER_FLAG = ({"gather_distributed": "True"}, {"gather_distributed": 1})

SPECS = [
    LossSpec(
        "info_nce",
        pair_example,
        invalid_kwargs=(*_temperature_errors(), *_GATHER_FLAG),
        bool_flags=("gather_distributed",),
        min_size=2,
    ),
    LossSpec(
        "nt_xent",
        pair_example,
        invalid_kwargs=(*_temperature_errors(), *_GATHER_FLAG),
        bool_flags=("gather_distributed",),
        per_element=True,
        notes="reduction='none' is [N, 2]: the loss of each view as an anchor",
    ),
    LossSpec(
        "supcon",
        views_labels_example,
        invalid_kwargs=(
            *_temperature_errors(),
            *_temperature_errors("base_temperature"),
            {"contrast_mode": "any"},
            {"variant": "mid"},
            *_GATHER_FLAG,
        ),
        bool_flags=("gather_distributed",),
        per_element=True,
        notes="reduction='none' is [N, V]: one value per anchor view",
    ),
    LossSpec(
        "sigmoid_contrastive",
        pair_example,
        invalid_kwargs=(
            {"init_log_scale": _NAN},
            {"init_bias": _INF},
            {"init_bias": "-10"},
            *_GATHER_FLAG,
        ),
        bool_flags=("gather_distributed",),
    ),
    LossSpec(
        "alignment_uniformity",
        pair_example,
        invalid_kwargs=(
            {"alpha": 0.0},
            {"alpha": _NAN},
            {"t": -1.0},
            {"t": _INF},
            {"lam": -0.5},
            {"lam": "1"},
            *_GATHER_FLAG,
        ),
        bool_flags=("gather_distributed", "normalize"),
    ),
    LossSpec(
        "decoupled_softmax",
        multilabel_retrieval_example,
        invalid_kwargs=_temperature_errors(),
        bool_flags=("normalize",),
    ),
]
