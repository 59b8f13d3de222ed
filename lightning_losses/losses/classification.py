"""Classification losses: cross-entropy (label smoothing), PolyLoss, softmax and sigmoid focal loss.

Papers:
    PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions
    (Leng et al., ICLR 2022, arXiv:2204.12511)
    Focal Loss for Dense Object Detection (Lin et al., ICCV 2017, arXiv:1708.02002)
    Rethinking the Inception Architecture for Computer Vision — label smoothing
    (Szegedy et al., CVPR 2016, arXiv:1512.00567)

Every function takes raw logits ``[N, C, *]`` (class dimension 1, as ``torch.nn.functional``)
and class indices ``[N, *]`` (or soft targets shaped like the logits where stated).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    check_class_weight,
    check_number,
    check_reduction,
    check_same_shape,
    check_tensor,
    prepare_classification,
    upcast,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import classification_example, multilabel_example
from lightning_losses.registry import register_loss

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "LabelSmoothingCrossEntropy",
    "PolyLoss",
    "SigmoidFocalLoss",
    "cross_entropy",
    "focal_loss",
    "poly_loss",
    "sigmoid_focal_loss",
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
    rows = F.cross_entropy(batch.logits, tgt, weight=w, reduction="none", label_smoothing=label_smoothing)
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
    batch, _, rows, den = _cross_entropy_rows(
        input, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    return reduce_loss(rows, reduction, valid=batch.valid, weight=den, out_shape=batch.out_shape)


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


def poly_loss(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Tensor:
    r"""Poly-1 loss: cross-entropy plus a first-order polynomial term.

    .. math:: \ell = \mathrm{CE}(z, t) + \epsilon\,(1 - p_t), \qquad p_t = \sum_k t_k p_k

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
            loss stays a decreasing function of :math:`p_t` (the paper's constraint).
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
    check_number("epsilon", epsilon, low=-1.0)
    batch, w, rows, den = _cross_entropy_rows(
        input, target, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    probs = batch.logits.softmax(dim=-1)
    if batch.soft is not None:
        t = batch.soft * (1.0 - label_smoothing) + label_smoothing / batch.num_classes
        p_t = (t * probs).sum(-1)
        row_w = (t * w).sum(-1) if w is not None else None
    else:
        p_y = probs.gather(-1, batch.target[:, None]).squeeze(-1)
        p_t = (1.0 - label_smoothing) * p_y + label_smoothing / batch.num_classes
        row_w = w[batch.target] if w is not None else None
    poly = epsilon * (1.0 - p_t)
    rows = rows + (poly * row_w if row_w is not None else poly)
    return reduce_loss(rows, reduction, valid=batch.valid, weight=den, out_shape=batch.out_shape)


@register_loss(
    "poly",
    aliases=("poly1", "poly_loss"),
    functional=poly_loss,
    example=classification_example,
    invalid_kwargs=({"epsilon": -2.0}, {"label_smoothing": 1.5}, {"epsilon": "one"}),
    ignore_index=True,
    family=_FAMILY,
)
class PolyLoss(Loss):
    r"""Poly-1 loss, :math:`\mathrm{CE} + \epsilon(1 - p_t)` (Leng et al., ICLR 2022, arXiv:2204.12511).

    See :func:`~lightning_losses.functional.poly_loss`.

    Args:
        epsilon: polynomial coefficient (default 1.0; the paper's best ImageNet value was 2.0).
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
        epsilon: float = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.epsilon = check_number("epsilon", epsilon, low=-1.0)
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
            raise ValueError(f"alpha must be a float or a [C] = ({num_classes},) tensor, got {tuple(alpha.shape)}")
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
    log_p_y = batch.logits.log_softmax(-1).gather(-1, batch.target[:, None]).squeeze(-1)
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
    check_tensor("inputs", inputs, floating=True)
    check_tensor("targets", targets)
    check_same_shape("inputs", inputs, "targets", targets)
    check_number("gamma", gamma, low=0.0)
    alpha = check_number("alpha", alpha, high=1.0)
    x = upcast(inputs)
    t = targets.to(x.dtype)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return reduce_loss(loss, reduction)


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
