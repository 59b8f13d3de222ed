"""Calibration-oriented classification losses: dual focal loss and the encouraging loss.

Papers:
    Dual Focal Loss for Calibration (Tao et al., ICML 2023, arXiv:2305.13665)
    Well-classified Examples are Underestimated in Classification with Deep Neural Networks
    (Zhao et al., AAAI 2022, arXiv:2110.06537)

Reference code followed where it pins a detail: ``Linwei94/DualFocalLoss``
(``Losses/dual_focal_loss.py``): the dual probability is the largest softmax probability
**strictly below** the target's, and gradients flow through both probabilities;
``lancopku/well-classified-examples-are-underestimated`` (``EncouragingLoss.py``): the bonus is
``log(max(1 - p, 1e-5))``, replaced above ``log_end`` by its tangent line (conservative bonus),
class weights as in ``nll_loss``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    ClassificationBatch,
    check_class_weight,
    check_number,
    check_reduction,
    prepare_classification,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import classification_example
from lightning_losses.registry import register_loss

__all__ = ["DualFocalLoss", "EncouragingLoss", "dual_focal_loss", "encouraging_loss"]

_FAMILY = "A · calibration"
ENCOURAGING_BONUS_FLOOR = 1e-5  # official code: log(clamp(1 - p, min=1e-5))


def _dual_focal_rows(batch: ClassificationBatch, gamma: float) -> Tensor:
    log_p = batch.logits.log_softmax(-1)
    p = log_p.exp()
    log_p_y = batch.at_target(log_p)
    p_y = batch.at_target(p)
    # Official masking: only probabilities strictly smaller than p_y compete (p_j = 0 if none).
    below = p < p_y[:, None]
    # max(dim) keeps only the arg-max indices for backward (amax would save a [M, C] copy).
    p_j = torch.where(below, p, torch.zeros((), dtype=p.dtype, device=p.device)).max(-1).values
    base = (-torch.expm1(log_p_y) + p_j).clamp_min(0)  # 1 - p_y + p_j ∈ [0, 2]
    return -base.pow(gamma) * log_p_y


def dual_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 5.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Dual focal loss, :math:`\ell = -(1 - p_y + p_j)^{\gamma} \log p_y`.

    :math:`p_j` is the largest softmax probability strictly smaller than :math:`p_y` (0 if
    there is none), as the official code's mask ``p_k < p_y`` selects it: when :math:`y` is the
    arg-max this is the runner-up probability; when it is not, :math:`p_j` is the next
    probability *below* :math:`p_y`, not the top non-target one. Both :math:`p_y` and
    :math:`p_j` receive gradients. ``gamma=0`` is cross-entropy.

    Paper: *Dual Focal Loss for Calibration*, Tao, Dong & Xu, ICML 2023 (arXiv:2305.13665).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        gamma: focusing parameter ``≥ 0`` (default 5.0, the paper's CIFAR setting; the official
            class default is 0, tune per dataset).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch, math
        >>> from lightning_losses.functional import dual_focal_loss
        >>> # p = (1/2, 1/4, 1/4), y = 0: p_j = 1/4, loss = (3/4)^2 · log 2
        >>> logits = torch.tensor([[math.log(2.0), 0.0, 0.0]])
        >>> dual_focal_loss(logits, torch.tensor([0]), gamma=2.0)
        tensor(0.3899)
    """
    check_reduction(reduction)
    gamma = check_number("gamma", gamma, low=0.0)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    rows = _dual_focal_rows(batch, gamma)
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


def _encouraging_rows(batch: ClassificationBatch, log_end: float) -> Tensor:
    log_p_y = batch.at_target(batch.logits.log_softmax(-1))
    one_minus_p = -torch.expm1(log_p_y)
    bonus = one_minus_p.clamp_min(ENCOURAGING_BONUS_FLOOR).log()
    if log_end < 1.0:
        p_y = log_p_y.exp()
        tangent = (p_y - log_end) / (log_end - 1.0) + math.log(1.0 - log_end)
        bonus = torch.where(p_y > log_end, tangent, bonus)
    return -log_p_y + bonus


