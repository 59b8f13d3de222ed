r"""Label-distributionally-robust loss with a KL regulariser (LDR-KL).

*Label Distributionally Robust Losses for Multi-class Classification: Consistency, Robustness
and Adaptivity*, Zhu, Ying & Yang, ICML 2023 (arXiv:2112.14869). The authors' `LDRLoss_V1`
softplus- and mean-normalises the logits (`normalize_scores=True`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._classification import ClassificationBatch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.robust._common import robust_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_ignore_index, check_number

__all__ = ["LDRKLLoss", "ldr_kl_loss"]

LDR_SCORE_EPS = 1e-12  # floor of the softplus mean: all-very-negative logits stay finite


def _check_ldr_kl_args(
    *, lam: Any, margin: Any, normalize_scores: Any, ignore_index: Any
) -> dict[str, Any]:
    # The one validator of ldr_kl_loss's hyperparameters (functional and class).
    return {
        "lam": check_number("lam", lam, low=0.0, low_inclusive=False),
        "margin": check_number("margin", margin, low=0.0),
        "normalize_scores": check_bool("normalize_scores", normalize_scores),
        "ignore_index": check_ignore_index(ignore_index),
    }


def ldr_kl_rows(batch: ClassificationBatch, lam: float, margin: float, normalize: bool) -> Tensor:
    s = batch.logits
    if normalize:
        # Official code: positive scores softplus(z), divided by their mean over classes.
        s = F.softplus(s)
        s = s / s.mean(-1, keepdim=True).clamp_min(LDR_SCORE_EPS)
    s_y = batch.at_target(s)[:, None]
    # (s_k - s_y + c[k ≠ y]) / λ: the margin is added everywhere and taken back at the target.
    diff = (s - s_y).add_(margin).div_(lam).scatter_(-1, batch.target[:, None], 0.0)
    return lam * (torch.logsumexp(diff, -1) - math.log(s.shape[-1]))


def ldr_kl_loss(
    input: Tensor,
    target: Tensor,
    *,
    lam: float = 1.0,
    margin: float = 2.0,
    normalize_scores: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Label-distributionally-robust loss with a KL regulariser (LDR-KL).

    $$
    \ell = \lambda \log \frac1C \sum_k
    \exp\Big(\frac{s_k - s_y + c\,[k \ne y]}{\lambda}\Big)
    $$

    the worst case over label distributions $q$ of $\sum_k q_k (s_k - s_y + c[k\ne y])$ minus
    $\lambda\,\mathrm{KL}(q \,\|\, \mathrm{uniform})$. With `normalize_scores=True` (the
    authors' code) the scores are $s = \mathrm{softplus}(z) / \mathrm{mean}_k
    \mathrm{softplus}(z_k)$, which bounds them ($0 \le s_k \le C$) and so bounds the loss, the
    source of its noise robustness; with `False`, $s = z$ and `lam=1, margin=0` is
    $\mathrm{CE} - \log C$. $\lambda \to 0$ approaches the max-margin (Crammer-Singer) hinge,
    $\lambda \to \infty$ the mean margin. The adaptive ALDR-KL variant keeps a learned
    $\lambda_i$ per training sample (state indexed by sample id) and is not provided as a
    plain loss.

    Paper: *Label Distributionally Robust Losses for Multi-class Classification: Consistency,
    Robustness and Adaptivity*, Zhu, Ying & Yang, ICML 2023 (arXiv:2112.14869).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        lam: KL regularisation $\lambda > 0$ (default 1.0, the authors' class default).
        margin: $c \ge 0$ (default 2.0, the authors' `LDRLoss_V1` default; tuned per dataset
            in the paper).
        normalize_scores: softplus + mean-normalise the logits as the authors' code (default).
        ignore_index: target value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or the per-element loss `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import ldr_kl_loss
        >>> # equal logits: s = 1 for every class, loss = log((1 + (C-1) e^c) / C)
        >>> ldr_kl_loss(torch.zeros(1, 2), torch.tensor([0]), margin=1.0)  # log((1 + e) / 2)
        tensor(0.6201)
    """
    hp = _check_ldr_kl_args(
        lam=lam, margin=margin, normalize_scores=normalize_scores, ignore_index=ignore_index
    )
    return robust_loss(
        lambda b: ldr_kl_rows(b, hp["lam"], hp["margin"], hp["normalize_scores"]),
        input,
        target,
        ignore_index=hp["ignore_index"],
        reduction=reduction,
        validate_args=validate_args,
    )


@register_loss("ldr_kl", aliases=("ldr_kl_loss",))
class LDRKLLoss(Loss):
    r"""LDR-KL loss $\lambda\log\mathrm{mean}_k e^{(s_k - s_y + c[k\ne y])/\lambda}$ (noise-robust).

    See [ldr_kl_loss][lightning_losses.functional.ldr_kl_loss]. Paper: Zhu, Ying & Yang, ICML
    2023 (arXiv:2112.14869).

    Args:
        lam: KL regularisation $\lambda > 0$ (default 1.0).
        margin: $c \ge 0$ (default 2.0).
        normalize_scores: softplus + mean-normalise logits as the authors' code (default True).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LDRKLLoss
        >>> LDRKLLoss(margin=0.0, normalize_scores=False)(torch.zeros(1, 3), torch.tensor([0]))
        tensor(0.)
    """

    functional = staticmethod(ldr_kl_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        lam: float = 1.0,
        margin: float = 2.0,
        normalize_scores: bool = True,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_ldr_kl_args(
                lam=lam,
                margin=margin,
                normalize_scores=normalize_scores,
                ignore_index=ignore_index,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
