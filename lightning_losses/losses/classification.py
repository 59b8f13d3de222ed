"""Classification losses: CE (label smoothing), Poly-1/Poly-N, focal (softmax, sigmoid, Poly-1
focal), squentropy, StableMax CE, logit-adjusted CE, one-vs-rest and the spherical Z-loss.

Papers:
    PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions
    (Leng et al., ICLR 2022, arXiv:2204.12511)
    Focal Loss for Dense Object Detection (Lin et al., ICCV 2017, arXiv:1708.02002)
    Rethinking the Inception Architecture for Computer Vision — label smoothing
    (Szegedy et al., CVPR 2016, arXiv:1512.00567)
    Cut your Losses with Squentropy (Hui, Belkin & Wright, ICML 2023, arXiv:2302.03952)
    Grokking at the Edge of Numerical Stability — StableMax (Prieto et al., ICLR 2025,
    arXiv:2501.04697)
    Long-tail learning via logit adjustment (Menon et al., ICLR 2021, arXiv:2007.07314)
    One-vs-the-Rest Loss to Focus on Important Samples in Adversarial Training
    (Kanai et al., ICML 2023, arXiv:2207.10283)
    The Z-loss: a shift and scale invariant classification loss belonging to the Spherical
    Family (de Brébisson & Vincent, 2016, arXiv:1604.08859)

Every function takes raw logits ``[N, C, *]`` (class dimension 1, as ``torch.nn.functional``)
and class indices ``[N, *]`` (or soft targets shaped like the logits where stated).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    ClassificationBatch,
    check_class_weight,
    check_number,
    check_reduction,
    check_same_shape,
    check_tensor,
    prepare_classification,
    upcast,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import (
    class_prior_example,
    classification_example,
    multilabel_example,
)
from lightning_losses.registry import register_loss

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "LabelSmoothingCrossEntropy",
    "LogitAdjustedLoss",
    "OneVsRestLoss",
    "PolyFocalLoss",
    "PolyLoss",
    "SigmoidFocalLoss",
    "SphericalZLoss",
    "SquentropyLoss",
    "StableMaxCrossEntropy",
    "cross_entropy",
    "focal_loss",
    "log_stablemax",
    "logit_adjusted_loss",
    "one_vs_rest_loss",
    "poly_focal_loss",
    "poly_loss",
    "sigmoid_focal_loss",
    "spherical_z_loss",
    "squentropy_loss",
    "stablemax_cross_entropy",
]

_FAMILY = "A · classification"


def _one_minus_exp(log_p: Tensor) -> Tensor:
    # 1 - p computed from log p without cancellation when p -> 1.
    return -torch.expm1(log_p)


def _cross_entropy_rows(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None,
    ignore_index: int,
    label_smoothing: float,
):
    """Shared core: validated batch, weighted CE rows, per-row mean-denominator weights."""
    check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)
    batch = prepare_classification(input, target, ignore_index=ignore_index)
    w = check_class_weight(weight, batch.num_classes, batch.logits)
    tgt = batch.soft if batch.soft is not None else batch.target
    rows = F.cross_entropy(
        batch.logits, tgt, weight=w, reduction="none", label_smoothing=label_smoothing
    )
    # torch's convention: hard targets average by the summed class weight, soft targets by N.
    den = w[batch.target] if (w is not None and batch.soft is None) else None
    return batch, w, rows, den


def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Cross-entropy with optional label smoothing, class weights and soft targets.

    .. math:: \ell = -(1-\varepsilon)\log p_y - \frac{\varepsilon}{C}\sum_k \log p_k

    Same value and gradient as :func:`torch.nn.functional.cross_entropy` (which does the
    math), behind this library's argument checks, float32 upcast and the rule that a mean over
    zero valid targets is 0 instead of NaN.

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]`` or soft targets ``[N, C, *]``.
        weight: per-class weight ``[C]``.
        ignore_index: target value that contributes neither to the loss nor to the mean.
        label_smoothing: :math:`\varepsilon \in [0, 1]`.
        reduction: ``"mean" | "sum" | "none"`` (``none`` returns ``[N, *]``).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import cross_entropy
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> cross_entropy(logits, torch.tensor([0, 1]), label_smoothing=0.1)
        tensor(0.4773)
    """
    check_reduction(reduction)
    return _cross_entropy_reduced(
        input,
        target,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


def _cross_entropy_reduced(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
) -> Tensor:
    if reduction == "none":
        batch, _, rows, _ = _cross_entropy_rows(
            input, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
        )
        return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)
    check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)
    batch = prepare_classification(input, target, ignore_index=ignore_index)
    w = check_class_weight(weight, batch.num_classes, batch.logits)
    torch_ignore = -100 if ignore_index is None else ignore_index
    if batch.soft is not None:
        tgt = batch.soft
    elif not bool(batch.valid.any()):
        # torch would return NaN for a mean over nothing; the contract says 0 (gradient 0).
        return torch.where(batch.valid[:, None], batch.logits, 0.0).sum() * 0.0
    else:
        tgt = batch.target.masked_fill(~batch.valid, torch_ignore)
    # torch's fused reduction has the same semantics as reduce_loss(rows, weight=w_y) — weighted
    # mean over valid rows, soft targets averaged over N — and skips a [M] round trip (faster).
    return F.cross_entropy(
        batch.logits,
        tgt,
        weight=w,
        ignore_index=torch_ignore,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


@register_loss(
    "cross_entropy",
    aliases=("ce",),
    functional=cross_entropy,
    example=classification_example,
    invalid_kwargs=({"label_smoothing": 1.5}, {"label_smoothing": -0.1}, {"reduction": "avg"}),
    ignore_index=True,
    family=_FAMILY,
)
class CrossEntropyLoss(Loss):
    r"""Cross-entropy with label smoothing, class weights and soft targets.

    See :func:`~lightning_losses.functional.cross_entropy` for the formula.

    Args:
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        label_smoothing: smoothing :math:`\varepsilon \in [0, 1]`.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input: ``[N, C, *]`` logits; target: ``[N, *]`` indices or ``[N, C, *]`` soft targets.
        - output: scalar, or ``[N, *]`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CrossEntropyLoss
        >>> CrossEntropyLoss()(torch.zeros(4, 10), torch.tensor([0, 1, 2, 3]))
        tensor(2.3026)
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)
        self.ignore_index = ignore_index
        self._register_optional_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


@register_loss(
    "label_smoothing_ce",
    aliases=("label_smoothing_cross_entropy",),
    functional=cross_entropy,
    example=classification_example,
    invalid_kwargs=({"smoothing": 2.0},),
    ignore_index=True,
    family=_FAMILY,
)
class LabelSmoothingCrossEntropy(CrossEntropyLoss):
    r"""Label-smoothed cross-entropy, :math:`(1-\varepsilon)(-\log p_y) + \varepsilon\,\mathrm{mean}_k(-\log p_k)`.

    The CATALOG A05 baseline (same default and value as ``timm.loss.LabelSmoothingCrossEntropy``),
    with ``ignore_index``, class weights and ``reduction`` added.

    Args:
        smoothing: :math:`\varepsilon \in [0, 1]` (default 0.1).
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LabelSmoothingCrossEntropy
        >>> LabelSmoothingCrossEntropy(smoothing=0.1)(torch.tensor([[3.0, 0.0]]), torch.tensor([0]))
        tensor(0.1986)
    """

    def __init__(
        self,
        smoothing: float = 0.1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            weight=weight, ignore_index=ignore_index, label_smoothing=smoothing, reduction=reduction
        )


def _check_epsilon(epsilon: float | Sequence[float]) -> tuple[float, ...]:
    """Poly-1 ``epsilon`` (a float) or Poly-N coefficients ``(ε_1, …, ε_N)``; ε_1 ≥ -1."""
    if isinstance(epsilon, (list, tuple)):
        if not epsilon:
            raise ValueError("epsilon must be a float or a non-empty sequence of floats, got []")
        coeffs = tuple(check_number(f"epsilon[{j}]", e) for j, e in enumerate(epsilon))
        check_number("epsilon[0]", coeffs[0], low=-1.0)
        return coeffs
    return (check_number("epsilon", epsilon, low=-1.0),)


def _poly_series(one_minus_p: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    # Σ_j ε_j (1 - p_t)^j, Horner form: x (ε_1 + x (ε_2 + ...)).
    acc = torch.zeros_like(one_minus_p)
    for eps in reversed(coeffs):
        acc = (acc + eps) * one_minus_p
    return acc


def poly_loss(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float | Sequence[float] = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Poly-1 loss: cross-entropy plus a first-order polynomial term (Poly-N with a sequence).

    .. math:: \ell = \mathrm{CE}(z, t) + \epsilon\,(1 - p_t), \qquad p_t = \sum_k t_k p_k

    General Poly-N (``epsilon=(ε_1, …, ε_N)``):
    :math:`\ell = \mathrm{CE} + \sum_{j=1}^{N} \epsilon_j (1 - p_t)^j`.

    With class indices :math:`p_t = p_y`; with label smoothing or soft targets :math:`t` is the
    (smoothed) target distribution, as in the paper's reference code. With class ``weight`` the
    polynomial term is weighted like the CE term (:math:`\sum_k w_k t_k`), so ``epsilon=0``
    equals :func:`cross_entropy` exactly, weights and smoothing included.

    Paper: *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*,
    Leng et al., ICLR 2022 (arXiv:2204.12511).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]`` or soft targets ``[N, C, *]``.
        epsilon: coefficient of :math:`(1 - p_t)`; may be negative but must be ≥ -1 so that the
            loss stays a decreasing function of :math:`p_t` (the paper's constraint). A sequence
            ``(ε_1, …, ε_N)`` gives Poly-N (only ``ε_1 ≥ -1`` is checked).
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        label_smoothing: :math:`\in [0, 1]`.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import poly_loss
        >>> poly_loss(torch.zeros(2, 4), torch.tensor([1, 3]), epsilon=1.0)
        tensor(2.1363)
    """
    check_reduction(reduction)
    coeffs = _check_epsilon(epsilon)
    batch, w, rows, den = _cross_entropy_rows(
        input, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    if batch.soft is None and w is None and label_smoothing == 0.0:
        # Plain hard-label CE row = -log p_y: reuse it instead of a second [M, C] softmax.
        rows = rows + _poly_series(-torch.expm1(-rows), coeffs)
        return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)
    probs = batch.logits.softmax(dim=-1)
    if batch.soft is not None:
        t = batch.soft * (1.0 - label_smoothing) + label_smoothing / batch.num_classes
        p_t = (t * probs).sum(-1)
        row_w = (t * w).sum(-1) if w is not None else None
    else:
        p_y = batch.at_target(probs)
        p_t = (1.0 - label_smoothing) * p_y + label_smoothing / batch.num_classes
        # Σ_k w_k t_k for the smoothed one-hot t, as for soft targets.
        row_w = (
            (1.0 - label_smoothing) * w[batch.target] + label_smoothing * w.mean()
            if w is not None
            else None
        )
    poly = _poly_series(1.0 - p_t, coeffs)
    rows = rows + (poly * row_w if row_w is not None else poly)
    return reduce_loss(rows, reduction, valid=batch.valid, weight=den, out_shape=batch.out_shape)


@register_loss(
    "poly",
    aliases=("poly1", "poly_loss"),
    functional=poly_loss,
    example=classification_example,
    invalid_kwargs=(
        {"epsilon": -2.0},
        {"label_smoothing": 1.5},
        {"epsilon": "one"},
        {"epsilon": (-1.5, 0.5)},
        {"epsilon": ()},
    ),
    ignore_index=True,
    family=_FAMILY,
)
class PolyLoss(Loss):
    r"""Poly-1 loss, :math:`\mathrm{CE} + \epsilon(1 - p_t)` (Leng et al., ICLR 2022, arXiv:2204.12511).

    See :func:`~lightning_losses.functional.poly_loss`.

    Args:
        epsilon: polynomial coefficient (default 1.0; the paper's best ImageNet value was 2.0),
            or a sequence ``(ε_1, …, ε_N)`` for Poly-N.
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        label_smoothing: :math:`\in [0, 1]`.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input ``[N, C, *]``; target ``[N, *]`` or ``[N, C, *]``; output scalar or ``[N, *]``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PolyLoss
        >>> PolyLoss(epsilon=2.0)(torch.zeros(2, 4), torch.tensor([1, 3]))
        tensor(2.8863)
    """

    def __init__(
        self,
        epsilon: float | Sequence[float] = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        coeffs = _check_epsilon(epsilon)
        self.epsilon = coeffs[0] if not isinstance(epsilon, (list, tuple)) else coeffs
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)
        self.ignore_index = ignore_index
        self._register_optional_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return poly_loss(
            input,
            target,
            epsilon=self.epsilon,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


def _check_alpha(alpha: float | Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    if alpha is None:
        return None
    if isinstance(alpha, Tensor):
        if alpha.shape != (num_classes,):
            raise ValueError(
                f"alpha must be a float or a [C] = ({num_classes},) tensor, got {tuple(alpha.shape)}"
            )
        return alpha.to(device=like.device, dtype=like.dtype)
    value = check_number("alpha", alpha, low=0.0)
    return torch.full((num_classes,), value, device=like.device, dtype=like.dtype)


def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Multi-class (softmax) focal loss.

    .. math:: \ell = -\alpha_y\,(1 - p_y)^{\gamma}\,\log p_y

    ``gamma=0`` and ``alpha=None`` is cross-entropy. ``mean`` averages over the non-ignored
    targets (``alpha`` rescales samples, it is not a normaliser).

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        gamma: focusing parameter :math:`\gamma \ge 0`.
        alpha: per-class balance ``[C]`` or one float for every class; ``None`` = 1.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import focal_loss
        >>> focal_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), gamma=2.0)
        tensor(0.0018)
    """
    check_reduction(reduction)
    check_number("gamma", gamma, low=0.0)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    a = _check_alpha(alpha, batch.num_classes, batch.logits)
    log_p_y = batch.at_target(batch.logits.log_softmax(-1))
    rows = -_one_minus_exp(log_p_y).clamp_min(0).pow(gamma) * log_p_y
    if a is not None:
        rows = rows * a[batch.target]
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss(
    "focal",
    aliases=("focal_loss",),
    functional=focal_loss,
    example=classification_example,
    invalid_kwargs=({"gamma": -1.0}, {"alpha": -0.5}),
    ignore_index=True,
    family=_FAMILY,
)
class FocalLoss(Loss):
    r"""Multi-class softmax focal loss, :math:`-\alpha_y (1-p_y)^\gamma \log p_y` (arXiv:1708.02002).

    See :func:`~lightning_losses.functional.focal_loss`. For binary / multi-label targets use
    :class:`SigmoidFocalLoss`.

    Args:
        gamma: focusing parameter (default 2.0).
        alpha: per-class weights ``[C]`` or a float; ``None`` disables.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import FocalLoss
        >>> FocalLoss(gamma=0.0)(torch.zeros(2, 4), torch.tensor([1, 3]))  # = CE = log 4
        tensor(1.3863)
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.gamma = check_number("gamma", gamma, low=0.0)
        if isinstance(alpha, Tensor):
            self._register_optional_buffer("alpha", alpha)
        else:
            self.alpha = None if alpha is None else check_number("alpha", alpha, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return focal_loss(
            input,
            target,
            gamma=self.gamma,
            alpha=self.alpha,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


def sigmoid_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    r"""Sigmoid (binary / multi-label) focal loss — a drop-in for ``torchvision.ops.sigmoid_focal_loss``.

    .. math::
        p_t = t\,\sigma(x) + (1-t)(1-\sigma(x)),\quad
        \ell = \alpha_t\,(1-p_t)^{\gamma}\,\mathrm{BCE}(x, t),\quad
        \alpha_t = \alpha t + (1-\alpha)(1-t)

    Same signature, argument names and default ``reduction="none"`` as torchvision's function
    (so existing calls keep their meaning); ``alpha < 0`` disables the balance term.
    ``mean`` averages over all elements. Half/bf16 inputs are computed in float32.

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        inputs: logits of any shape.
        targets: float targets in ``[0, 1]`` with the same shape.
        alpha: positive-class balance in ``[0, 1]``, or ``< 0`` to disable.
        gamma: focusing parameter ``≥ 0``.
        reduction: ``"none" | "mean" | "sum"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sigmoid_focal_loss
        >>> sigmoid_focal_loss(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]))
        tensor([4.3322e-02, 2.7321e-05])
    """
    check_reduction(reduction)
    loss, _ = _sigmoid_focal_elements(inputs, targets, alpha, gamma)
    return reduce_loss(loss, reduction)


def _sigmoid_focal_elements(
    inputs: Tensor, targets: Tensor, alpha: float, gamma: float
) -> tuple[Tensor, Tensor]:
    """Validated element-wise sigmoid focal loss and ``1 - p_t`` (torchvision's arithmetic)."""
    check_tensor("inputs", inputs, floating=True)
    check_tensor("targets", targets)
    check_same_shape("inputs", inputs, "targets", targets)
    check_number("gamma", gamma, low=0.0)
    alpha = check_number("alpha", alpha, high=1.0)
    x = upcast(inputs)
    t = targets.to(x.dtype)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    one_minus_p_t = 1 - (p * t + (1 - p) * (1 - t))
    loss = ce * one_minus_p_t.pow(gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss, one_minus_p_t


@register_loss(
    "sigmoid_focal",
    aliases=("binary_focal",),
    functional=sigmoid_focal_loss,
    example=multilabel_example,
    invalid_kwargs=({"gamma": -1.0}, {"alpha": 1.5}),
    per_element=True,
    family=_FAMILY,
)
class SigmoidFocalLoss(Loss):
    r"""Sigmoid focal loss for binary / multi-label / dense targets (arXiv:1708.02002).

    See :func:`~lightning_losses.functional.sigmoid_focal_loss`. Unlike the functional
    (torchvision-compatible, ``reduction="none"``), the module defaults to ``"mean"``.
    ``reduction="none"`` returns one loss per element.

    Args:
        alpha: positive-class balance in ``[0, 1]``, ``< 0`` disables (default 0.25).
        gamma: focusing parameter (default 2.0).
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SigmoidFocalLoss
        >>> SigmoidFocalLoss()(torch.zeros(2, 3), torch.ones(2, 3))
        tensor(0.0433)
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.alpha = check_number("alpha", alpha, high=1.0)
        self.gamma = check_number("gamma", gamma, low=0.0)

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(inputs, targets, self.alpha, self.gamma, self.reduction)


# -- PolyLoss for sigmoid focal (A02) --------------------------------------------------------------


def poly_focal_loss(
    inputs: Tensor,
    targets: Tensor,
    *,
    epsilon: float = 1.0,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Poly-1 focal loss: sigmoid focal loss plus :math:`\epsilon (1-p_t)^{\gamma+1}`.

    .. math::
        \ell = \alpha_t (1-p_t)^{\gamma}\,\mathrm{BCE}(x, t) + \epsilon\,(1-p_t)^{\gamma+1},
        \qquad p_t = t\,\sigma(x) + (1-t)(1-\sigma(x))

    As in the paper's reference code the balance :math:`\alpha_t` multiplies only the focal
    term; ``alpha < 0`` disables it. ``epsilon=0`` is :func:`sigmoid_focal_loss` exactly. The
    paper found :math:`\epsilon = -1` best for RetinaNet detection; tune it per task.

    Paper: *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*,
    Leng et al., ICLR 2022 (arXiv:2204.12511).

    Args:
        inputs: logits of any shape (multi-label / dense binary).
        targets: float targets in ``[0, 1]`` with the same shape.
        epsilon: polynomial coefficient (default 1.0), ≥ -1.
        alpha: positive-class balance in ``[0, 1]``, or ``< 0`` to disable (default 0.25).
        gamma: focusing parameter ``≥ 0`` (default 2.0).
        reduction: ``"mean" | "sum" | "none"`` (``none``: one value per element).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import poly_focal_loss
        >>> # x=0, t=1: p_t=1/2, focal = 0.25 * 0.25 * log 2, poly = 1 * 0.5**3
        >>> poly_focal_loss(torch.zeros(1), torch.ones(1))
        tensor(0.1683)
    """
    check_reduction(reduction)
    epsilon = check_number("epsilon", epsilon, low=-1.0)
    focal, one_minus_p_t = _sigmoid_focal_elements(inputs, targets, alpha, gamma)
    return reduce_loss(focal + epsilon * one_minus_p_t.pow(gamma + 1.0), reduction)


@register_loss(
    "poly_focal",
    aliases=("poly1_focal",),
    functional=poly_focal_loss,
    example=multilabel_example,
    invalid_kwargs=({"epsilon": -1.5}, {"gamma": -1.0}, {"alpha": 1.5}),
    per_element=True,
    family=_FAMILY,
)
class PolyFocalLoss(Loss):
    r"""Poly-1 sigmoid focal loss, :math:`\mathrm{FL} + \epsilon (1-p_t)^{\gamma+1}` (arXiv:2204.12511).

    See :func:`~lightning_losses.functional.poly_focal_loss`. ``reduction="none"`` returns one
    loss per element.

    Args:
        epsilon: polynomial coefficient (default 1.0), ≥ -1.
        alpha: positive-class balance in ``[0, 1]``, ``< 0`` disables (default 0.25).
        gamma: focusing parameter (default 2.0).
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - inputs: any shape; targets: same shape; output: scalar or same shape.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PolyFocalLoss
        >>> PolyFocalLoss(epsilon=0.0)(torch.zeros(2, 3), torch.ones(2, 3))  # = sigmoid focal
        tensor(0.0433)
    """

    def __init__(
        self, epsilon: float = 1.0, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.epsilon = check_number("epsilon", epsilon, low=-1.0)
        self.alpha = check_number("alpha", alpha, high=1.0)
        self.gamma = check_number("gamma", gamma, low=0.0)

    def forward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        return poly_focal_loss(
            inputs,
            targets,
            epsilon=self.epsilon,
            alpha=self.alpha,
            gamma=self.gamma,
            reduction=self.reduction,
        )


# -- Squentropy (A13) ------------------------------------------------------------------------------


def squentropy_loss(
    input: Tensor, target: Tensor, *, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    r"""Squentropy: cross-entropy plus the mean square of the incorrect-class logits.

    .. math:: \ell = -\log p_y + \frac{1}{C-1} \sum_{k \ne y} z_k^2

    The square term acts on the **raw logits** (target 0), not on probabilities; it keeps the
    logits bounded, which the paper links to better calibration. Parameter-free.

    Paper: *Cut your Losses with Squentropy*, Hui, Belkin & Wright, ICML 2023
    (arXiv:2302.03952).

    Args:
        input: logits ``[N, C, *]`` with ``C ≥ 2``.
        target: class indices ``[N, *]``.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import squentropy_loss
        >>> # wrong-class logits (1, -1): CE = log(1 + e^{-1} + e^{-3}) ≈ 0.3490, square = 1
        >>> squentropy_loss(torch.tensor([[2.0, 1.0, -1.0]]), torch.tensor([0]))
        tensor(1.3490)
    """
    check_reduction(reduction)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    rows = _squentropy_rows(batch)
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


def _squentropy_rows(batch: ClassificationBatch) -> Tensor:
    c = batch.num_classes
    if c < 2:
        raise ValueError(f"input must have at least 2 classes for squentropy, got C={c}")
    z = batch.logits
    ce = -batch.at_target(z.log_softmax(-1))
    # Zero the target entry instead of subtracting z_y² (no cancellation at large logits).
    square = z.square().scatter(-1, batch.target[:, None], 0.0).sum(-1) / (c - 1)
    return ce + square


@register_loss(
    "squentropy",
    functional=squentropy_loss,
    example=classification_example,
    invalid_kwargs=({"reduction": "avg"},),
    ignore_index=True,
    family=_FAMILY,
)
class SquentropyLoss(Loss):
    r"""Squentropy, :math:`-\log p_y + \frac{1}{C-1}\sum_{k\ne y} z_k^2` (arXiv:2302.03952).

    See :func:`~lightning_losses.functional.squentropy_loss`.

    Args:
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input ``[N, C, *]``; target ``[N, *]``; output scalar or ``[N, *]``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SquentropyLoss
        >>> # CE = log 2 ≈ 0.6931, plus the square of the wrong-class logit 1.0
        >>> SquentropyLoss()(torch.tensor([[1.0, 1.0]]), torch.tensor([0]))
        tensor(1.6931)
    """

    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return squentropy_loss(
            input, target, ignore_index=self.ignore_index, reduction=self.reduction
        )


# -- StableMax cross-entropy (A19) -----------------------------------------------------------------


def log_stablemax(input: Tensor, dim: int = -1) -> Tensor:
    r"""Log of StableMax, :math:`\log s(z_i) - \log\sum_j s(z_j)`.

    :math:`s(x) = x + 1` for :math:`x \ge 0` and :math:`1/(1-x)` for :math:`x < 0` (continuous,
    :math:`s(0)=1`, :math:`s'(0)=1`). Computed in log space as ``log1p`` of each branch.

    Example:
        >>> import torch
        >>> log_stablemax(torch.tensor([0.0, 1.0])).exp()  # s = (1, 2)
        tensor([0.3333, 0.6667])
    """
    log_s = _LogStableS.apply(upcast(input))
    return log_s - torch.logsumexp(log_s, dim=dim, keepdim=True)


class _LogStableS(torch.autograd.Function):
    r""":math:`\log s(x)` = ``log1p(x)`` (x ≥ 0) or ``-log1p(-x)`` (x < 0); d/dx = 1 / (1 + |x|).

    A custom backward saves only ``x`` (the composed ``where``/``clamp``/``log1p`` graph would
    keep three ``[M, C]`` tensors alive until backward).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.log1p(x.clamp_min(0)), -torch.log1p((-x).clamp_min(0)))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (1 + x.abs())


def stablemax_cross_entropy(
    input: Tensor, target: Tensor, *, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    r"""Cross-entropy on StableMax probabilities instead of softmax.

    .. math::
        s(x) = \begin{cases} x + 1 & x \ge 0 \\ \frac{1}{1 - x} & x < 0 \end{cases},\quad
        p_i = \frac{s(z_i)}{\sum_j s(z_j)},\quad \ell = -\log p_y

    :math:`s` grows linearly instead of exponentially, so probabilities do not round to exactly
    0/1 at large logits ("softmax collapse"): at logits of :math:`\pm 10^4` the loss and its
    gradient stay non-zero where softmax cross-entropy in float32 gives exactly 0.

    Paper: *Grokking at the Edge of Numerical Stability*, Prieto et al., ICLR 2025
    (arXiv:2501.04697).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import stablemax_cross_entropy
        >>> # s = (2, 1, 1/2): p_0 = 2 / 3.5, loss = log(1.75)
        >>> stablemax_cross_entropy(torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([0]))
        tensor(0.5596)
    """
    check_reduction(reduction)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    rows = -batch.at_target(log_stablemax(batch.logits))
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss(
    "stablemax_ce",
    aliases=("stablemax_cross_entropy", "stablemax"),
    functional=stablemax_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"reduction": "avg"},),
    ignore_index=True,
    family=_FAMILY,
)
class StableMaxCrossEntropy(Loss):
    r"""Cross-entropy on StableMax probabilities (Prieto et al. 2025, arXiv:2501.04697).

    See :func:`~lightning_losses.functional.stablemax_cross_entropy`.

    Args:
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input ``[N, C, *]``; target ``[N, *]``; output scalar or ``[N, *]``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import StableMaxCrossEntropy
        >>> StableMaxCrossEntropy()(torch.zeros(2, 4), torch.tensor([0, 3]))  # log 4
        tensor(1.3863)
    """

    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return stablemax_cross_entropy(
            input, target, ignore_index=self.ignore_index, reduction=self.reduction
        )


# -- Logit-adjusted cross-entropy (A20) ------------------------------------------------------------


def _check_priors(class_priors: Any, num_classes: int, like: Tensor) -> Tensor:
    if class_priors is None:
        raise ValueError(
            "class_priors is required: pass class_priors=[C] (class frequencies or counts) "
            "to the constructor or to forward"
        )
    if not isinstance(class_priors, Tensor):
        class_priors = torch.as_tensor(class_priors, dtype=torch.float64)
    check_tensor("class_priors", class_priors)
    if class_priors.shape != (num_classes,):
        raise ValueError(
            f"class_priors must have shape [C] = ({num_classes},), got {tuple(class_priors.shape)}"
        )
    priors = class_priors.to(device=like.device, dtype=like.dtype)
    if not bool((priors > 0).all()) or not bool(torch.isfinite(priors).all()):
        raise ValueError(f"class_priors must be finite and > 0, got {class_priors.tolist()}")
    return priors


def logit_adjusted_loss(
    input: Tensor,
    target: Tensor,
    class_priors: Tensor | Sequence[float],
    *,
    tau: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Logit-adjusted cross-entropy, :math:`\ell = \mathrm{CE}(z + \tau \log \pi,\; y)`.

    Adding the log class prior to the logits during training makes the learned scores
    approximate the balanced (prior-free) posterior, the standard fix for long-tailed labels.
    Predict with the raw logits. ``class_priors`` may be frequencies or raw counts (a constant
    shift of all logits does not change the loss); ``tau=0`` or uniform priors give plain CE.
    Class weights, label smoothing and soft targets behave as in :func:`cross_entropy`.

    Papers: *Long-tail learning via logit adjustment*, Menon et al., ICLR 2021
    (arXiv:2007.07314); used inside *Long-Tailed Recognition by Mutual Information Maximization
    between Latent Features and Ground-Truth Labels*, Suh & Seo, ICML 2023 (arXiv:2305.01160).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]`` or soft targets ``[N, C, *]``.
        class_priors: ``[C]`` positive class frequencies (or counts).
        tau: adjustment strength :math:`\tau \ge 0` (default 1.0).
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        label_smoothing: :math:`\in [0, 1]`.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import logit_adjusted_loss
        >>> # zero logits, priors (3/4, 1/4): the rare class-1 label costs -log(1/4) = log 4
        >>> logit_adjusted_loss(torch.zeros(1, 2), torch.tensor([1]), torch.tensor([3.0, 1.0]))
        tensor(1.3863)
    """
    check_reduction(reduction)
    tau = check_number("tau", tau, low=0.0)
    check_tensor("input", input, floating=True)
    if input.ndim < 2:
        raise ValueError(f"input must have shape [N, C, *] (logits), got {tuple(input.shape)}")
    x = upcast(input)
    priors = _check_priors(class_priors, x.shape[1], x)
    shift = (tau * priors.log()).view(1, -1, *([1] * (x.ndim - 2)))
    return _cross_entropy_reduced(
        x + shift,
        target,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )


@register_loss(
    "logit_adjusted",
    aliases=("logit_adjusted_ce", "la_ce"),
    functional=logit_adjusted_loss,
    example=class_prior_example,
    invalid_kwargs=({"tau": -1.0}, {"class_priors": [0.5, 0.0]}, {"label_smoothing": 2.0}),
    ignore_index=True,
    family=_FAMILY,
)
class LogitAdjustedLoss(Loss):
    r"""Logit-adjusted cross-entropy :math:`\mathrm{CE}(z + \tau\log\pi, y)` (arXiv:2007.07314).

    See :func:`~lightning_losses.functional.logit_adjusted_loss`. The priors are given once at
    construction (stored as a buffer) or per call as ``forward(..., class_priors=...)``.

    Args:
        class_priors: ``[C]`` positive class frequencies or counts (or ``None`` and pass them
            to ``forward``).
        tau: adjustment strength (default 1.0).
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        label_smoothing: :math:`\in [0, 1]`.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input ``[N, C, *]``; target ``[N, *]`` or ``[N, C, *]``; output scalar or ``[N, *]``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LogitAdjustedLoss
        >>> loss = LogitAdjustedLoss(class_priors=torch.tensor([0.5, 0.5]))  # uniform -> CE
        >>> loss(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.6931)
    """

    def __init__(
        self,
        class_priors: Tensor | Sequence[float] | None = None,
        tau: float = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.tau = check_number("tau", tau, low=0.0)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)
        self.ignore_index = ignore_index
        if class_priors is not None:
            priors = torch.as_tensor(class_priors, dtype=torch.float32)
            class_priors = _check_priors(priors, priors.numel(), priors)
        self._register_optional_buffer("class_priors", class_priors)
        self._register_optional_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor, class_priors: Tensor | None = None) -> Tensor:
        return logit_adjusted_loss(
            input,
            target,
            class_priors if class_priors is not None else self.class_priors,
            tau=self.tau,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


# -- One-vs-rest (A17) -----------------------------------------------------------------------------


def one_vs_rest_loss(
    input: Tensor, target: Tensor, *, ignore_index: int = -100, reduction: str = "mean"
) -> Tensor:
    r"""One-vs-the-rest loss: a binary logistic loss per class, summed over classes.

    .. math:: \ell = \operatorname{softplus}(-z_y) + \sum_{k \ne y} \operatorname{softplus}(z_k)

    (= ``binary_cross_entropy_with_logits(z, one_hot(y)).sum(1)``). The paper's switching
    variant (SOVR: OVR only on the samples with the smallest logit margin, CE on the rest) is
    not provided: its selection rule and ratio could not be pinned down from a public reference.

    Paper: *One-vs-the-Rest Loss to Focus on Important Samples in Adversarial Training*,
    Kanai et al., ICML 2023 (arXiv:2207.10283).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import one_vs_rest_loss
        >>> one_vs_rest_loss(torch.zeros(1, 3), torch.tensor([0]))  # 3 log 2
        tensor(2.0794)
    """
    check_reduction(reduction)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    onehot = F.one_hot(batch.target, batch.num_classes).to(batch.logits.dtype)
    rows = F.binary_cross_entropy_with_logits(batch.logits, onehot, reduction="none").sum(-1)
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss(
    "one_vs_rest",
    aliases=("ovr",),
    functional=one_vs_rest_loss,
    example=classification_example,
    invalid_kwargs=({"reduction": "avg"},),
    ignore_index=True,
    family=_FAMILY,
)
class OneVsRestLoss(Loss):
    r"""One-vs-the-rest logistic loss summed over classes (Kanai et al. 2023, arXiv:2207.10283).

    See :func:`~lightning_losses.functional.one_vs_rest_loss`.

    Args:
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import OneVsRestLoss
        >>> OneVsRestLoss()(torch.zeros(2, 2), torch.tensor([0, 1]))  # 2 log 2
        tensor(1.3863)
    """

    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return one_vs_rest_loss(
            input, target, ignore_index=self.ignore_index, reduction=self.reduction
        )


# -- Spherical Z-loss (A16) ------------------------------------------------------------------------

SPHERICAL_Z_EPS = 1e-12  # added to the variance: all-equal logits give z = 0, not NaN


def spherical_z_loss(
    input: Tensor,
    target: Tensor,
    *,
    a: float = 0.1,
    b: float = 10.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Z-loss of the spherical family: a softplus of the standardised target logit.

    .. math::
        \mu = \tfrac1C\sum_k o_k,\quad \sigma^2 = \tfrac1C\sum_k (o_k-\mu)^2,\quad
        z_y = \frac{o_y - \mu}{\sigma},\quad
        \ell = \frac1a \log\bigl(1 + e^{a (b - z_y)}\bigr)

    Invariant to shifting and (positively) scaling the logits, like rank-based metrics; not
    the same as the language-model logit z-loss :class:`~lightning_losses.losses.ZLoss`.
    The paper tunes ``a`` and ``b`` per task and gives no universal default; ``a=0.1, b=10``
    are a starting point (CATALOG), not a paper setting. Since :math:`z_y \le \sqrt{C-1}`, a
    large ``b`` keeps the loss in its near-linear regime.

    Paper: *The Z-loss: a shift and scale invariant classification loss belonging to the
    Spherical Family*, de Brébisson & Vincent, 2016 (arXiv:1604.08859).

    Args:
        input: logits ``[N, C, *]`` with ``C ≥ 2``.
        target: class indices ``[N, *]``.
        a: sharpness :math:`a > 0` (default 0.1).
        b: location :math:`b` (default 10.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import spherical_z_loss
        >>> # o = (1, -1): μ = 0, σ = 1, z_0 = 1, loss = softplus(1 - 1) = log 2
        >>> spherical_z_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([0]), a=1.0, b=1.0)
        tensor(0.6931)
    """
    check_reduction(reduction)
    a = check_number("a", a, low=0.0, low_inclusive=False)
    b = check_number("b", b)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    o = batch.logits
    centred = o - o.mean(-1, keepdim=True)
    sigma = (centred.square().mean(-1) + SPHERICAL_Z_EPS).sqrt()
    z_y = batch.at_target(centred) / sigma
    rows = F.softplus(a * (b - z_y)) / a
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss(
    "spherical_z",
    aliases=("spherical_z_loss",),
    functional=spherical_z_loss,
    example=classification_example,
    invalid_kwargs=({"a": 0.0}, {"b": float("nan")}),
    ignore_index=True,
    family=_FAMILY,
)
class SphericalZLoss(Loss):
    r"""Shift- and scale-invariant Z-loss :math:`\frac1a\mathrm{softplus}(a(b - z_y))` (arXiv:1604.08859).

    See :func:`~lightning_losses.functional.spherical_z_loss`.

    Args:
        a: sharpness (default 0.1).
        b: location (default 10.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SphericalZLoss
        >>> loss = SphericalZLoss(a=1.0, b=1.0)
        >>> x = torch.tensor([[1.0, -1.0]])
        >>> bool(torch.isclose(loss(x, torch.tensor([0])), loss(5 * x + 3, torch.tensor([0]))))
        True
    """

    def __init__(
        self, a: float = 0.1, b: float = 10.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.a = check_number("a", a, low=0.0, low_inclusive=False)
        self.b = check_number("b", b)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return spherical_z_loss(
            input,
            target,
            a=self.a,
            b=self.b,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
