r"""Symmetric cross-entropy (SCE): CE plus reverse CE.

*Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al., ICCV 2019
(arXiv:1908.06112).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import DEFAULT_LOG_ZERO, check_log_zero, robust_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_number

__all__ = ["SymmetricCrossEntropyLoss", "symmetric_cross_entropy"]


def _check_sce_args(*, alpha: Any, beta: Any, log_zero: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of symmetric_cross_entropy's hyperparameters (functional and class).
    return {
        "alpha": check_number("alpha", alpha, low=0.0),
        "beta": check_number("beta", beta, low=0.0),
        "log_zero": check_log_zero(log_zero),
        "ignore_index": check_ignore_index(ignore_index),
    }


def sce_rows(batch: ClassificationBatch, alpha: float, beta: float, log_zero: float) -> Tensor:
    # α(-log p_y) + β(-A)(1 - p_y), from one log p_y.
    log_p_y = batch.log_p_target()
    return torch.expm1(log_p_y) * (beta * log_zero) - log_p_y * alpha


def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Symmetric cross-entropy, $\ell = \alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}$.

    $$
    \ell = -\alpha \log p_y - \beta A\,(1 - p_y)
    $$

    RCE is [reverse_cross_entropy][lightning_losses.functional.reverse_cross_entropy] with
    $A$ = `log_zero` (the official code clamps the one-hot target at `1e-4`,
    $A = \ln 10^{-4}$, the default; the paper's text uses $A = -4$). Defaults are the paper's
    CIFAR-10 setting; CIFAR-100 uses `alpha=6.0, beta=0.1`. `alpha=1, beta=0` is
    cross-entropy.

    Paper: *Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al.,
    ICCV 2019 (arXiv:1908.06112).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        alpha: weight of the CE term (default 0.1).
        beta: weight of the RCE term (default 1.0).
        log_zero: $A < 0$ (default $\ln 10^{-4}$).
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import symmetric_cross_entropy
        >>> # p_y = 1/2: 0.1 * log 2 + 1.0 * 4 * 0.5
        >>> symmetric_cross_entropy(torch.zeros(1, 2), torch.tensor([1]), log_zero=-4.0)
        tensor(2.0693)
    """
    hp = _check_sce_args(alpha=alpha, beta=beta, log_zero=log_zero, ignore_index=ignore_index)
    return robust_loss(
        lambda b: sce_rows(b, hp["alpha"], hp["beta"], hp["log_zero"]),
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
    )


@register_loss("sce", aliases=("symmetric_cross_entropy",))
class SymmetricCrossEntropyLoss(Loss):
    r"""Symmetric cross-entropy $\alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}$.

    See [symmetric_cross_entropy][lightning_losses.functional.symmetric_cross_entropy]. Paper:
    Wang et al., ICCV 2019 (arXiv:1908.06112).

    Args:
        alpha: CE weight (default 0.1; CIFAR-100: 6.0).
        beta: RCE weight (default 1.0; CIFAR-100: 0.1).
        log_zero: RCE's clamped log-zero (default $\ln 10^{-4}$, official code).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SymmetricCrossEntropyLoss
        >>> SymmetricCrossEntropyLoss(alpha=1.0, beta=0.0)(torch.zeros(1, 4), torch.tensor([0]))
        tensor(1.3863)
    """

    functional = staticmethod(symmetric_cross_entropy)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_sce_args(alpha=alpha, beta=beta, log_zero=log_zero, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
