"""Example-input builders for the registry (``register_loss(..., example=...)``).

Each builder takes ``(batch_size, size, generator)`` and returns a
:class:`~lightning_losses.registry.LossExample`; family-agnostic contract tests call it to drive
any registered loss. New families add their builder here.
"""

from __future__ import annotations

import torch

from lightning_losses.registry import LossExample

__all__ = ["classification_example", "multilabel_example", "ranking_example"]


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
