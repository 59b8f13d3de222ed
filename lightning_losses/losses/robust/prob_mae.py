r"""MAE on class probabilities, $1 - p_y$: the passive term of APL.

*Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML 2020
(arXiv:2006.13554). Registry name `prob_mae` (formerly `mae`, a name left to the regression
mean absolute error).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import check_scale, robust_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index

__all__ = ["MeanAbsoluteErrorLoss", "mean_absolute_error_loss"]


def _check_prob_mae_args(*, scale: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of mean_absolute_error_loss's hyperparameters (functional and class).
    return {"scale": check_scale(scale), "ignore_index": check_ignore_index(ignore_index)}


def mae_rows(batch: ClassificationBatch) -> Tensor:
    return -torch.expm1(batch.log_p_target())  # 1 - p_y, accurate as p_y -> 1


def mean_absolute_error_loss(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""MAE on probabilities, $\ell = 1 - p_y$ ($= \tfrac12\lVert p - e_y \rVert_1$).

    The passive loss of APL as written in the official code (the factor 2 of the L1 norm is
    absorbed in `scale`). One `softmax` pass and a one-pass backward through
    `ClassificationBatch.log_p_target`, as fast as the textbook `1 - softmax(z)[y]`.

    Paper: *Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML
    2020 (arXiv:2006.13554).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        scale: multiplier $\ge 0$.
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import mean_absolute_error_loss
        >>> mean_absolute_error_loss(torch.zeros(1, 4), torch.tensor([0]))
        tensor(0.7500)
    """
    hp = _check_prob_mae_args(scale=scale, ignore_index=ignore_index)
    return robust_loss(
        mae_rows,
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
        scale=hp["scale"],
    )


@register_loss("prob_mae")
class MeanAbsoluteErrorLoss(Loss):
    r"""MAE on class probabilities, $1 - p_y$: the APL passive term.

    Registry name `prob_mae`. See
    [mean_absolute_error_loss][lightning_losses.functional.mean_absolute_error_loss]. Paper: Ma
    et al., ICML 2020 (arXiv:2006.13554).

    Args:
        scale: multiplier (default 1.0).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MeanAbsoluteErrorLoss
        >>> MeanAbsoluteErrorLoss()(torch.zeros(1, 2), torch.tensor([1]))
        tensor(0.5000)
    """

    functional = staticmethod(mean_absolute_error_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        scale: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_prob_mae_args(scale=scale, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
