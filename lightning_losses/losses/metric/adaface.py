r"""AdaFace: a margin that adapts to image quality through the feature norm.

*AdaFace: Quality Adaptive Margin for Face Recognition*, Kim, Jain and Liu, CVPR 2022
(arXiv:2204.00964). Checked against the authors' `head.py` (`mk-minchul/AdaFace`, class
`AdaFace`): a float64 port of its forward is the test reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._embedding import check_embeddings
from lightning_losses.losses.metric.margin_softmax import (
    ClassCentreLoss,
    _check_margin_args,
    cosine_logits,
    margin_cross_entropy,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = ["AdaFaceLoss", "adaface_loss", "adaface_norm_stats"]

_NORM_MIN, _NORM_MAX = 1e-3, 100.0  # the official clip of the feature norm


def _check_adaface_args(
    *, margin: Any, h: Any, scale: Any, eps: Any, ignore_index: Any
) -> dict[str, Any]:
    hp = _check_margin_args(margin=margin, scale=scale, ignore_index=ignore_index, high=math.pi / 2)
    hp["h"] = check_number("h", h, low=0.0)
    hp["eps"] = check_number("eps", eps, low=0.0, high=0.1, low_inclusive=False)
    return hp


def adaface_norm_stats(
    embeddings: Tensor, valid: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Detached, clipped feature norms `[N]` and the mean and (unbiased) std of the valid rows.

    The mean of no row and the std of fewer than two rows are undefined; they are returned as
    NaN and [AdaFaceLoss][lightning_losses.losses.AdaFaceLoss] then keeps its running values.
    Masked sums instead of boolean indexing: no host sync, one graph under `torch.compile`.

    Args:
        embeddings: `[N, D]`.
        valid: optional `[N]` bool mask of the rows that count (default: all).
    """
    norms = embeddings.detach().norm(dim=-1).clamp(_NORM_MIN, _NORM_MAX)
    w = torch.ones_like(norms) if valid is None else valid.to(norms.dtype)
    n = w.sum()
    mean = (norms * w).sum() / n
    var = ((norms - mean.nan_to_num()).square() * w).sum() / (n - 1)
    nan = norms.new_full((), float("nan"))
    return norms, torch.where(n > 0, mean, nan), torch.where(n > 1, var.sqrt(), nan)


