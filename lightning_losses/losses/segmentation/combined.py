r"""Dice + cross-entropy and Dice + focal: the usual compound segmentation losses.

`dice_ce_loss` is $\lambda_{dice}\,\mathrm{Dice} + \lambda_{ce}\,\mathrm{CE}$, as in
`monai.losses.DiceCELoss` and nnU-Net (*nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation*, Isensee et al., Nature Methods 2021,
arXiv:1809.10486); `dice_focal_loss` is $\lambda_{dice}\,\mathrm{Dice} + \lambda_{focal}\,
\mathrm{Focal}$ with MONAI's per-channel sigmoid focal term (*Focal Loss for Dense Object
Detection*, Lin et al., ICCV 2017, arXiv:1708.02002), as in `monai.losses.DiceFocalLoss`.
Unlike MONAI both return one value per sample with `reduction="none"`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses.segmentation._dense import (
    DenseBatch,
    DenseLoss,
    DenseResult,
    bin_sums,
    check_dense_common,
    check_dense_weight,
    class_weight_for,
    finish_dense,
    prepare_dense_options,
    select_classes,
)
from lightning_losses.losses.segmentation.dice import dice_per_class
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction

__all__ = ["DiceCELoss", "DiceFocalLoss", "dice_ce_loss", "dice_focal_loss"]


def _check_compound_args(
    *,
    include_background: Any,
    to_onehot_y: Any,
    sigmoid: Any,
    softmax: Any,
    squared_pred: Any,
    jaccard: Any,
    smooth_nr: Any,
    smooth_dr: Any,
    batch: Any,
    weight: Any,
    ignore_index: Any,
    ignore_empty: Any,
    per_class: Any,
    lambda_dice: Any,
    **extra: Any,
) -> dict[str, Any]:
    out = {
        **check_dense_common(
            include_background=include_background,
            to_onehot_y=to_onehot_y,
            sigmoid=sigmoid,
            softmax=softmax,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            ignore_index=ignore_index,
            ignore_empty=ignore_empty,
        ),
        "squared_pred": check_bool("squared_pred", squared_pred),
        "jaccard": check_bool("jaccard", jaccard),
        "weight": check_dense_weight(weight),
        "per_class": check_bool("per_class", per_class),
        "lambda_dice": check_number("lambda_dice", lambda_dice, low=0.0),
    }
    for name in ("lambda_ce", "lambda_focal", "gamma"):
        if name in extra:
            out[name] = check_number(name, extra[name], low=0.0)
    if "label_smoothing" in extra:
        out["label_smoothing"] = check_number(
            "label_smoothing", extra["label_smoothing"], low=0.0, high=1.0
        )
    if "alpha" in extra:
        alpha = extra["alpha"]
        out["alpha"] = None if alpha is None else check_number("alpha", alpha, low=0.0, high=1.0)
    return out


def _dice_part(b: DenseBatch, hp: dict[str, Any], weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-(sample|batch, class) Dice `[N or 1, C']` (class-weighted) and the ground sums."""
    f, ground = dice_per_class(b, hp)
    if weight is not None:
        f = f * weight
    return f, ground


def _pixel_normaliser(b: DenseBatch, pixel_weight: Tensor | None) -> tuple[Tensor, Tensor]:
    """`(scale, counted)`: per-sample sums times `scale` have the batch's pixel mean as mean.

    `scale = N' / D`, with `D` the number (weighted: the summed class weight) of counted pixels
    in the batch and `N'` the number of samples that have one, so that the mean over counted
    samples of `scale · Σ_pixels` is `Σ / D`: torch's `cross_entropy` mean.
    """
    n, _, s = b.logits.shape
    valid = b.valid
    if pixel_weight is not None:
        total = pixel_weight.sum() if valid is None else (pixel_weight * valid).sum()
    elif valid is None:
        total = b.logits.new_tensor(float(n * s))
    else:
        total = valid.sum().to(b.logits.dtype)
    counted = b.logits.new_tensor(float(n)) if valid is None else valid.any(1).sum().to(total)
    scale = torch.where(total > 0, counted / torch.where(total > 0, total, 1), total * 0)
    return scale, counted


