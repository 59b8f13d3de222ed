"""Label-noise-robust classification losses: GCE, normalized losses and Active-Passive Losses.

Papers:
    Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels
    (Zhang & Sabuncu, NeurIPS 2018, arXiv:1805.07836)
    Normalized Loss Functions for Deep Learning with Noisy Labels
    (Ma et al., ICML 2020, arXiv:2006.13554) — NCE, NFL, RCE/MAE passive terms, APL.
    Symmetric Cross Entropy for Robust Learning with Noisy Labels
    (Wang et al., ICCV 2019, arXiv:1908.06112) — the reverse cross-entropy term.

Reference code followed where it pins a detail: ``HanxunH/Active-Passive-Losses`` (``loss.py``):
RCE clamps the one-hot target to ``[1e-4, 1]`` (so ``log 0`` becomes ``log 1e-4``) and NFL detaches
its focal weights.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    ClassificationBatch,
    check_choice,
    check_number,
    check_reduction,
    prepare_classification,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import classification_example
from lightning_losses.registry import register_loss

__all__ = [
    "ActivePassiveLoss",
    "GeneralizedCrossEntropy",
    "MeanAbsoluteErrorLoss",
    "NormalizedCrossEntropy",
    "NormalizedFocalLoss",
    "ReverseCrossEntropy",
    "active_passive_loss",
    "generalized_cross_entropy",
    "mean_absolute_error_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "reverse_cross_entropy",
]

_FAMILY = "A · label-noise robust"
DEFAULT_LOG_ZERO = math.log(1e-4)  # official APL/SCE code: one-hot clamped to [1e-4, 1]


# -- row-level cores: ClassificationBatch -> loss per row (before reduction) ---------------------


def _log_probs(batch: ClassificationBatch) -> tuple[Tensor, Tensor]:
    log_p = batch.logits.log_softmax(-1)
    return log_p, log_p.gather(-1, batch.target[:, None]).squeeze(-1)


def _gce_rows(batch: ClassificationBatch, q: float) -> Tensor:
    _, log_p_y = _log_probs(batch)
    return -torch.expm1(q * log_p_y) / q  # (1 - p_y^q) / q without cancellation


def _nce_rows(batch: ClassificationBatch) -> Tensor:
    log_p, log_p_y = _log_probs(batch)
    return log_p_y / log_p.sum(-1)  # (-log p_y) / (-Σ_k log p_k)


def _nfl_rows(batch: ClassificationBatch, gamma: float, detach_focal_weights: bool) -> Tensor:
    log_p, log_p_y = _log_probs(batch)
    weights = (-torch.expm1(log_p)).clamp_min(0).pow(gamma)
    if detach_focal_weights:
        weights = weights.detach()
    w_y = weights.gather(-1, batch.target[:, None]).squeeze(-1)
    return (w_y * log_p_y) / (weights * log_p).sum(-1)


def _mae_rows(batch: ClassificationBatch) -> Tensor:
    _, log_p_y = _log_probs(batch)
    return -torch.expm1(log_p_y)  # 1 - p_y


def _rce_rows(batch: ClassificationBatch, log_zero: float) -> Tensor:
    # -Σ_k p_k log(clamp(onehot_k, e^{log_zero}, 1)) = -log_zero · (1 - p_y)
    return -log_zero * _mae_rows(batch)


def _check_log_zero(log_zero: float) -> float:
    return check_number("log_zero", log_zero, high=0.0, high_inclusive=False)


def _robust(rows_fn, input, target, ignore_index, reduction, scale=1.0) -> Tensor:
    check_reduction(reduction)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    rows = rows_fn(batch)
    if scale != 1.0:
        rows = scale * rows
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


# -- functional API ------------------------------------------------------------------------------


def generalized_cross_entropy(
    input: Tensor, target: Tensor, *, q: float = 0.7, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    r"""Generalized cross-entropy, :math:`\ell = (1 - p_y^q)/q`.

    Interpolates between cross-entropy (:math:`q \to 0`) and MAE :math:`1 - p_y` (:math:`q = 1`);
    bounded by :math:`1/q`, hence robust to label noise.

    Paper: *Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels*,
    Zhang & Sabuncu, NeurIPS 2018 (arXiv:1805.07836).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        q: :math:`q \in (0, 1]` (default 0.7).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import generalized_cross_entropy
        >>> generalized_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), q=1.0)  # 1 - 0.5
        tensor(0.5000)
    """
    q = check_number("q", q, low=0.0, high=1.0, low_inclusive=False)
    return _robust(lambda b: _gce_rows(b, q), input, target, ignore_index, reduction)


def normalized_cross_entropy(
    input: Tensor, target: Tensor, *, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    r"""Normalized cross-entropy, :math:`\ell = \dfrac{-\log p_y}{-\sum_k \log p_k} \in [0, 1]`.

    Symmetric: :math:`\sum_j \ell(z, j) = 1` for every :math:`z`, the condition for robustness to
    symmetric label noise. Paper: *Normalized Loss Functions for Deep Learning with Noisy
    Labels*, Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        scale: multiplier (the ``alpha`` of APL).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_cross_entropy
        >>> normalized_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # uniform -> 1/C
        tensor(0.2500)
    """
    scale = check_number("scale", scale, low=0.0)
    return _robust(_nce_rows, input, target, ignore_index, reduction, scale)


def normalized_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 0.5,
    scale: float = 1.0,
    detach_focal_weights: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Normalized focal loss, :math:`\ell = \dfrac{(1-p_y)^\gamma \log p_y}{\sum_k (1-p_k)^\gamma \log p_k}`.

    ``gamma=0`` is NCE. As in the official code the focal weights :math:`(1-p)^\gamma` are
    detached (``detach_focal_weights=True``); the ``log p`` terms keep their gradients.
    Paper: Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        gamma: focusing parameter ``≥ 0`` (default 0.5).
        scale: multiplier.
        detach_focal_weights: follow the official code (True) or differentiate the weights.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_focal_loss
        >>> normalized_focal_loss(torch.zeros(1, 4), torch.tensor([2]))
        tensor(0.2500)
    """
    gamma = check_number("gamma", gamma, low=0.0)
    scale = check_number("scale", scale, low=0.0)
    return _robust(
        lambda b: _nfl_rows(b, gamma, detach_focal_weights), input, target, ignore_index, reduction, scale
    )


