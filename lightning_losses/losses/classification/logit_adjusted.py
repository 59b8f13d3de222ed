r"""Logit-adjusted cross-entropy for long-tailed labels.

From *Long-tail learning via logit adjustment*, Menon et al., ICLR 2021 (arXiv:2007.07314).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.classification.ce import (
    _check_cross_entropy_args,
    cross_entropy,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction, check_tensor

__all__ = ["LogitAdjustedLoss", "logit_adjusted_loss"]


def _check_class_priors(class_priors: Any, *, validate_args: bool = True) -> Tensor | None:
    """`None` or a 1-D `[C]` tensor of positive, finite class frequencies (or counts)."""
    if class_priors is None:
        return None
    if not isinstance(class_priors, Tensor):
        try:
            class_priors = torch.as_tensor(class_priors, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"class_priors must be a [C] tensor or a sequence of numbers, got {class_priors!r}"
            ) from err
    check_tensor("class_priors", class_priors)
    if class_priors.is_complex() or class_priors.dtype == torch.bool:
        raise TypeError(f"class_priors must hold real numbers, got dtype {class_priors.dtype}")
    if class_priors.ndim != 1 or class_priors.numel() == 0:
        raise ValueError(
            f"class_priors must be a 1-D [C] tensor, got shape {tuple(class_priors.shape)}"
        )
    if not class_priors.is_floating_point():
        class_priors = class_priors.float()  # counts given as ints
    if validate_args and not bool((torch.isfinite(class_priors) & (class_priors > 0)).all()):
        shown = class_priors.tolist() if class_priors.numel() <= 8 else "entries ≤ 0 or non-finite"
        raise ValueError(f"class_priors must be finite and > 0, got {shown}")
    return class_priors


def _check_logit_adjusted_args(
    *,
    class_priors: Any,
    tau: Any,
    weight: Any,
    ignore_index: Any,
    label_smoothing: Any,
    validate_args: bool = True,
) -> dict[str, Any]:
    # The one validator of logit_adjusted_loss's hyperparameters (functional and class).
    return {
        "class_priors": _check_class_priors(class_priors, validate_args=validate_args),
        "tau": check_number("tau", tau, low=0.0),
        **_check_cross_entropy_args(
            weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
        ),
    }


def logit_adjusted_loss(
    input: Tensor,
    target: Tensor,
    class_priors: Tensor | Sequence[float] | None = None,
    *,
    tau: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Logit-adjusted cross-entropy, $\ell = \mathrm{CE}(z + \tau \log \pi,\; y)$.

    Adding the log class prior to the logits during training makes the learned scores
    approximate the balanced (prior-free) posterior, the standard fix for long-tailed labels.
    Predict with the raw logits. `class_priors` may be frequencies or raw counts (a constant
    shift of all logits does not change the loss); `tau=0` or uniform priors give plain CE.
    Class weights, label smoothing and soft targets behave as in
    [cross_entropy][lightning_losses.functional.cross_entropy].

    Paper: *Long-tail learning via logit adjustment*, Menon et al., ICLR 2021
    (arXiv:2007.07314); used inside *Long-Tailed Recognition by Mutual Information Maximization
    between Latent Features and Ground-Truth Labels*, Suh & Seo, ICML 2023 (arXiv:2305.01160).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]` or soft targets `[N, C, *]`.
        class_priors: `[C]` positive class frequencies (or counts); required.
        tau: adjustment strength $\tau \ge 0$ (default 1.0).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        label_smoothing: $\varepsilon \in [0, 1]$.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range and that `class_priors` is finite and positive
            (host syncs).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Raises:
        ValueError: `class_priors` is missing, not `[C]`, or (with `validate_args`) not positive.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import logit_adjusted_loss
        >>> # zero logits, priors (3/4, 1/4): the rare class-1 label costs -log(1/4) = log 4
        >>> logit_adjusted_loss(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([3.0, 1.0]))
        tensor(1.3863)
    """
    check_reduction(reduction)
    hp = _check_logit_adjusted_args(
        class_priors=class_priors,
        tau=tau,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
    )
    priors = hp.pop("class_priors")
    tau = hp.pop("tau")
    if priors is None:
        raise ValueError(
            "class_priors is required: pass class_priors=[C] (class frequencies or counts) "
            "to the constructor or to forward"
        )
    check_tensor("input", input, floating=True)
    if input.ndim < 2:
        raise ValueError(f"input must have shape [N, C, *] (logits), got {tuple(input.shape)}")
    x = upcast(input)
    if priors.shape != (x.shape[1],):
        raise ValueError(
            f"class_priors must have shape [C] = ({x.shape[1]},), got {tuple(priors.shape)}"
        )
    log_prior = priors.to(device=x.device, dtype=x.dtype).log()
    shift = (tau * log_prior).view(1, -1, *([1] * (x.ndim - 2)))
    return cross_entropy(x + shift, target, **hp, reduction=reduction, validate_args=validate_args)


@register_loss("logit_adjusted", aliases=("logit_adjusted_ce", "la_ce"))
class LogitAdjustedLoss(Loss):
    r"""Logit-adjusted cross-entropy $\mathrm{CE}(z + \tau\log\pi, y)$ for long-tailed labels.

    See [logit_adjusted_loss][lightning_losses.functional.logit_adjusted_loss]. The priors are
    given once at construction (stored as a buffer) or per call as
    `forward(input, target, class_priors=...)`, which takes precedence.

    Paper: *Long-tail learning via logit adjustment*, Menon et al., ICLR 2021
    (arXiv:2007.07314).

    Args:
        class_priors: `[C]` positive class frequencies or counts (or `None` and pass them to
            `forward`).
        tau: adjustment strength (default 1.0).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        label_smoothing: $\varepsilon \in [0, 1]$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` indices or `[N, C, *]` soft targets.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LogitAdjustedLoss
        >>> loss = LogitAdjustedLoss(class_priors=torch.tensor([0.5, 0.5]))  # uniform -> CE
        >>> loss(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.6931)
    """

    functional = staticmethod(logit_adjusted_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        class_priors: Tensor | Sequence[float] | None = None,
        tau: float = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_logit_adjusted_args(
                class_priors=class_priors,
                tau=tau,
                weight=weight,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
            ),
        )

    def forward(
        self, input: Tensor, target: Tensor, class_priors: Tensor | Sequence[float] | None = None
    ) -> Tensor:
        """Loss of logits `input [N, C, *]`; `class_priors [C]` overrides the stored priors."""
        return self._call_functional(input, target, class_priors=class_priors)