def _combine(
    dice: Tensor,
    ground: Tensor,
    pixel_term: Tensor,
    b: DenseBatch,
    hp: dict[str, Any],
    lam_dice: float,
    lam_other: float,
) -> DenseResult:
    """`λ_d · Dice + λ_o · term`: per sample `[N]`, or per sample and class `[N, C']`.

    `pixel_term` is `[N]` (added to every class with `per_class`) or `[N, C']` (per channel).
    """
    n = b.logits.shape[0]
    d = finish_dense(
        dice,
        n=n,
        ground=ground,
        batch=hp["batch"],
        ignore_empty=hp["ignore_empty"],
        per_class=hp["per_class"],
        sample_valid=b.sample_valid,
    )
    if hp["per_class"]:
        term = pixel_term if pixel_term.ndim == 2 else pixel_term[:, None].expand_as(d.values)
    else:
        term = pixel_term if pixel_term.ndim == 1 else pixel_term.mean(1)
    values = lam_dice * d.values + lam_other * term
    # The pixel term counts wherever the sample has a counted pixel, even where Dice does not
    # (`ignore_empty`): a sample counts when it has a counted pixel.
    sample_valid = b.sample_valid
    valid = None
    if sample_valid is not None:
        valid = sample_valid if not hp["per_class"] else sample_valid[:, None].expand_as(values)
    return DenseResult(values, valid)


# -- Dice + cross-entropy --------------------------------------------------------------------------


def _dice_ce_impl(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    weight: Tensor | None = None,
    ignore_index: int | None = -100,
    ignore_empty: bool = False,
    per_class: bool = False,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    label_smoothing: float = 0.0,
    validate_args: bool = True,
) -> DenseResult:
    hp = _check_compound_args(
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        squared_pred=squared_pred,
        jaccard=jaccard,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        weight=weight,
        ignore_index=ignore_index,
        ignore_empty=ignore_empty,
        per_class=per_class,
        lambda_dice=lambda_dice,
        lambda_ce=lambda_ce,
        label_smoothing=label_smoothing,
    )
    b = prepare_dense_options(input, target, hp, validate_args)
    c = b.num_classes
    w = None if hp["weight"] is None else class_weight_for(hp["weight"], c, b.logits)
    if w is not None and c == 1:
        raise ValueError("weight needs input with C > 1 channels (a per-class weight)")
    dice_w = w if w is None or hp["include_background"] else w[1:]
    dice, ground = _dice_part(b, hp, dice_w)

    x = b.logits
    pixel_weight = None
    if c == 1:
        # One channel: binary cross-entropy on the logits (MONAI's BCEWithLogitsLoss).
        t = b.binary_target()
        if hp["label_smoothing"]:
            raise ValueError("label_smoothing needs input with C > 1 channels")
        ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")[:, 0]
    elif b.labels is not None:
        labels = b.labels if b.valid is None else torch.where(b.valid, b.labels, -100)
        ce = F.cross_entropy(
            x,
            labels,
            weight=w,
            ignore_index=-100,
            label_smoothing=hp["label_smoothing"],
            reduction="none",
        )
        if w is not None:
            pixel_weight = w[b.labels]
    else:
        assert b.target is not None
        ce = F.cross_entropy(
            x, b.target, weight=w, label_smoothing=hp["label_smoothing"], reduction="none"
        )
    if b.valid is not None:
        ce = torch.where(b.valid, ce, ce.new_zeros(()))
    scale, _ = _pixel_normaliser(b, pixel_weight)
    ce_n = ce.sum(1) * scale
    return _combine(dice, ground, ce_n, b, hp, hp["lambda_dice"], hp["lambda_ce"])