def adaface_loss(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    batch_mean: float | Tensor = 20.0,
    batch_std: float | Tensor = 100.0,
    *,
    margin: float = 0.4,
    h: float = 0.333,
    scale: float = 64.0,
    eps: float = 1e-3,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""AdaFace loss for given norm statistics (the module keeps them as running averages).

    With the detached feature norm $\lVert z\rVert$ clipped to $[10^{-3}, 100]$ and the
    statistics $\mu$, $\sigma$:

    $$
    \hat z = \operatorname{clip}\Big(h\,\frac{\lVert z\rVert - \mu}{\sigma + \epsilon},
        -1, 1\Big),\quad
    \theta' = \operatorname{clip}(\theta_y - m\hat z,\ \epsilon,\ \pi - \epsilon),
    $$

    target logit $s(\cos\theta' - (m + m\hat z))$, other logits $s\cos\theta_k$, then
    cross-entropy. As in the official code every cosine is first clamped to
    $[-1 + \epsilon, 1 - \epsilon]$. Limits: $\hat z = 0$ gives CosFace($m$), $\hat z = -1$
    gives ArcFace($m$) (for $\theta_y + m \le \pi - \epsilon$).

    *AdaFace: Quality Adaptive Margin for Face Recognition*, Kim et al., CVPR 2022
    (arXiv:2204.00964).

    Args:
        embeddings: `[N, D]` **unnormalised** (the norm is the image-quality proxy).
        labels: `[N]` class indices in `[0, C)` (or `ignore_index`).
        weight: class centres `[C, D]` (normalised inside).
        batch_mean: $\mu$ of the feature norms (official initial value 20).
        batch_std: $\sigma$ of the feature norms (official initial value 100).
        margin: $m$ (official 0.4).
        h: concentration $h \ge 0$ (official 0.333).
        scale: $s$ (official 64).
        eps: $\epsilon$ of the clamps and of the division (official 1e-3).
        ignore_index: label value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per row).
        validate_args: check the label range (a host sync).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape, label or hyperparameter.
        TypeError: on integer embeddings / centres or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import adaface_loss
        >>> centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> emb = torch.tensor([[20.0, 2.0], [1.0, 10.0]])
        >>> y = torch.tensor([0, 1])
        >>> adaface_loss(emb, y, centres, batch_mean=15.0, batch_std=5.0, scale=8.0)
        tensor(0.0303)
    """
    check_reduction(reduction)
    hp = _check_adaface_args(margin=margin, h=h, scale=scale, eps=eps, ignore_index=ignore_index)
    m, e = hp["margin"], hp["eps"]
    batch = cosine_logits(
        embeddings, labels, weight, ignore_index=hp["ignore_index"], validate_args=validate_args
    )
    batch.logits = batch.logits.clamp(-1 + e, 1 - e)
    norms, _, _ = adaface_norm_stats(
        check_embeddings("embeddings", embeddings).to(batch.logits.dtype)
    )
    z = ((norms - batch_mean) / (batch_std + e) * hp["h"]).clamp(-1.0, 1.0)
    z = torch.where(batch.valid, z, 0.0)  # an ignored (possibly non-finite) row stays finite
    theta = batch.at_target(batch.logits).acos()
    theta_m = (theta - m * z).clamp(e, math.pi - e)
    target = theta_m.cos() - (m + m * z)
    return margin_cross_entropy(batch, target, hp["scale"], reduction)


@register_loss("adaface")
class AdaFaceLoss(ClassCentreLoss):
    r"""AdaFace: quality-adaptive angular + additive margin over learnable class centres.

    See [adaface_loss][lightning_losses.functional.adaface_loss] for the formula. The module
    keeps the running norm statistics as buffers `batch_mean` (init 20) and `batch_std` (init
    100), as the official code does, and in training mode updates them from each batch
    *before* computing the loss: `μ ← α·mean + (1 − α)·μ` with `α = t_alpha` (the std of a
    single-row batch is undefined and leaves `σ` unchanged). In eval mode they are frozen.
    Distributed: local statistics per rank (as the official code), centres averaged by DDP.

    *AdaFace: Quality Adaptive Margin for Face Recognition*, Kim et al., CVPR 2022
    (arXiv:2204.00964).

    Args:
        num_classes: number of centres `C` (with `embedding_size`: the module owns them).
        embedding_size: `D`.
        margin: $m$ (0.4).
        h: concentration $h$ (0.333).
        scale: $s$ (64).
        t_alpha: EMA weight of the new batch (0.01, the official training setting).
        eps: $\epsilon$ (1e-3).
        ignore_index: label value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]` unnormalised; labels: `[N]`; weight (only without own centres):
          `[C, D]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import AdaFaceLoss
        >>> loss = AdaFaceLoss(num_classes=10, embedding_size=16)
        >>> loss(torch.randn(4, 16) * 20, torch.tensor([0, 3, 3, 9])).shape
        torch.Size([])
        >>> loss.batch_mean.shape, bool(loss.batch_mean != 20.0)  # moved by the first batch
        (torch.Size([]), True)
    """

    functional = staticmethod(adaface_loss)

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_size: int | None = None,
        margin: float = 0.4,
        h: float = 0.333,
        scale: float = 64.0,
        t_alpha: float = 0.01,
        eps: float = 1e-3,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_size,
            reduction=reduction,
            validate_args=validate_args,
            **_check_adaface_args(
                margin=margin, h=h, scale=scale, eps=eps, ignore_index=ignore_index
            ),
        )
        self.t_alpha = check_number("t_alpha", t_alpha, low=0.0, high=1.0)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    @torch.no_grad()
    def _update_stats(self, embeddings: Tensor, labels: Tensor) -> None:
        emb = check_embeddings("embeddings", embeddings)
        valid = None
        if self.ignore_index is not None and labels.shape == emb.shape[:1]:
            valid = labels != self.ignore_index
        _, mean, std = adaface_norm_stats(emb, valid)
        a = self.t_alpha
        # An undefined statistic (NaN: no valid row, or one row for the std) keeps its value.
        self.batch_mean.copy_(
            torch.where(mean.isnan(), self.batch_mean, mean * a + (1 - a) * self.batch_mean)
        )
        self.batch_std.copy_(
            torch.where(std.isnan(), self.batch_std, std * a + (1 - a) * self.batch_std)
        )

    def _functional_kwargs(self) -> dict[str, Any]:
        # The running norm statistics are the module's own buffers.
        stats = {"batch_mean": self.batch_mean, "batch_std": self.batch_std}
        return {**super()._functional_kwargs(), **stats}

    def forward(self, embeddings: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of `embeddings [N, D]`, `labels [N]`; in training, first updates the norm stats."""
        if self.training:
            self._update_stats(embeddings, labels)
        return self._call_functional(embeddings, labels, self._centres(weight))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", t_alpha={self.t_alpha}"
