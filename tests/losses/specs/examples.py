"""Example-input builders for the loss specs.

Each builder takes `(batch_size, size, generator)` and returns a `LossExample`; the
family-agnostic contract tests call it to drive any registered loss. New families add their
builder here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class LossExample:
    """A small valid call of a loss: `loss(*inputs, *targets, **kwargs)`.

    Attributes:
        inputs: differentiable floating-point inputs (logits, scores, embeddings). Contract tests
            scale them to ±1e4, cast them to bf16 and run `gradcheck` on them.
        targets: non-differentiable inputs (labels, masks, soft targets, reference log-probs).
        kwargs: extra keyword arguments for `forward`.
        class_target: index into `targets` of an integer class-index tensor whose entries may be
            set to `ignore_index` or pushed out of range (`None` when there is none).
        num_classes: the valid label range of `targets[class_target]` is `[0, num_classes)`.
    """

    inputs: tuple[Tensor, ...]
    targets: tuple[Tensor, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    class_target: int | None = None
    num_classes: int | None = None

    def args(self) -> tuple[Tensor, ...]:
        return (*self.inputs, *self.targets)


def classification_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits ``[n, c]`` and class indices ``[n]``."""
    logits = torch.randn(n, c, generator=generator)
    target = torch.randint(0, c, (n,), generator=generator)
    return LossExample(inputs=(logits,), targets=(target,), class_target=0, num_classes=c)


def multilabel_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits ``[n, c]`` and binary float targets ``[n, c]`` (multi-label / dense binary)."""
    logits = torch.randn(n, c, generator=generator)
    target = torch.randint(0, 2, (n, c), generator=generator).float()
    return LossExample(inputs=(logits,), targets=(target,))


def ranking_example(n: int, k: int, generator: torch.Generator) -> LossExample:
    """Positive scores ``[n]`` and negative scores ``[n, k]`` (ranking / recommendation)."""
    pos = torch.randn(n, generator=generator)
    neg = torch.randn(n, k, generator=generator)
    return LossExample(inputs=(pos, neg))


def class_prior_example(n: int, c: int, generator: torch.Generator) -> LossExample:
    """Logits ``[n, c]``, class indices ``[n]`` and ``class_priors=[c]`` (long-tailed) in kwargs."""
    ex = classification_example(n, c, generator)
    priors = torch.rand(c, generator=generator) + 0.05
    ex.kwargs = {"class_priors": priors / priors.sum()}
    return ex