def dice_ce_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    weight: Tensor | None = None,
    ignore_index: int | None = -100,
    ignore_empty: bool = False,
    per_class: bool = False,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Dice loss plus cross-entropy, per sample, MONAI's `DiceCELoss` semantics.

    $$
    \ell_n = \lambda_{dice}\,\mathrm{Dice}_n + \lambda_{ce}\,\mathrm{CE}_n,\qquad
    \mathrm{CE}_n = \frac{N'}{D} \sum_{s \in n} w_{y_s}\,\mathrm{ce}_s
    $$

    $\mathrm{Dice}_n$ is [dice_loss][lightning_losses.functional.dice_loss]'s per-sample value
    (the same options). The cross-entropy is softmax CE on the logits over *all* channels
    (`include_background` and the activation flags act on the Dice term only, as in MONAI), or
    binary CE for a single channel. `weight` `[C]` is the CE class weight and, without channel
    0 when `include_background=False`, the Dice class weight. The per-sample CE is normalised
    by $D$, the (weighted) count of counted pixels in the batch, times $N'$, the number of
    samples that have one: so the `"mean"` over samples is exactly torch's `cross_entropy`
    mean over pixels (`ignore_index`, `weight` and all), and MONAI's value.

    **MONAI parity.** With the same arguments, `"mean"` equals `monai.losses.DiceCELoss` in value
    and gradient (activation and target differences as in `dice_loss`; MONAI has no
    `ignore_index` here and no `reduction="none"`: ours is `[N]`, or `[N, C]` with
    `per_class=True`, where each class's Dice term gets its sample's CE added).

    Paper: *nnU-Net: a self-configuring method for deep learning-based biomedical image
    segmentation*, Isensee et al., Nature Methods 2021 (arXiv:1809.10486); Dice from *V-Net*,
    Milletari et al., 3DV 2016 (arXiv:1606.04797).

    Args:
        input: logits `[N, C, *spatial]`.
        target: class indices `[N, *]` / `[N, 1, *]`, or one-hot / soft `[N, C, *]`.
        include_background: score channel 0 in the Dice term.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation for the Dice term.
        softmax: softmax for the Dice term; `None` = softmax if `C > 1`, else sigmoid.
        squared_pred: squared Dice denominator terms.
        jaccard: soft Jaccard instead of Dice.
        smooth_nr: Dice numerator smoothing (≥ 0).
        smooth_dr: Dice denominator smoothing (≥ 0).
        batch: per-batch Dice.
        weight: per-class weight `[C]` (CE semantics; Dice without channel 0 when excluded).
        ignore_index: class index that counts nowhere, in Dice and CE (index targets).
        ignore_empty: leave empty ground-truth classes out of the Dice class mean.
        per_class: `reduction="none"` returns `[N, C]`.
        lambda_dice: weight of the Dice term (≥ 0).
        lambda_ce: weight of the CE term (≥ 0).
        label_smoothing: CE label smoothing in `[0, 1]`.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check label range and target values (host syncs).

    Returns:
        The reduced loss, `[N]` with `reduction="none"`, or `[N, C]` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import dice_ce_loss
        >>> logits = torch.zeros(1, 2, 1, 2)  # uniform: CE = log 2, Dice = 1/2
        >>> dice_ce_loss(logits, torch.tensor([[[0, 1]]]))
        tensor(1.1931)
    """
    check_reduction(reduction)
    return _dice_ce_impl(
        input,
        target,
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        squared_pred=squared_pred,
        jaccard=jaccard,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        weight=weight,
        ignore_index=ignore_index,
        ignore_empty=ignore_empty,
        per_class=per_class,
        lambda_dice=lambda_dice,
        lambda_ce=lambda_ce,
        label_smoothing=label_smoothing,
        validate_args=validate_args,
    ).reduce(reduction)


@register_loss("dice_ce", aliases=("dice_ce_loss", "dicece"))
class DiceCELoss(DenseLoss):
    r"""Dice loss plus cross-entropy, $\lambda_{dice}\mathrm{Dice} + \lambda_{ce}\mathrm{CE}$.

    See [dice_ce_loss][lightning_losses.functional.dice_ce_loss] for the per-sample form and
    the mapping to `monai.losses.DiceCELoss`.

    Paper: *nnU-Net: a self-configuring method for deep learning-based biomedical image
    segmentation*, Isensee et al., Nature Methods 2021 (arXiv:1809.10486).

    Args:
        include_background: score channel 0 in the Dice term.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation for the Dice term.
        softmax: softmax for the Dice term; `None` = softmax if `C > 1`, else sigmoid.
        squared_pred: squared Dice denominator terms.
        jaccard: soft Jaccard instead of Dice.
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
        batch: per-batch Dice.
        weight: per-class weight `[C]`.
        ignore_index: class index that counts nowhere.
        ignore_empty: leave empty ground-truth classes out of the Dice class mean.
        per_class: `reduction="none"` returns `[N, C]`.
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the CE term.
        label_smoothing: CE label smoothing.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices or `[N, C, *]` one-hot.
        - output: scalar, `[N]` with `reduction="none"`, `[N, C]` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DiceCELoss
        >>> loss = DiceCELoss(softmax=True, ignore_index=255, reduction="none")
        >>> loss(torch.zeros(2, 2, 1, 2), torch.tensor([[[0, 1]], [[255, 255]]]))
        tensor([1.1931, 0.0000])
    """

    functional = staticmethod(dice_ce_loss)
    impl = staticmethod(_dice_ce_impl)

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool | None = None,
        squared_pred: bool = False,
        jaccard: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        weight: Tensor | None = None,
        ignore_index: int | None = -100,
        ignore_empty: bool = False,
        per_class: bool = False,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_compound_args(
                include_background=include_background,
                to_onehot_y=to_onehot_y,
                sigmoid=sigmoid,
                softmax=softmax,
                squared_pred=squared_pred,
                jaccard=jaccard,
                smooth_nr=smooth_nr,
                smooth_dr=smooth_dr,
                batch=batch,
                weight=weight,
                ignore_index=ignore_index,
                ignore_empty=ignore_empty,
                per_class=per_class,
                lambda_dice=lambda_dice,
                lambda_ce=lambda_ce,
                label_smoothing=label_smoothing,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against `target [N, *]` (indices) or `[N, C, *]`."""
        return self._call_functional(input, target)


# -- Dice + focal ----------------------------------------------------------------------------------


def _sigmoid_focal(x: Tensor, positive: bool, gamma: float, alpha: float | None) -> Tensor:
    """MONAI's sigmoid focal term for an all-positive (`t = 1`) or all-negative (`t = 0`) target."""
    sign = -1.0 if positive else 1.0
    # BCE = softplus(∓x); the modulating factor (1 - p_t)^γ = exp(γ · logsigmoid(±x)).
    loss = F.softplus(sign * x)
    if gamma:
        loss = torch.exp(gamma * F.logsigmoid(sign * x)) * loss
    if alpha is not None:
        loss = loss * (alpha if positive else 1 - alpha)
    return loss


class _NegativeFocalSums(torch.autograd.Function):
    """`Σ_s (1 - α) · softplus(x) · σ(x)^γ` `[N, C]`: every entry's focal loss as a negative.

    Fused: the value and its derivative `σ(x)^γ (σ(x) + γ · softplus(x) · (1 - σ(x)))` come
    from the same two transcendental passes, and the derivative is the one `[N, C, S]` tensor
    saved (MONAI's graph saves several).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, valid: Tensor | None, gamma: float, scale: float) -> Tensor:
        loss, slope = _focal_value_and_slope(x, gamma)
        if valid is not None:
            keep = valid[:, None]
            loss = torch.where(keep, loss, loss.new_zeros(()))
            slope = torch.where(keep, slope, slope.new_zeros(()))
        ctx.save_for_backward(slope)
        ctx.scale = scale
        return loss.sum(-1) * scale

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        (slope,) = ctx.saved_tensors
        return slope * (g * ctx.scale)[:, :, None], None, None, None


def _focal_value_and_slope(x: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """`softplus(x)·σ(x)^γ` (the focal loss of a negative entry) and its derivative in `x`."""
    sp = F.softplus(x)
    sig = torch.sigmoid(x)
    if not gamma:
        return sp, sig
    if gamma == 2.0:
        mod = sig * sig  # the common γ = 2 without a third transcendental pass
    else:
        mod = torch.exp(gamma * (x - sp))  # σ(x)^γ from log σ(x) = x - softplus(x)
    return sp * mod, mod * (sig + gamma * sp * (1 - sig))


class _FocalClassCorrection(torch.autograd.Function):
    """`[N, C]` sums, at each pixel's own class, of `α·FL⁺(x) - (1 - α)·FL⁻(x)`.

    Turns the all-negative focal sums into the one-hot ones without a one-hot target. Saved:
    the derivative at each pixel's class `[N, S]` and the class codes in one byte per pixel.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, code: Tensor, gamma: float, pos: float, neg: float) -> Tensor:
        n, c, _ = x.shape
        idx = code.clamp(max=c - 1)[:, None]
        x_at = x.gather(1, idx).squeeze(1)
        fl_pos, d_pos = _focal_value_and_slope(-x_at, gamma)
        fl_neg, d_neg = _focal_value_and_slope(x_at, gamma)
        corr = pos * fl_pos - neg * fl_neg
        bins = (code + torch.arange(n, device=code.device)[:, None] * (c + 2)).reshape(-1)
        out = bin_sums(bins, corr.reshape(-1), n * (c + 2))
        ctx.save_for_backward(-pos * d_pos - neg * d_neg, code.to(torch.uint8) if c < 254 else code)
        ctx.num_classes = c
        return out.to(x.dtype).reshape(n, c + 2)[:, :c]

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        slope, code_c = ctx.saved_tensors
        code = code_c.long()
        n, c = g.shape
        idx = code.clamp(max=c - 1)[:, None]
        g_at = F.pad(g, (0, 2)).gather(1, code)  # 0 for pixels without a class
        grad = slope.new_zeros(n, c, code.shape[1])
        grad.scatter_add_(1, idx, (g_at * slope)[:, None])
        return grad, None, None, None, None


def _focal_per_channel(b: DenseBatch, gamma: float, alpha: float | None) -> Tensor:
    """Per-sample, per-channel sums `[N, C]` of the sigmoid focal loss over counted pixels."""
    x = b.logits
    if b.code is None:
        t = b.target
        assert t is not None
        pos = _sigmoid_focal(x, True, gamma, alpha)
        neg = _sigmoid_focal(x, False, gamma, alpha)
        return (t * pos + (1 - t) * neg).sum(-1)
    # Index targets without a one-hot copy: every entry as a negative, then the positive entry
    # of each pixel corrected by a gather / scatter over its class.
    code = b.code
    neg_sums = _NegativeFocalSums.apply(x, b.valid, gamma, 1.0 if alpha is None else 1 - alpha)
    pos_w, neg_w = (1.0, 1.0) if alpha is None else (alpha, 1 - alpha)
    extra = _FocalClassCorrection.apply(x, code, gamma, pos_w, neg_w)
    return neg_sums + extra


def _dice_focal_impl(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    weight: Tensor | None = None,
    ignore_index: int | None = -100,
    ignore_empty: bool = False,
    per_class: bool = False,
    gamma: float = 2.0,
    alpha: float | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    validate_args: bool = True,
) -> DenseResult:
    hp = _check_compound_args(
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        squared_pred=squared_pred,
        jaccard=jaccard,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        weight=weight,
        ignore_index=ignore_index,
        ignore_empty=ignore_empty,
        per_class=per_class,
        lambda_dice=lambda_dice,
        lambda_focal=lambda_focal,
        gamma=gamma,
        alpha=alpha,
    )
    b = prepare_dense_options(input, target, hp, validate_args)
    c = b.num_classes
    c_scored = c if hp["include_background"] or c == 1 else c - 1
    w = None if hp["weight"] is None else class_weight_for(hp["weight"], c_scored, b.logits)
    dice, ground = _dice_part(b, hp, w)
    (focal,) = select_classes(
        hp["include_background"], c, _focal_per_channel(b, hp["gamma"], hp["alpha"])
    )
    if w is not None:
        focal = focal * w
    scale, _ = _pixel_normaliser(b, None)
    focal_nc = focal * scale
    return _combine(dice, ground, focal_nc, b, hp, hp["lambda_dice"], hp["lambda_focal"])


def dice_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    squared_pred: bool = False,
    jaccard: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    weight: Tensor | None = None,
    ignore_index: int | None = -100,
    ignore_empty: bool = False,
    per_class: bool = False,
    gamma: float = 2.0,
    alpha: float | None = None,
    lambda_dice: float = 1.0,
    lambda_focal: float = 1.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Dice loss plus a per-channel sigmoid focal loss, MONAI's `DiceFocalLoss` semantics.

    $$
    \ell_n = \lambda_{dice}\,\mathrm{Dice}_n + \lambda_{focal}\,\frac{1}{C'}\sum_c w_c\,
        \frac{N'}{D}\sum_{s \in n} \alpha_t\,(1 - p_t)^{\gamma}\,\mathrm{BCE}(x_{c,s}, g_{c,s})
    $$

    with $p_t$ the sigmoid probability of the true value of channel $c$ (one-hot ground truth
    $g$), $\alpha_t = \alpha g + (1-\alpha)(1-g)$ when `alpha` is set, $C'$ the scored channels
    (no channel 0 when `include_background=False`) and $N'/D$ the pixel normaliser of
    [dice_ce_loss][lightning_losses.functional.dice_ce_loss] (the `"mean"` of the focal term is
    the mean over counted pixels and channels). The focal term is MONAI's: a *sigmoid* focal
    loss per channel on the raw logits against the one-hot target, whatever the Dice term's
    activation. Index targets are never expanded to one-hot (a gather/scatter correction).

    **MONAI parity.** With the same arguments, `"mean"` equals `monai.losses.DiceFocalLoss` in
    value and gradient (activation and target differences as in `dice_loss`; MONAI computes the
    focal term in float32 and has no `ignore_index` here). `reduction="none"` is `[N]`, or
    `[N, C]` with `per_class=True` (per-channel focal terms).

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002);
    Dice from *V-Net*, Milletari et al., 3DV 2016 (arXiv:1606.04797).

    Args:
        input: logits `[N, C, *spatial]`.
        target: class indices `[N, *]` / `[N, 1, *]`, or one-hot / soft `[N, C, *]`.
        include_background: score channel 0 (Dice and focal).
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation for the Dice term.
        softmax: softmax for the Dice term; `None` = softmax if `C > 1`, else sigmoid.
        squared_pred: squared Dice denominator terms.
        jaccard: soft Jaccard instead of Dice.
        smooth_nr: Dice numerator smoothing (≥ 0).
        smooth_dr: Dice denominator smoothing (≥ 0).
        batch: per-batch Dice.
        weight: per-class weight `[C']` of both terms, ≥ 0.
        ignore_index: class index that counts nowhere (index targets).
        ignore_empty: leave empty ground-truth classes out of the Dice class mean.
        per_class: `reduction="none"` returns `[N, C']`.
        gamma: focusing parameter (≥ 0).
        alpha: positive-class balance in `[0, 1]`, or `None`.
        lambda_dice: weight of the Dice term (≥ 0).
        lambda_focal: weight of the focal term (≥ 0).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check label range and target values (host syncs).

    Returns:
        The reduced loss, `[N]` with `reduction="none"`, or `[N, C']` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import dice_focal_loss
        >>> logits = torch.zeros(1, 2, 1, 2)  # Dice = 1/2, focal = log(2) / 4
        >>> dice_focal_loss(logits, torch.tensor([[[0, 1]]]))
        tensor(0.6733)
    """
    check_reduction(reduction)
    return _dice_focal_impl(
        input,
        target,
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        squared_pred=squared_pred,
        jaccard=jaccard,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        weight=weight,
        ignore_index=ignore_index,
        ignore_empty=ignore_empty,
        per_class=per_class,
        gamma=gamma,
        alpha=alpha,
        lambda_dice=lambda_dice,
        lambda_focal=lambda_focal,
        validate_args=validate_args,
    ).reduce(reduction)


@register_loss("dice_focal", aliases=("dice_focal_loss",))
class DiceFocalLoss(DenseLoss):
    r"""Dice loss plus MONAI's per-channel sigmoid focal loss.

    See [dice_focal_loss][lightning_losses.functional.dice_focal_loss] for the per-sample form
    and the mapping to `monai.losses.DiceFocalLoss`.

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        include_background: score channel 0 (Dice and focal).
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation for the Dice term.
        softmax: softmax for the Dice term; `None` = softmax if `C > 1`, else sigmoid.
        squared_pred: squared Dice denominator terms.
        jaccard: soft Jaccard instead of Dice.
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
        batch: per-batch Dice.
        weight: per-class weight of both terms.
        ignore_index: class index that counts nowhere.
        ignore_empty: leave empty ground-truth classes out of the Dice class mean.
        per_class: `reduction="none"` returns `[N, C']`.
        gamma: focusing parameter.
        alpha: positive-class balance, or `None`.
        lambda_dice: weight of the Dice term.
        lambda_focal: weight of the focal term.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices or `[N, C, *]` one-hot.
        - output: scalar, `[N]` with `reduction="none"`, `[N, C']` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DiceFocalLoss
        >>> loss = DiceFocalLoss(gamma=0.0, lambda_dice=0.0)  # focal with gamma 0 = BCE
        >>> loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 2, 2).long())
        tensor(0.6931)
    """

    functional = staticmethod(dice_focal_loss)
    impl = staticmethod(_dice_focal_impl)

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool | None = None,
        squared_pred: bool = False,
        jaccard: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        weight: Tensor | None = None,
        ignore_index: int | None = -100,
        ignore_empty: bool = False,
        per_class: bool = False,
        gamma: float = 2.0,
        alpha: float | None = None,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_compound_args(
                include_background=include_background,
                to_onehot_y=to_onehot_y,
                sigmoid=sigmoid,
                softmax=softmax,
                squared_pred=squared_pred,
                jaccard=jaccard,
                smooth_nr=smooth_nr,
                smooth_dr=smooth_dr,
                batch=batch,
                weight=weight,
                ignore_index=ignore_index,
                ignore_empty=ignore_empty,
                per_class=per_class,
                lambda_dice=lambda_dice,
                lambda_focal=lambda_focal,
                gamma=gamma,
                alpha=alpha,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against `target [N, *]` (indices) or `[N, C, *]`."""
        return self._call_functional(input, target)
