r"""Active-Passive Loss (APL): a normalized active term plus a passive term.

*Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML 2020
(arXiv:2006.13554). Parity with the authors' `NCEandRCE` / `NCEandMAE` / `NFLandRCE` /
`NFLandMAE` (`HanxunH/Active-Passive-Losses`, `loss.py`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import DEFAULT_LOG_ZERO, check_log_zero, robust_loss
from lightning_losses.losses.robust.normalized_ce import log_p_target_and_sum
from lightning_losses.losses.robust.normalized_focal import nfl_rows
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_choice, check_ignore_index, check_number

__all__ = ["ActivePassiveLoss", "active_passive_loss"]

ACTIVE_LOSSES = ("nce", "nfl")
PASSIVE_LOSSES = ("rce", "mae")


def _check_apl_args(
    *,
    active: Any,
    passive: Any,
    alpha: Any,
    beta: Any,
    gamma: Any,
    log_zero: Any,
    ignore_index: Any,
) -> dict[str, Any]:
    # The one validator of active_passive_loss's hyperparameters (functional and class).
    return {
        "active": check_choice("active", active, ACTIVE_LOSSES),
        "passive": check_choice("passive", passive, PASSIVE_LOSSES),
        "alpha": check_number("alpha", alpha, low=0.0),
        "beta": check_number("beta", beta, low=0.0),
        "gamma": check_number("gamma", gamma, low=0.0),
        "log_zero": check_log_zero(log_zero),
        "ignore_index": check_ignore_index(ignore_index),
    }


def apl_rows(
    batch: ClassificationBatch,
    active: str,
    passive: str,
    alpha: float,
    beta: float,
    gamma: float,
    log_zero: float,
) -> Tensor:
    if active == "nce":
        # One fused pass gives log p_y and Σ_k log p_k; the passive term reuses log p_y.
        log_p_y, total = log_p_target_and_sum(batch)
        act = log_p_y / total
    else:  # NFL fills the batch's log_probs cache, which log_p_target() then reads
        act = nfl_rows(batch, gamma, True)
        log_p_y = batch.log_p_target()
    # RCE = -A (1 - p_y) = A expm1(log p_y); MAE = 1 - p_y = -expm1(log p_y).
    pas = torch.expm1(log_p_y) * (log_zero if passive == "rce" else -1.0)
    return act * alpha + pas * beta


def active_passive_loss(
    input: Tensor,
    target: Tensor,
    *,
    active: str = "nce",
    passive: str = "rce",
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.5,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Active-Passive Loss, $\ell = \alpha\,\ell_{\text{active}} + \beta\,\ell_{\text{passive}}$.

    Active ∈ {`"nce"`, `"nfl"`} (normalized CE / focal, NFL with detached focal weights as in
    the official code), passive ∈ {`"rce"`, `"mae"`}. Both terms are robust; the active one
    fits the labelled class, the passive one pushes other classes down, fixing the
    underfitting of a normalized loss alone. Defaults are the paper's CIFAR-10 NCE+RCE setting;
    CIFAR-100 uses `alpha=10, beta=0.1`.

    Paper: *Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al., ICML
    2020 (arXiv:2006.13554).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        active: `"nce"` or `"nfl"`.
        passive: `"rce"` or `"mae"`.
        alpha: weight of the active term.
        beta: weight of the passive term.
        gamma: NFL focusing parameter (used only with `active="nfl"`).
        log_zero: RCE's clamped log-zero (used only with `passive="rce"`).
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import active_passive_loss
        >>> active_passive_loss(torch.zeros(1, 4), torch.tensor([0]), log_zero=-4.0)  # 0.25 + 3
        tensor(3.2500)
    """
    hp = _check_apl_args(
        active=active,
        passive=passive,
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        log_zero=log_zero,
        ignore_index=ignore_index,
    )
    ignore = hp.pop("ignore_index")
    return robust_loss(
        lambda b: apl_rows(b, **hp),
        input,
        target,
        ignore_index=ignore,
        reduction=reduction,
        validate_args=validate_args,
    )


@register_loss("apl", aliases=("active_passive", "nce_rce"))
class ActivePassiveLoss(Loss):
    r"""Active-Passive Loss $\alpha\,\ell_{\text{active}} + \beta\,\ell_{\text{passive}}$.

    Default NCE+RCE with the paper's CIFAR-10 weights `alpha=1, beta=1`; the printed module
    shows the chosen pair (`ActivePassiveLoss(active='nce', passive='rce', ...)`). See
    [active_passive_loss][lightning_losses.functional.active_passive_loss]. Paper: Ma et al.,
    ICML 2020 (arXiv:2006.13554).

    Args:
        active: `"nce"` (default) or `"nfl"`.
        passive: `"rce"` (default) or `"mae"`.
        alpha: active weight (default 1.0; CIFAR-100: 10.0).
        beta: passive weight (default 1.0; CIFAR-100: 0.1).
        gamma: NFL focusing parameter (default 0.5).
        log_zero: RCE's clamped log-zero (default $\ln 10^{-4}$).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ActivePassiveLoss
        >>> loss = ActivePassiveLoss(active="nce", passive="mae")
        >>> loss(torch.zeros(1, 4), torch.tensor([0]))
        tensor(1.)
        >>> loss  # doctest: +ELLIPSIS
        ActivePassiveLoss(active='nce', passive='mae', alpha=1.0, beta=1.0, ...)
    """

    functional = staticmethod(active_passive_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        active: str = "nce",
        passive: str = "rce",
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.5,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_apl_args(
                active=active,
                passive=passive,
                alpha=alpha,
                beta=beta,
                gamma=gamma,
                log_zero=log_zero,
                ignore_index=ignore_index,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
