r"""Normalized focal loss (NFL), a symmetric active term of APL.

*Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML 2020
(arXiv:2006.13554). As in the authors' code (`HanxunH/Active-Passive-Losses`, `loss.py`) the
focal weights are detached by default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import check_scale, robust_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_ignore_index, check_number

__all__ = ["NormalizedFocalLoss", "normalized_focal_loss"]


def _check_nfl_args(
    *, gamma: Any, scale: Any, detach_focal_weights: Any, ignore_index: Any
) -> dict[str, Any]:
    # The one validator of normalized_focal_loss's hyperparameters (functional and class).
    return {
        "gamma": check_number("gamma", gamma, low=0.0),
        "scale": check_scale(scale),
        "detach_focal_weights": check_bool("detach_focal_weights", detach_focal_weights),
        "ignore_index": check_ignore_index(ignore_index),
    }


def nfl_rows(batch: ClassificationBatch, gamma: float, detach_focal_weights: bool) -> Tensor:
    log_p = batch.log_probs()
    # (1 - p)^γ; log_softmax ≤ 0 so -expm1 ≥ 0. Detached weights (official code) are built
    # without autograd, in place, so nothing is saved for them.
    if detach_focal_weights:
        with torch.no_grad():
            weights = torch.expm1(log_p).neg_().pow_(gamma)
    else:
        weights = (-torch.expm1(log_p)).pow(gamma)
    w_y = batch.at_target(weights)
    return (w_y * batch.log_p_target()) / (weights * log_p).sum(-1)


def normalized_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 0.5,
    scale: float = 1.0,
    detach_focal_weights: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Normalized focal loss, $\dfrac{(1-p_y)^\gamma \log p_y}{\sum_k (1-p_k)^\gamma \log p_k}$.

    `gamma=0` is normalized cross-entropy. As in the official code the focal weights
    $(1-p)^\gamma$ are detached (`detach_focal_weights=True`): the `log p` terms keep their
    gradients, so the gradient is not the derivative of the value; `False` differentiates the
    weights too. The value is the same either way and $\sum_j \ell(z, j) = 1$.

    Paper: *Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML
    2020 (arXiv:2006.13554).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        gamma: focusing parameter $\gamma \ge 0$ (default 0.5).
        scale: multiplier $\ge 0$.
        detach_focal_weights: follow the official code (`True`) or differentiate the weights.
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_focal_loss
        >>> normalized_focal_loss(torch.zeros(1, 4), torch.tensor([2]))
        tensor(0.2500)
    """
    hp = _check_nfl_args(
        gamma=gamma,
        scale=scale,
        detach_focal_weights=detach_focal_weights,
        ignore_index=ignore_index,
    )
    return robust_loss(
        lambda b: nfl_rows(b, hp["gamma"], hp["detach_focal_weights"]),
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
        scale=hp["scale"],
    )


@register_loss("nfl", aliases=("normalized_focal",))
class NormalizedFocalLoss(Loss):
    r"""Normalized focal loss, symmetric in $[0, 1]$; `gamma=0` is normalized cross-entropy.

    See [normalized_focal_loss][lightning_losses.functional.normalized_focal_loss]. Paper: Ma
    et al., ICML 2020 (arXiv:2006.13554).

    Args:
        gamma: focusing parameter (default 0.5).
        scale: multiplier (default 1.0).
        detach_focal_weights: detach $(1-p)^\gamma$ as the official code does (default True).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedFocalLoss
        >>> NormalizedFocalLoss(gamma=0.5)(torch.zeros(1, 5), torch.tensor([0]))
        tensor(0.2000)
    """

    functional = staticmethod(normalized_focal_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        gamma: float = 0.5,
        scale: float = 1.0,
        detach_focal_weights: bool = True,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_nfl_args(
                gamma=gamma,
                scale=scale,
                detach_focal_weights=detach_focal_weights,
                ignore_index=ignore_index,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
