"""Example-input builders for the registry (``register_loss(..., example=...)``).

Each builder takes ``(batch_size, size, generator)`` and returns a
:class:`~lightning_losses.registry.LossExample`; family-agnostic contract tests call it to drive
any registered loss. New families add their builder here.
"""

from __future__ import annotations

import torch

from lightning_losses.registry import LossExample

__all__ = ["classification_example", "multilabel_example"]


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