def encouraging_loss(
    input: Tensor,
    target: Tensor,
    *,
    log_end: float = 0.75,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Encouraging loss: cross-entropy plus a bonus that rewards well-classified examples.

    .. math::
        \ell = -\log p_y + b(p_y),\qquad
        b(p) = \begin{cases} \log\max(1 - p,\ 10^{-5}) & p \le e \\
        \dfrac{p - e}{e - 1} + \log(1 - e) & p > e \end{cases}

    with :math:`e` = ``log_end``: above it the log bonus is replaced by its tangent line (the
    official "conservative bonus"); ``log_end=1`` keeps the full (clamped) log bonus. The bonus
    is ≤ 0, so the loss never exceeds cross-entropy, and its gradient keeps growing for
    confident correct predictions instead of vanishing as CE's does. Class weights and the
    ``mean`` over the summed weight follow ``torch.nn.functional.nll_loss``, as the official code.

    Paper: *Well-classified Examples are Underestimated in Classification with Deep Neural
    Networks*, Zhao et al., AAAI 2022 (arXiv:2110.06537).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        log_end: :math:`e \in (0, 1]` (default 0.75, official; the paper reports 0.5 as a
            setting that works everywhere).
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import encouraging_loss
        >>> # p_y = 1/2 ≤ 0.75: -log(1/2) + log(1/2) = 0
        >>> encouraging_loss(torch.zeros(1, 2), torch.tensor([0]))
        tensor(0.)
    """
    check_reduction(reduction)
    log_end = check_number("log_end", log_end, low=0.0, high=1.0, low_inclusive=False)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    w = check_class_weight(weight, batch.num_classes, batch.logits)
    rows = _encouraging_rows(batch, log_end)
    row_w = None
    if w is not None:
        row_w = w[batch.target]
        rows = rows * row_w
    return reduce_loss(rows, reduction, valid=batch.valid, weight=row_w, out_shape=batch.out_shape)


@register_loss(
    "dual_focal",
    aliases=("dual_focal_loss",),
    functional=dual_focal_loss,
    example=classification_example,
    invalid_kwargs=({"gamma": -1.0},),
    ignore_index=True,
    family=_FAMILY,
)
class DualFocalLoss(Loss):
    r"""Dual focal loss :math:`-(1 - p_y + p_j)^\gamma \log p_y` (Tao et al. 2023, arXiv:2305.13665).

    See :func:`~lightning_losses.functional.dual_focal_loss`.

    Args:
        gamma: focusing parameter (default 5.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input ``[N, C, *]``; target ``[N, *]``; output scalar or ``[N, *]``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DualFocalLoss
        >>> DualFocalLoss(gamma=0.0)(torch.zeros(2, 4), torch.tensor([0, 1]))  # = CE = log 4
        tensor(1.3863)
    """

    def __init__(
        self, gamma: float = 5.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return dual_focal_loss(
            input,
            target,
            gamma=self.gamma,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "encouraging",
    aliases=("encouraging_loss",),
    functional=encouraging_loss,
    example=classification_example,
    invalid_kwargs=({"log_end": 0.0}, {"log_end": 1.5}),
    ignore_index=True,
    family=_FAMILY,
)
class EncouragingLoss(Loss):
    r"""Encouraging loss: CE plus a conservative log bonus (Zhao et al. 2022, arXiv:2110.06537).

    See :func:`~lightning_losses.functional.encouraging_loss`.

    Args:
        log_end: where the log bonus turns into its tangent line, in ``(0, 1]`` (default 0.75).
        weight: per-class weight ``[C]``.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - input ``[N, C, *]``; target ``[N, *]``; output scalar or ``[N, *]``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import EncouragingLoss
        >>> # p_y = 0.9 > 0.75: -log 0.9 + (0.9 - 0.75) / (0.75 - 1) + log 0.25
        >>> logits = torch.tensor([[0.0, torch.log(torch.tensor(1 / 9)).item()]])
        >>> EncouragingLoss()(logits, torch.tensor([0]))
        tensor(-1.8809)
    """

    def __init__(
        self,
        log_end: float = 0.75,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.log_end = check_number("log_end", log_end, low=0.0, high=1.0, low_inclusive=False)
        self.ignore_index = ignore_index
        self._register_optional_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return encouraging_loss(
            input,
            target,
            log_end=self.log_end,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
