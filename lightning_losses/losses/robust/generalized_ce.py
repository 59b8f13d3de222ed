r"""Generalized cross-entropy (GCE), the bounded interpolation between CE and MAE.

*Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels*, Zhang &
Sabuncu, NeurIPS 2018 (arXiv:1805.07836).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import robust_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_number

__all__ = ["GeneralizedCrossEntropyLoss", "generalized_cross_entropy"]


def _check_gce_args(*, q: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of generalized_cross_entropy's hyperparameters (functional and class).
    return {
        "q": check_number("q", q, low=0.0, high=1.0, low_inclusive=False),
        "ignore_index": check_ignore_index(ignore_index),
    }


def gce_rows(batch: ClassificationBatch, q: float) -> Tensor:
    # (1 - p_y^q) / q as -expm1(q log p_y) / q: no cancellation, finite where p_y underflows.
    return torch.expm1(batch.log_p_target() * q) / -q


def generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Generalized cross-entropy, $\ell = (1 - p_y^q)/q$.

    Interpolates between cross-entropy ($q \to 0$) and MAE $1 - p_y$ ($q = 1$); bounded by
    $1/q$, hence robust to label noise. Computed in log space, so the gradient stays finite
    when $p_y$ underflows (logits of $\pm 10^4$), where the textbook `softmax(z)[y] ** q`
    gives NaN.

    Paper: *Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy
    Labels*, Zhang & Sabuncu, NeurIPS 2018 (arXiv:1805.07836).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        q: $q \in (0, 1]$ (default 0.7, the paper's).
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import generalized_cross_entropy
        >>> generalized_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), q=1.0)  # 1 - 0.5
        tensor(0.5000)
    """
    hp = _check_gce_args(q=q, ignore_index=ignore_index)
    return robust_loss(
        lambda b: gce_rows(b, hp["q"]),
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
    )


@register_loss("gce", aliases=("generalized_cross_entropy",))
class GeneralizedCrossEntropyLoss(Loss):
    r"""Generalized cross-entropy $(1 - p_y^q)/q$, robust to label noise.

    See [generalized_cross_entropy][lightning_losses.functional.generalized_cross_entropy].
    Paper: Zhang & Sabuncu, NeurIPS 2018 (arXiv:1805.07836).

    Args:
        q: $q \in (0, 1]$ (default 0.7); $q \to 0$ is cross-entropy, $q = 1$ is MAE.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import GeneralizedCrossEntropyLoss
        >>> GeneralizedCrossEntropyLoss(q=0.7)(torch.zeros(2, 2), torch.tensor([0, 1]))
        tensor(0.5492)
        >>> GeneralizedCrossEntropyLoss(q=0.5)
        GeneralizedCrossEntropyLoss(q=0.5, ignore_index=-100, reduction='mean')
    """

    functional = staticmethod(generalized_cross_entropy)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        q: float = 0.7,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_gce_args(q=q, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
