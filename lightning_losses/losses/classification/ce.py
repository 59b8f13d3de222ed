r"""Cross-entropy with label smoothing, class weights and soft targets.

Label smoothing: *Rethinking the Inception Architecture for Computer Vision*, Szegedy et al.,
CVPR 2016 (arXiv:1512.00567).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._classification import (
    ClassificationBatch,
    _TargetLogProb,
    prepare_classification,
)
from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_class_weight,
    check_ignore_index,
    check_number,
    check_reduction,
    check_weight_arg,
)

__all__ = ["CrossEntropyLoss", "LabelSmoothingCrossEntropyLoss", "cross_entropy"]


def _check_cross_entropy_args(
    *,
    weight: Tensor | None,
    ignore_index: Any,
    label_smoothing: Any,
    smoothing_name: str = "label_smoothing",
) -> dict[str, Any]:
    # The one validator of cross_entropy's hyperparameters: the functional and both classes use it.
    return {
        "weight": check_weight_arg(weight),
        "ignore_index": check_ignore_index(ignore_index),
        "label_smoothing": check_number(smoothing_name, label_smoothing, low=0.0, high=1.0),
    }


def cross_entropy_rows(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None,
    ignore_index: int | None,
    label_smoothing: float,
    validate_args: bool = True,
) -> tuple[ClassificationBatch, Tensor | None, Tensor, Tensor | None]:
    """Shared core of the CE family: validated batch, class weights, weighted CE rows ``[M]``, and
    the per-row mean denominators (``w_y`` for weighted hard targets, else ``None``).

    Family members that add a term to CE (Poly-1, squentropy, ...) start from these rows.
    """
    batch = prepare_classification(
        input, target, ignore_index=ignore_index, validate_args=validate_args
    )
    w = check_class_weight(weight, batch.num_classes, batch.logits, validate_args=validate_args)
    tgt = batch.soft if batch.soft is not None else batch.target
    rows = F.cross_entropy(
        batch.logits, tgt, weight=w, reduction="none", label_smoothing=label_smoothing
    )
    # torch's convention: hard targets average by the summed class weight, soft targets by N.
    den = w[batch.target] if (w is not None and batch.soft is None) else None
    return batch, w, rows, den


def _hard_target_ce(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None,
    ignore_index: int | None,
    reduction: str,
    validate_args: bool,
) -> Tensor:
    """CE of ``[N, C]`` logits and class indices from one ``softmax`` pass (no smoothing).

    The same ``[N, C]`` work as `F.cross_entropy` (``softmax`` plus two value-only row maxima
    instead of ``log_softmax``; a one-multiply backward instead of a zero fill plus
    ``log_softmax``'s backward) in two ``[N, C]`` buffers per step instead of three, and the
    ignored rows' zero gradient comes from `_TargetLogProb`'s `keep`, not from a ``torch.where``
    over the whole gradient.
    """
    # prepare_classification only validates and flattens here (it gets the logits detached, so it
    # adds no gradient mask of its own); the differentiable logits are the same [N, C] view.
    logits = upcast(input)
    batch = prepare_classification(
        logits.detach(), target, ignore_index=ignore_index, validate_args=validate_args
    )
    w = check_class_weight(weight, batch.num_classes, logits, validate_args=validate_args)
    # Rows may be ignored: always without the data checks (no host sync), and with them only if
    # one is (a read of the [N] mask prepare_classification built; the checks sync anyway).
    maybe_ignored = ignore_index is not None and (not validate_args or not bool(batch.valid.all()))
    if not maybe_ignored:
        log_p_y, _ = _TargetLogProb.apply(logits, batch.target)
    else:
        log_p_y, _ = _TargetLogProb.apply(logits, batch.target, batch.valid, validate_args)
    if w is None:
        return reduce_loss(-log_p_y, reduction, valid=batch.valid, out_shape=batch.out_shape)
    w_y = w.gather(0, batch.target)
    return reduce_loss(
        -log_p_y * w_y, reduction, valid=batch.valid, weight=w_y, out_shape=batch.out_shape
    )


def cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Cross-entropy with optional label smoothing, class weights and soft targets.

    $$
    \ell = -(1-\varepsilon)\log p_y - \frac{\varepsilon}{C}\sum_k \log p_k
    $$

    Same value and gradient as `torch.nn.functional.cross_entropy` (which does the math), behind
    this library's argument checks, float32 upcast, zero gradient for ignored rows and the rule
    that a mean over zero valid targets is 0 instead of NaN.

    Label smoothing: *Rethinking the Inception Architecture for Computer Vision*, Szegedy et
    al., CVPR 2016 (arXiv:1512.00567).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]` or soft targets `[N, C, *]`.
        weight: per-class weight `[C]`.
        ignore_index: target value that contributes neither to the loss nor to the mean.
        label_smoothing: $\varepsilon \in [0, 1]$.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check label range and finiteness of `weight` (host syncs).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import cross_entropy
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> cross_entropy(logits, torch.tensor([0, 1]), label_smoothing=0.1)
        tensor(0.4773)
    """
    check_reduction(reduction)
    hp = _check_cross_entropy_args(
        weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    if input.ndim == 2 and not target.is_floating_point() and hp["label_smoothing"] == 0.0:
        # The common case, [N, C] logits and class indices, on the fused path.
        return _hard_target_ce(
            input,
            target,
            weight=hp["weight"],
            ignore_index=hp["ignore_index"],
            reduction=reduction,
            validate_args=validate_args,
        )
    if reduction == "none":
        batch, _, rows, _ = cross_entropy_rows(input, target, **hp, validate_args=validate_args)
        return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)
    batch = prepare_classification(
        input, target, ignore_index=hp["ignore_index"], validate_args=validate_args
    )
    w = check_class_weight(weight, batch.num_classes, batch.logits, validate_args=validate_args)
    hard = batch.soft is None
    tgt = batch.target.masked_fill(~batch.valid, -100) if batch.soft is None else batch.soft
    # torch's fused reduction has the same semantics as reduce_loss(rows, weight=w_y) — weighted
    # mean over valid rows, soft targets averaged over N — and skips a [M] round trip (faster).
    total = F.cross_entropy(
        batch.logits,
        tgt,
        weight=w,
        ignore_index=-100,
        reduction="sum" if hard else reduction,
        label_smoothing=hp["label_smoothing"],
    )
    if not hard or reduction == "sum":
        return total
    # torch's "mean" divides the sum by Σ w_y over the valid rows; over no valid row that is
    # 0/0 = NaN where the contract says 0 (gradient 0). Dividing here, by a clamped count, keeps
    # the mean free of a data-dependent branch (no host sync, one graph under torch.compile).
    valid = batch.valid.to(total.dtype)
    count = valid.sum() if w is None else (w.to(total.dtype).gather(0, batch.target) * valid).sum()
    return total / count.clamp_min(torch.finfo(total.dtype).tiny)


@register_loss("cross_entropy", aliases=("ce",))
class CrossEntropyLoss(Loss):
    r"""Cross-entropy with label smoothing, class weights and soft targets.

    See [cross_entropy][lightning_losses.functional.cross_entropy] for the formula.

    Args:
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        label_smoothing: smoothing $\varepsilon \in [0, 1]$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` indices or `[N, C, *]` soft targets.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CrossEntropyLoss
        >>> CrossEntropyLoss()(torch.zeros(4, 10), torch.tensor([0, 1, 2, 3]))
        tensor(2.3026)
        >>> CrossEntropyLoss(label_smoothing=0.1)
        CrossEntropyLoss(weight=None, ignore_index=-100, label_smoothing=0.1, reduction='mean')
    """

    functional = staticmethod(cross_entropy)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_cross_entropy_args(
                weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]`, class indices `target [N, *]` or soft `[N, C, *]`."""
        return self._call_functional(input, target)


@register_loss("label_smoothing_ce", aliases=("label_smoothing_cross_entropy",))
class LabelSmoothingCrossEntropyLoss(CrossEntropyLoss):
    r"""Label-smoothed CE, $(1-\varepsilon)(-\log p_y) + \varepsilon\,\mathrm{mean}_k(-\log p_k)$.

    The label-smoothing baseline of *Rethinking the Inception Architecture for Computer Vision*
    (Szegedy et al., CVPR 2016, arXiv:1512.00567), with the same default and value as
    `timm.loss.LabelSmoothingCrossEntropy(smoothing=0.1)`, plus `ignore_index`, class weights
    and `reduction`.

    Args:
        smoothing: $\varepsilon \in [0, 1]$ (default 0.1).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LabelSmoothingCrossEntropyLoss
        >>> loss = LabelSmoothingCrossEntropyLoss(smoothing=0.1)
        >>> loss(torch.tensor([[3.0, 0.0]]), torch.tensor([0]))
        tensor(0.1986)
    """

    def __init__(
        self,
        smoothing: float = 0.1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        # Validated under the name the user wrote (`smoothing`), stored as the functional's name.
        hp = _check_cross_entropy_args(
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=smoothing,
            smoothing_name="smoothing",
        )
        Loss.__init__(self, reduction=reduction, validate_args=validate_args, **hp)

    @property
    def smoothing(self) -> float:
        """The constructor's name for `label_smoothing`."""
        return self.label_smoothing