def reverse_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Reverse cross-entropy, :math:`\ell = -\sum_k p_k \log \tilde t_k = -A\,(1 - p_y)`.

    :math:`\tilde t` is the one-hot target clamped to :math:`[e^{A}, 1]` with :math:`A` =
    ``log_zero``. The official SCE/APL code clamps at ``1e-4`` (:math:`A = \ln 10^{-4} \approx
    -9.21`, the default); the SCE paper's text uses :math:`A = -4`. The reference also clamps
    :math:`p_k \ge 10^{-7}`, which changes the value by at most :math:`C \cdot 10^{-7} |A|`; the
    closed form here does not.

    Paper: *Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al.,
    ICCV 2019 (arXiv:1908.06112).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        scale: multiplier (the ``beta`` of APL/SCE).
        log_zero: :math:`A < 0`, the log of the clamped zero entries of the one-hot target.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import reverse_cross_entropy
        >>> reverse_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), log_zero=-4.0)
        tensor(2.)
    """
    scale = check_number("scale", scale, low=0.0)
    log_zero = _check_log_zero(log_zero)
    return _robust(lambda b: _rce_rows(b, log_zero), input, target, ignore_index, reduction, scale)


def mean_absolute_error_loss(
    input: Tensor, target: Tensor, *, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    r"""MAE on probabilities, :math:`\ell = 1 - p_y` (= :math:`\tfrac12\lVert p - e_y \rVert_1`).

    The passive loss of APL as written in the official code (the factor 2 of the L1 norm is
    absorbed in ``scale``). Paper: Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        scale: multiplier.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import mean_absolute_error_loss
        >>> mean_absolute_error_loss(torch.zeros(1, 4), torch.tensor([0]))
        tensor(0.7500)
    """
    scale = check_number("scale", scale, low=0.0)
    return _robust(_mae_rows, input, target, ignore_index, reduction, scale)


ACTIVE_LOSSES = ("nce", "nfl")
PASSIVE_LOSSES = ("rce", "mae")


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
) -> Tensor:
    r"""Active-Passive Loss, :math:`\ell = \alpha\,\ell_{\text{active}} + \beta\,\ell_{\text{passive}}`.

    Active ∈ {``"nce"``, ``"nfl"``} (normalized CE / focal), passive ∈ {``"rce"``, ``"mae"``}.
    Both terms are robust; the active one fits the labelled class, the passive one pushes other
    classes down, fixing the underfitting of a normalized loss alone. Defaults are the paper's
    CIFAR-10 NCE+RCE setting; CIFAR-100 uses ``alpha=10, beta=0.1``.

    Paper: *Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al.,
    ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        active: ``"nce"`` or ``"nfl"``.
        passive: ``"rce"`` or ``"mae"``.
        alpha: weight of the active term.
        beta: weight of the passive term.
        gamma: NFL focusing parameter (only with ``active="nfl"``).
        log_zero: RCE's clamped log-zero (only with ``passive="rce"``).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import active_passive_loss
        >>> active_passive_loss(torch.zeros(1, 4), torch.tensor([0]), log_zero=-4.0)  # 0.25 + 3
        tensor(3.2500)
    """
    check_choice("active", active, ACTIVE_LOSSES)
    check_choice("passive", passive, PASSIVE_LOSSES)
    alpha = check_number("alpha", alpha, low=0.0)
    beta = check_number("beta", beta, low=0.0)
    gamma = check_number("gamma", gamma, low=0.0)
    log_zero = _check_log_zero(log_zero)

    def rows(batch: ClassificationBatch) -> Tensor:
        act = _nce_rows(batch) if active == "nce" else _nfl_rows(batch, gamma, True)
        pas = _rce_rows(batch, log_zero) if passive == "rce" else _mae_rows(batch)
        return alpha * act + beta * pas

    return _robust(rows, input, target, ignore_index, reduction)


# -- modules -------------------------------------------------------------------------------------


@register_loss(
    "gce",
    aliases=("generalized_cross_entropy",),
    functional=generalized_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"q": 0.0}, {"q": 1.5}),
    ignore_index=True,
    family=_FAMILY,
)
class GeneralizedCrossEntropy(Loss):
    r"""Generalized cross-entropy :math:`(1 - p_y^q)/q` (Zhang & Sabuncu 2018, arXiv:1805.07836).

    See :func:`~lightning_losses.functional.generalized_cross_entropy`.

    Args:
        q: :math:`q \in (0, 1]` (default 0.7).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import GeneralizedCrossEntropy
        >>> GeneralizedCrossEntropy(q=0.7)(torch.zeros(2, 2), torch.tensor([0, 1]))
        tensor(0.5492)
    """

    def __init__(self, q: float = 0.7, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.q = check_number("q", q, low=0.0, high=1.0, low_inclusive=False)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return generalized_cross_entropy(
            input, target, q=self.q, ignore_index=self.ignore_index, reduction=self.reduction
        )


@register_loss(
    "nce",
    aliases=("normalized_cross_entropy",),
    functional=normalized_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"scale": -1.0},),
    ignore_index=True,
    family=_FAMILY,
)
class NormalizedCrossEntropy(Loss):
    r"""Normalized cross-entropy (Ma et al. 2020, arXiv:2006.13554); value in ``[0, 1]``.

    Args:
        scale: multiplier (default 1.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedCrossEntropy
        >>> NormalizedCrossEntropy()(torch.zeros(1, 5), torch.tensor([0]))
        tensor(0.2000)
    """

    def __init__(self, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return normalized_cross_entropy(
            input, target, scale=self.scale, ignore_index=self.ignore_index, reduction=self.reduction
        )


@register_loss(
    "nfl",
    aliases=("normalized_focal",),
    functional=normalized_focal_loss,
    example=classification_example,
    invalid_kwargs=({"gamma": -1.0}, {"scale": -1.0}),
    ignore_index=True,
    gradcheck=False,
    family=_FAMILY,
    notes="gradient follows the official code (focal weights detached), so it is not the "
    "derivative of the value; tests gradcheck detach_focal_weights=False instead",
)
class NormalizedFocalLoss(Loss):
    r"""Normalized focal loss (Ma et al. 2020, arXiv:2006.13554); ``gamma=0`` is NCE.

    Args:
        gamma: focusing parameter (default 0.5).
        scale: multiplier (default 1.0).
        detach_focal_weights: detach :math:`(1-p)^\gamma` as the official code does (default True).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedFocalLoss
        >>> NormalizedFocalLoss(gamma=0.5)(torch.zeros(1, 5), torch.tensor([0]))
        tensor(0.2000)
    """

    def __init__(
        self,
        gamma: float = 0.5,
        scale: float = 1.0,
        detach_focal_weights: bool = True,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.scale = check_number("scale", scale, low=0.0)
        self.detach_focal_weights = bool(detach_focal_weights)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return normalized_focal_loss(
            input,
            target,
            gamma=self.gamma,
            scale=self.scale,
            detach_focal_weights=self.detach_focal_weights,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "rce",
    aliases=("reverse_cross_entropy",),
    functional=reverse_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"log_zero": 0.5}, {"scale": -1.0}),
    ignore_index=True,
    family=_FAMILY,
)
class ReverseCrossEntropy(Loss):
    r"""Reverse cross-entropy :math:`-A(1-p_y)` (Wang et al. 2019, arXiv:1908.06112).

    Args:
        scale: multiplier (default 1.0).
        log_zero: :math:`A < 0` (default :math:`\ln 10^{-4}`, the official code's clamp).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ReverseCrossEntropy
        >>> ReverseCrossEntropy(log_zero=-4.0)(torch.zeros(1, 2), torch.tensor([1]))
        tensor(2.)
    """

    def __init__(
        self,
        scale: float = 1.0,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0.0)
        self.log_zero = _check_log_zero(log_zero)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return reverse_cross_entropy(
            input,
            target,
            scale=self.scale,
            log_zero=self.log_zero,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "mae",
    aliases=("mean_absolute_error",),
    functional=mean_absolute_error_loss,
    example=classification_example,
    invalid_kwargs=({"scale": -1.0},),
    ignore_index=True,
    family=_FAMILY,
)
class MeanAbsoluteErrorLoss(Loss):
    r"""MAE on class probabilities, :math:`1 - p_y` (the APL passive term, arXiv:2006.13554).

    Args:
        scale: multiplier (default 1.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MeanAbsoluteErrorLoss
        >>> MeanAbsoluteErrorLoss()(torch.zeros(1, 2), torch.tensor([1]))
        tensor(0.5000)
    """

    def __init__(self, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mean_absolute_error_loss(
            input, target, scale=self.scale, ignore_index=self.ignore_index, reduction=self.reduction
        )


@register_loss(
    "apl",
    aliases=("active_passive", "nce_rce"),
    functional=active_passive_loss,
    example=classification_example,
    invalid_kwargs=({"active": "ce"}, {"passive": "kl"}, {"alpha": -1.0}, {"log_zero": 1.0}),
    ignore_index=True,
    family=_FAMILY,
)
class ActivePassiveLoss(Loss):
    r"""Active-Passive Loss :math:`\alpha\,\ell_{\text{active}} + \beta\,\ell_{\text{passive}}` (arXiv:2006.13554).

    Default NCE+RCE with the paper's CIFAR-10 weights ``alpha=1, beta=1``.
    See :func:`~lightning_losses.functional.active_passive_loss`.

    Args:
        active: ``"nce"`` (default) or ``"nfl"``.
        passive: ``"rce"`` (default) or ``"mae"``.
        alpha: active weight (default 1.0; CIFAR-100: 10.0).
        beta: passive weight (default 1.0; CIFAR-100: 0.1).
        gamma: NFL focusing parameter (default 0.5).
        log_zero: RCE's clamped log-zero (default :math:`\ln 10^{-4}`).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ActivePassiveLoss
        >>> ActivePassiveLoss(active="nce", passive="mae")(torch.zeros(1, 4), torch.tensor([0]))
        tensor(1.)
    """

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
    ) -> None:
        super().__init__(reduction)
        self.active = check_choice("active", active, ACTIVE_LOSSES)
        self.passive = check_choice("passive", passive, PASSIVE_LOSSES)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.beta = check_number("beta", beta, low=0.0)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.log_zero = _check_log_zero(log_zero)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return active_passive_loss(
            input,
            target,
            active=self.active,
            passive=self.passive,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            log_zero=self.log_zero,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
