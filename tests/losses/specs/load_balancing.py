"""Contract-test spec of the mixture-of-experts load-balancing loss (Switch / Mixtral form)."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample


def routing_example(t: int, n: int, generator: torch.Generator) -> LossExample:
    """Routing probabilities `[t, n]` (softmax rows) and the top-`min(2, n)` experts `[t, K]`.

    `inputs[0]` (the probabilities) is the differentiable input: its rows are the per-token
    rows of `reduction="none"`. The expert indices are the class target, `num_classes = n`.
    """
    probs = torch.randn(t, n, generator=generator).softmax(-1)
    idx = probs.topk(min(2, n), dim=-1).indices
    return LossExample(inputs=(probs,), targets=(idx,), class_target=0, num_classes=n)


SPECS = [
    LossSpec(
        "load_balancing",
        routing_example,
        notes=(
            "no hyperparameter besides reduction/validate_args; the expert indices come from "
            "the probabilities' top-k (the contract tests later perturb the probabilities, not "
            "the selection); no ignore_index (pad tokens are excluded by `token_mask`, covered "
            "in tests/losses/test_load_balancing.py)"
        ),
    ),
]
