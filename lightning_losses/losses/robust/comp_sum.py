r"""The comp-sum loss family: CE, GCE, MAE and the sum-exponential loss in one knob.

*Cross-Entropy Loss Functions: Theoretical Analysis and Applications*, Mao, Mohri & Zhong,
ICML 2023 (arXiv:2304.07288).
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

__all__ = ["CompSumLoss", "comp_sum_loss"]


def _check_comp_sum_args(*, tau: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of comp_sum_loss's hyperparameters (functional and class).
    return {
        "tau": check_number("tau", tau, low=0.0, high=2.0),
        "ignore_index": check_ignore_index(ignore_index),
    }


def comp_sum_rows(batch: ClassificationBatch, tau: float) -> Tensor:
    log_p_y = batch.log_p_target()
    if tau == 1.0:
        return -log_p_y
    # Φ_τ(1/p_y - 1) = (p_y^{τ-1} - 1) / (1 - τ), via expm1 so τ → 1 stays accurate.
    return torch.expm1(log_p_y * (tau - 1.0)) / (1.0 - tau)


def comp_sum_loss(
    input: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Comp-sum loss family $\ell_\tau$, with CE, GCE and MAE as members.

    With $u = \sum_{k \ne y} e^{z_k - z_y} = 1/p_y - 1$:

    $$
    \ell_\tau = \Phi_\tau(u) =
    \begin{cases} \log(1 + u) = -\log p_y & \tau = 1 \\
    \dfrac{(1+u)^{1-\tau} - 1}{1 - \tau} = \dfrac{p_y^{\tau-1} - 1}{1-\tau} & \tau \ne 1
    \end{cases}
    $$

    $\tau = 0$ is the sum-exponential loss $1/p_y - 1$, $\tau = 1$ is cross-entropy,
    $\tau \in (1, 2)$ is exactly GCE with $q = \tau - 1$, $\tau = 2$ is MAE $1 - p_y$. For
    $\tau < 1$ the loss grows like $p_y^{\tau-1}$ and overflows for extremely wrong logits
    ($\log p_y \lesssim -88/(1-\tau)$ in float32); the bounded members are $\tau \ge 1$.

    Paper: *Cross-Entropy Loss Functions: Theoretical Analysis and Applications*, Mao, Mohri &
    Zhong, ICML 2023 (arXiv:2304.07288).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        tau: $\tau \in [0, 2]$ (default 1.0 = cross-entropy).
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import comp_sum_loss
        >>> logits, y = torch.zeros(1, 4), torch.tensor([0])  # p_y = 1/4
        >>> comp_sum_loss(logits, y, tau=0.0), comp_sum_loss(logits, y, tau=2.0)  # 1/p-1, 1-p
        (tensor(3.), tensor(0.7500))
    """
    hp = _check_comp_sum_args(tau=tau, ignore_index=ignore_index)
    return robust_loss(
        lambda b: comp_sum_rows(b, hp["tau"]),
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
    )


@register_loss("comp_sum", aliases=("comp_sum_loss",))
class CompSumLoss(Loss):
    r"""Comp-sum loss $(p_y^{\tau-1} - 1)/(1-\tau)$: `tau` 0 sum-exp., 1 CE, (1, 2) GCE, 2 MAE.

    See [comp_sum_loss][lightning_losses.functional.comp_sum_loss]. Paper: Mao, Mohri & Zhong,
    ICML 2023 (arXiv:2304.07288).

    Args:
        tau: $\tau \in [0, 2]$ (default 1.0).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CompSumLoss
        >>> CompSumLoss(tau=1.0)(torch.zeros(2, 4), torch.tensor([0, 1]))  # CE = log 4
        tensor(1.3863)
    """

    functional = staticmethod(comp_sum_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        tau: float = 1.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_comp_sum_args(tau=tau, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
