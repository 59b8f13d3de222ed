r"""Reverse cross-entropy (RCE), the passive term of SCE and APL.

*Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al., ICCV 2019
(arXiv:1908.06112). The official code (`HanxunH/Active-Passive-Losses`, `loss.py`) clamps the
one-hot target to `[1e-4, 1]`, so `log 0` becomes `log 1e-4`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import (
    DEFAULT_LOG_ZERO,
    check_log_zero,
    check_scale,
    robust_loss,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index

__all__ = ["ReverseCrossEntropyLoss", "reverse_cross_entropy"]


def _check_rce_args(*, scale: Any, log_zero: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of reverse_cross_entropy's hyperparameters (functional and class).
    return {
        "scale": check_scale(scale),
        "log_zero": check_log_zero(log_zero),
        "ignore_index": check_ignore_index(ignore_index),
    }


def rce_rows(batch: ClassificationBatch, log_zero: float) -> Tensor:
    # -Σ_k p_k log(clamp(onehot_k, e^{log_zero}, 1)) = -log_zero · (1 - p_y)
    #                                                = log_zero · expm1(log p_y)
    return torch.expm1(batch.log_p_target()) * log_zero


def reverse_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Reverse cross-entropy, $\ell = -\sum_k p_k \log \tilde t_k = -A\,(1 - p_y)$.

    $\tilde t$ is the one-hot target clamped to $[e^{A}, 1]$ with $A$ = `log_zero`. The
    official SCE/APL code clamps at `1e-4` ($A = \ln 10^{-4} \approx -9.21$, the default); the
    SCE paper's text uses $A = -4$. The reference also clamps $p_k \ge 10^{-7}$, which changes
    the value by at most $C \cdot 10^{-7} |A|$; the closed form here does not.

    Paper: *Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al.,
    ICCV 2019 (arXiv:1908.06112).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        scale: multiplier $\ge 0$ (the `beta` of APL/SCE).
        log_zero: $A < 0$, the log of the clamped zero entries of the one-hot target.
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import reverse_cross_entropy
        >>> reverse_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), log_zero=-4.0)
        tensor(2.)
    """
    hp = _check_rce_args(scale=scale, log_zero=log_zero, ignore_index=ignore_index)
    return robust_loss(
        lambda b: rce_rows(b, hp["log_zero"]),
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
        scale=hp["scale"],
    )


@register_loss("rce", aliases=("reverse_cross_entropy",))
class ReverseCrossEntropyLoss(Loss):
    r"""Reverse cross-entropy $-A(1-p_y)$, the passive term of SCE and APL.

    See [reverse_cross_entropy][lightning_losses.functional.reverse_cross_entropy]. Paper: Wang
    et al., ICCV 2019 (arXiv:1908.06112).

    Args:
        scale: multiplier (default 1.0).
        log_zero: $A < 0$ (default $\ln 10^{-4}$, the official code's clamp).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ReverseCrossEntropyLoss
        >>> ReverseCrossEntropyLoss(log_zero=-4.0)(torch.zeros(1, 2), torch.tensor([1]))
        tensor(2.)
    """

    functional = staticmethod(reverse_cross_entropy)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        scale: float = 1.0,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_rce_args(scale=scale, log_zero=log_zero, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
