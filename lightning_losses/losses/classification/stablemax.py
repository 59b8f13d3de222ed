r"""StableMax cross-entropy: softmax replaced by a linearly growing normaliser.

From *Grokking at the Edge of Numerical Stability*, Prieto et al., ICLR 2025 (arXiv:2501.04697).
`log_stablemax` is public for use outside the loss (e.g. StableMax predictions).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import prepare_classification
from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_reduction

__all__ = ["StableMaxCrossEntropyLoss", "log_stablemax", "stablemax_cross_entropy"]


def log_stablemax(input: Tensor, dim: int = -1) -> Tensor:
    r"""Log of StableMax along `dim`, $\log s(z_i) - \log\sum_j s(z_j)$.

    $s(x) = x + 1$ for $x \ge 0$ and $1/(1-x)$ for $x < 0$ (continuous, $s(0)=1$, $s'(0)=1$).
    Computed in log space as `log1p` of each branch; half/bf16 inputs are computed in float32.

    Paper: *Grokking at the Edge of Numerical Stability*, Prieto et al., ICLR 2025
    (arXiv:2501.04697).

    Args:
        input: scores of any shape.
        dim: the dimension normalised over (default the last).

    Returns:
        Log-probabilities with the shape of `input`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import log_stablemax
        >>> log_stablemax(torch.tensor([0.0, 1.0])).exp()  # s = (1, 2)
        tensor([0.3333, 0.6667])
    """
    log_s = _LogStableS.apply(upcast(input))
    return log_s - torch.logsumexp(log_s, dim=dim, keepdim=True)


class _LogStableS(torch.autograd.Function):
    r"""$\log s(x)$ = `log1p(x)` (x ≥ 0) or `-log1p(-x)` (x < 0); d/dx = 1 / (1 + |x|).

    A custom backward saves only `x` (the composed `where`/`clamp`/`log1p` graph would keep
    three `[M, C]` tensors alive until backward).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.log1p(x.clamp_min(0)), -torch.log1p((-x).clamp_min(0)))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad / (1 + x.abs())


def _check_stablemax_args(*, ignore_index: Any) -> dict[str, Any]:
    return {"ignore_index": check_ignore_index(ignore_index)}


def stablemax_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Cross-entropy on StableMax probabilities instead of softmax.

    $$
    s(x) = \begin{cases} x + 1 & x \ge 0 \\ \frac{1}{1 - x} & x < 0 \end{cases},\quad
    p_i = \frac{s(z_i)}{\sum_j s(z_j)},\quad \ell = -\log p_y
    $$

    $s$ grows linearly instead of exponentially, so probabilities do not round to exactly 0/1
    at large logits ("softmax collapse"): at logits of $\pm 10^4$ the loss and its gradient stay
    non-zero where softmax cross-entropy in float32 gives exactly 0.

    Paper: *Grokking at the Edge of Numerical Stability*, Prieto et al., ICLR 2025
    (arXiv:2501.04697).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import stablemax_cross_entropy
        >>> # s = (2, 1, 1/2): p_0 = 2 / 3.5, loss = log(1.75)
        >>> stablemax_cross_entropy(torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([0]))
        tensor(0.5596)
    """
    check_reduction(reduction)
    hp = _check_stablemax_args(ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    rows = -batch.at_target(log_stablemax(batch.logits))
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss("stablemax_ce", aliases=("stablemax_cross_entropy", "stablemax"))
class StableMaxCrossEntropyLoss(Loss):
    r"""Cross-entropy on StableMax probabilities, $-\log s(z_y) / \sum_j s(z_j)$.

    See [stablemax_cross_entropy][lightning_losses.functional.stablemax_cross_entropy].

    Paper: *Grokking at the Edge of Numerical Stability*, Prieto et al., ICLR 2025
    (arXiv:2501.04697).

    Args:
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import StableMaxCrossEntropyLoss
        >>> StableMaxCrossEntropyLoss()(torch.zeros(2, 4), torch.tensor([0, 3]))  # log 4
        tensor(1.3863)
    """

    functional = staticmethod(stablemax_cross_entropy)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self, ignore_index: int = -100, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_stablemax_args(ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
