r"""The hidden-states criterion protocol: a loss that takes an LM head's input, not its logits.

A language model's `[B, T, V]` logits are the largest tensor of a training step at large
vocabularies. A criterion that *consumes the hidden states* takes the final hidden states
`[B, T, H]` and the output projection (`lm_head.weight` `[V, H]`, optional bias `[V]`) and
projects them itself, e.g. in token chunks, as
[ChunkedLinearCrossEntropyLoss][lightning_losses.losses.ChunkedLinearCrossEntropyLoss] does
(after *Liger Kernel: Efficient Triton Kernels for LLM Training*, Hsu et al.,
arXiv:2410.10989, and *Cut Your Losses in Large-Vocabulary Language Models*, Wijmans et al.,
arXiv:2411.09009). A model such as the NLP recipe's `CausalLM` checks
`consumes_hidden_states(criterion)` and then never materialises the logits. Any loss can opt in
by implementing the small `HiddenStatesCriterion` protocol; no base class is needed.

The protocol:

- `consumes_hidden_states: ClassVar[bool] = True`: the declaration itself (a class that sets it
  to `False` is treated as a logits criterion).
- `forward(hidden, weight, target, bias=None)`: `hidden` `[B, T, H]` (or `[N, H]`), `weight`
  `[V, H]`, `target` `[B, T]` token ids (`-100` = ignored), `bias` `[V]` or `None`. With
  `reduction="none"` (what [LossMixin][lightning_losses.mixins.LossMixin] sets) it returns the
  per-token losses shaped like `target`; ignored positions are masked by the caller.
- `loss_terms() -> dict[str, Tensor]`: named, detached scalar parts of the value returned by the
  last `forward` (e.g. `{"z_loss": ...}`), for logging only: they are already inside the
  returned loss and must not be added to the objective again. Empty when there is none.

Example:
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from torch import nn
    >>> class LinearCE(nn.Module):  # the naive form: projects, then cross-entropy
    ...     consumes_hidden_states = True
    ...     reduction = "none"
    ...     def forward(self, hidden, weight, target, bias=None):
    ...         logits = F.linear(hidden, weight, bias)
    ...         return F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    ...     def loss_terms(self):
    ...         return {}
    >>> consumes_hidden_states(LinearCE()), consumes_hidden_states(nn.CrossEntropyLoss())
    (True, False)
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["HiddenStatesCriterion", "consumes_hidden_states"]


@runtime_checkable
class HiddenStatesCriterion(Protocol):
    """A criterion computed from the final hidden states and the output projection.

    See the module docstring for the contract of each member. `isinstance(x,
    HiddenStatesCriterion)` checks that the three members exist; use
    `consumes_hidden_states(x)`, which also requires the flag to be `True`.
    """

    consumes_hidden_states: ClassVar[bool]

    def forward(
        self, hidden: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None, /
    ) -> Tensor:
        """Per-token losses (`reduction="none"`) or their reduction, from hidden states."""
        ...

    def loss_terms(self) -> dict[str, Tensor]:
        """Detached named parts of the last `forward`'s value, for logging (may be empty)."""
        ...


def consumes_hidden_states(criterion: object) -> bool:
    """Whether `criterion` implements `HiddenStatesCriterion` with the flag set to `True`.

    Args:
        criterion: any object (usually a loss module).

    Returns:
        `True` when the criterion takes `(hidden, weight, target, bias)` instead of logits.
    """
    return (
        isinstance(criterion, HiddenStatesCriterion)
        and getattr(criterion, "consumes_hidden_states", False) is True
    )
