r"""Dice-family overlap losses: Dice / soft Jaccard, generalized Dice, Tversky.

The soft Dice loss comes from *V-Net: Fully Convolutional Neural Networks for Volumetric Medical
Image Segmentation* (Milletari et al., 3DV 2016, arXiv:1606.04797); the generalized Dice loss from
*Generalised Dice overlap as a deep learning loss function for highly unbalanced segmentations*
(Sudre et al., DLMIA 2017, arXiv:1707.03237); the Tversky loss from *Tversky loss function for
image segmentation using 3D fully convolutional deep networks* (Salehi et al., MLMI 2017,
arXiv:1706.05721). Arguments and values follow `monai.losses` (`DiceLoss`,
`GeneralizedDiceLoss`, `TverskyLoss`); the differences are stated in each docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses.segmentation._dense import (
    DenseBatch,
    DenseLoss,
    DenseResult,
    check_dense_common,
    check_dense_weight,
    class_weight_for,
    finish_dense,
    prepare_dense_options,
    scored_class_sums,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_choice, check_number, check_reduction

__all__ = [
    "DiceLoss",
    "GeneralizedDiceLoss",
    "TverskyLoss",
    "dice_loss",
    "generalized_dice_loss",
    "tversky_loss",
]

# -- Dice / soft Jaccard ---------------------------------------------------------------------------


def _check_dice_args(
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
) -> dict[str, Any]:
    return {
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
    }


def _dice_impl(
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
    validate_args: bool = True,
) -> DenseResult:
    hp = _check_dice_args(
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
    )
    b = prepare_dense_options(input, target, hp, validate_args)
    f, ground = dice_per_class(b, hp)
    w = class_weight_for(hp["weight"], f.shape[1], f)
    if w is not None:
        f = f * w
    return finish_dense(
        f,
        n=b.logits.shape[0],
        ground=ground,
        batch=hp["batch"],
        ignore_empty=hp["ignore_empty"],
        per_class=hp["per_class"],
        sample_valid=b.sample_valid,
    )


def dice_from_sums(
    inter: Tensor,
    pred: Tensor,
    ground: Tensor,
    *,
    jaccard: bool,
    smooth_nr: float,
    smooth_dr: float,
) -> Tensor:
    """Dice `1 - (2I + ε_n) / (P + G + ε_d)`; Jaccard `1 - (2I + ε_n) / (2(P + G - I) + ε_d)`."""
    den = 2 * (pred + ground - inter) if jaccard else pred + ground
    return 1 - (2 * inter + smooth_nr) / (den + smooth_dr)


def dice_per_class(b: DenseBatch, hp: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """Per-(sample|batch, class) Dice `[N or 1, C']` of the scored classes, and their ground sums.

    `hp`: checked Dice arguments (`include_background`, `batch`, `squared_pred`, `jaccard`,
    `smooth_nr`, `smooth_dr`); shared by `dice_loss` and the combined losses.
    """
    inter, pred, ground = scored_class_sums(
        b, include_background=hp["include_background"], pool=hp["batch"], squared=hp["squared_pred"]
    )
    f = dice_from_sums(
        inter,
        pred,
        ground,
        jaccard=hp["jaccard"],
        smooth_nr=hp["smooth_nr"],
        smooth_dr=hp["smooth_dr"],
    )
    return f, ground


def dice_loss(
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
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Soft Dice loss (or soft Jaccard) of dense logits, per sample and class, MONAI's semantics.

    With $p$ the activated prediction and $g$ the (one-hot) ground truth of class $c$ in image
    $n$, sums over the counted pixels:

    $$
    \ell_{n,c} = 1 - \frac{2\sum p\,g + \epsilon_n}{\sum p^{(2)} + \sum g^{(2)} + \epsilon_d},
    \qquad
    \ell^{\text{Jaccard}}_{n,c} = 1 - \frac{2\sum p\,g + \epsilon_n}
        {2\left(\sum p^{(2)} + \sum g^{(2)} - \sum p\,g\right) + \epsilon_d}
    $$

    (squares with `squared_pred`), times the class `weight` $w_c$, then averaged over the classes
    of each image: `reduction="none"` gives `[N]` (`[N, C]` with `per_class=True`).

    **MONAI parity.** Same values and gradients as `monai.losses.DiceLoss` with the same
    arguments, with these stated differences: (1) MONAI's default is *no* activation; ours is
    `softmax=None`, meaning softmax when `C > 1` and sigmoid when `C == 1` (MONAI's
    `softmax=True` / `sigmoid=True` reproduce it), and `softmax=False` (with `sigmoid=False`)
    takes probabilities as MONAI's default does; (2) class-index targets `[N, *]` (or MONAI's
    `[N, 1, *]`) are accepted directly, `to_onehot_y` is only needed for float-coded indices;
    (3) `reduction="none"` is one value per sample (MONAI: `[N, C, 1, ...]`; ours with
    `per_class=True` is `[N, C]`), and `"sum"` sums the per-sample values (MONAI sums over
    samples *and* classes: `per_class=True` reproduces it); (4) `ignore_index` defaults to
    `-100` (no label has it) and applies to class-index targets only.

    **Beyond MONAI.** An ignored pixel counts nowhere (intersection, both denominators), and a
    sample whose pixels are all ignored gives 0 with zero gradient and is left out of the mean.
    `batch=True` pools the sums over the batch before the ratio (one Dice per class for the
    whole batch, repeated for every sample in `"none"`); `batch=False` is per image.
    `ignore_empty=True` leaves a class with an empty ground truth out of its image's mean (by
    default it counts, with a value that pushes its prediction to 0; an empty ground truth with
    an empty prediction gives 0 exactly when `smooth_nr == smooth_dr`). A single-channel
    input `[N, 1, *]` is a binary task: index targets are `{0, 1}` and 1 is the foreground.

    Paper: *V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image
    Segmentation*, Milletari et al., 3DV 2016 (arXiv:1606.04797); the Jaccard form, *Jaccard
    Metric Losses*, Wang & Blaschko, NeurIPS 2023 (arXiv:2302.05666).

    Args:
        input: logits `[N, C, *spatial]` (probabilities with `softmax=False`).
        target: class indices `[N, *spatial]` or `[N, 1, *spatial]` (integers), or one-hot /
            soft targets `[N, C, *spatial]` in $[0, 1]$.
        include_background: score channel 0; `False` drops it (ignored when `C == 1`).
        to_onehot_y: read a float `[N, 1, *]` target as class indices (MONAI's flag).
        sigmoid: apply a sigmoid per channel (multi-label or binary).
        softmax: apply a softmax over channels; `None` = softmax if `C > 1`, else sigmoid.
        squared_pred: square predictions and targets in the denominator.
        jaccard: soft Jaccard (IoU) instead of Dice.
        smooth_nr: $\epsilon_n$, added to the numerator (≥ 0).
        smooth_dr: $\epsilon_d$, added to the denominator (≥ 0).
        batch: pool the sums over the batch (per-batch Dice) instead of per image.
        weight: per-class weight `[C]` (`[C - 1]` without the background), ≥ 0.
        ignore_index: class index that counts nowhere (index targets; `None`: none).
        ignore_empty: leave classes with an empty ground truth out of the class mean.
        per_class: `reduction="none"` returns `[N, C]`; the mean is then over (sample, class).
        reduction: `"mean" | "sum" | "none"` (see above).
        validate_args: check label range and target values (host syncs).

    Returns:
        The reduced loss, `[N]` with `reduction="none"`, or `[N, C]` with `per_class=True`.

    Raises:
        ValueError: a target shape that matches neither form, a label out of range,
            `sigmoid=True` with `softmax=True`, `softmax=True` on one channel, a `weight` of
            the wrong length.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import dice_loss
        >>> logits = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])  # [N=1, C=2, H=1, W=2]
        >>> dice_loss(logits, torch.tensor([[[0, 1]]]))  # nearly perfect
        tensor(0.0003)
        >>> target = torch.tensor([[[0, 255]]])  # pixel 2 unlabelled: class 1 is absent
        >>> kw = dict(ignore_index=255, include_background=False)
        >>> dice_loss(logits, target, **kw)  # an absent class pushes its prediction to 0
        tensor(0.9710)
        >>> dice_loss(logits, target, **kw, ignore_empty=True)  # or it is left out
        tensor(0.)
    """
    check_reduction(reduction)
    return _dice_impl(
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
        validate_args=validate_args,
    ).reduce(reduction)


@register_loss("dice", aliases=("dice_loss", "soft_dice"))
class DiceLoss(DenseLoss):
    r"""Soft Dice (or soft Jaccard) loss for segmentation, with MONAI's arguments.

    $\ell_{n,c} = 1 - (2\sum p g + \epsilon_n)/(\sum p + \sum g + \epsilon_d)$, averaged over
    classes per image. See [dice_loss][lightning_losses.functional.dice_loss] for the formula,
    the options and how they map to `monai.losses.DiceLoss` (our default activation is softmax
    for `C > 1`, sigmoid for `C == 1`; MONAI's is none).

    Paper: *V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image
    Segmentation*, Milletari et al., 3DV 2016 (arXiv:1606.04797).

    Args:
        include_background: score channel 0.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation per channel.
        softmax: softmax over channels; `None` = softmax if `C > 1`, else sigmoid.
        squared_pred: squared denominator terms.
        jaccard: soft Jaccard instead of Dice.
        smooth_nr: numerator smoothing.
        smooth_dr: denominator smoothing.
        batch: per-batch instead of per-image Dice.
        weight: per-class weight `[C]`.
        ignore_index: class index that counts nowhere.
        ignore_empty: leave empty ground-truth classes out of the class mean.
        per_class: `reduction="none"` returns `[N, C]`.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices or `[N, C, *]` one-hot.
        - output: scalar, `[N]` with `reduction="none"`, `[N, C]` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DiceLoss
        >>> loss = DiceLoss(softmax=True, ignore_index=255)
        >>> logits = torch.zeros(2, 3, 4, 4)  # uniform prediction
        >>> target = torch.randint(0, 3, (2, 4, 4))
        >>> target[1] = 255  # the second image is unlabelled: it counts nowhere
        >>> loss(logits, target, ).shape, loss(logits, target) > 0
        (torch.Size([]), tensor(True))
    """

    functional = staticmethod(dice_loss)
    impl = staticmethod(_dice_impl)

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
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_dice_args(
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
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against `target [N, *]` (indices) or `[N, C, *]`."""
        return self._call_functional(input, target)


# -- generalized Dice ------------------------------------------------------------------------------

W_TYPES = ("square", "simple", "uniform")


def _check_gdl_args(
    *,
    include_background: Any,
    to_onehot_y: Any,
    sigmoid: Any,
    softmax: Any,
    w_type: Any,
    smooth_nr: Any,
    smooth_dr: Any,
    batch: Any,
    ignore_index: Any,
) -> dict[str, Any]:
    common = check_dense_common(
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        ignore_index=ignore_index,
        ignore_empty=False,
    )
    del common["ignore_empty"]
    return {**common, "w_type": check_choice("w_type", w_type, W_TYPES)}


def _gdl_impl(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    w_type: str = "square",
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    ignore_index: int | None = -100,
    validate_args: bool = True,
) -> DenseResult:
    hp = _check_gdl_args(
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        w_type=w_type,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        ignore_index=ignore_index,
    )
    b = prepare_dense_options(input, target, hp, validate_args)
    inter, pred, ground = scored_class_sums(
        b, include_background=hp["include_background"], pool=hp["batch"]
    )
    if hp["w_type"] == "square":
        w = 1 / (ground * ground)
    elif hp["w_type"] == "simple":
        w = 1 / ground
    else:
        w = torch.ones_like(ground)
    # An absent class (infinite weight) takes the largest finite weight of its image (MONAI).
    inf = torch.isinf(w)
    w = torch.where(inf, w.new_zeros(()), w)
    w = torch.where(inf, w.amax(1, keepdim=True) if not hp["batch"] else w.amax(), w)
    num = 2 * (inter * w).sum(1) + hp["smooth_nr"]
    den = ((pred + ground) * w).sum(1) + hp["smooth_dr"]
    f = (1 - num / den)[:, None]
    return finish_dense(
        f,
        n=b.logits.shape[0],
        ground=ground,
        batch=hp["batch"],
        ignore_empty=False,
        per_class=False,
        sample_valid=b.sample_valid,
    )


def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    w_type: str = "square",
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    ignore_index: int | None = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Generalized Dice loss: one Dice over all classes, each weighted by its inverse volume.

    $$
    \ell_n = 1 - \frac{2\sum_c w_c \sum p_c g_c + \epsilon_n}
        {\sum_c w_c \left(\sum p_c + \sum g_c\right) + \epsilon_d},
    \qquad w_c = \frac{1}{(\sum g_c)^2}\ (\texttt{square}),\ \frac{1}{\sum g_c}\
        (\texttt{simple}),\ 1\ (\texttt{uniform})
    $$

    A class absent from the image (infinite weight) takes the largest finite weight of the
    image (of the batch with `batch=True`), as in MONAI. The loss couples the classes, so it has
    no per-class form; `reduction="none"` is `[N]`.

    **MONAI parity.** Same values and gradients as `monai.losses.GeneralizedDiceLoss` with the
    same arguments (`reduction="none"`: MONAI gives `[N, 1, 1, ...]`), with the activation and
    target differences of [dice_loss][lightning_losses.functional.dice_loss]. `ignore_index`
    (not in MONAI's generalized Dice) removes ignored pixels from every sum.

    Paper: *Generalised Dice overlap as a deep learning loss function for highly unbalanced
    segmentations*, Sudre et al., DLMIA 2017 (arXiv:1707.03237).

    Args:
        input: logits `[N, C, *spatial]`.
        target: class indices `[N, *]` / `[N, 1, *]`, or one-hot / soft `[N, C, *]`.
        include_background: score channel 0.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation per channel.
        softmax: softmax over channels; `None` = softmax if `C > 1`, else sigmoid.
        w_type: `"square" | "simple" | "uniform"` class weighting.
        smooth_nr: numerator smoothing (≥ 0).
        smooth_dr: denominator smoothing (≥ 0).
        batch: pool the sums over the batch.
        ignore_index: class index that counts nowhere (index targets).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: check label range and target values (host syncs).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import generalized_dice_loss
        >>> logits = torch.tensor([[[[4.0, -4.0]], [[-4.0, 4.0]]]])
        >>> generalized_dice_loss(logits, torch.tensor([[[0, 1]]]))
        tensor(0.0003)
    """
    check_reduction(reduction)
    return _gdl_impl(
        input,
        target,
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        w_type=w_type,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        ignore_index=ignore_index,
        validate_args=validate_args,
    ).reduce(reduction)


@register_loss("generalized_dice", aliases=("generalized_dice_loss", "gdl"))
class GeneralizedDiceLoss(DenseLoss):
    r"""Generalized Dice loss (inverse-volume class weights), with MONAI's arguments.

    See [generalized_dice_loss][lightning_losses.functional.generalized_dice_loss].

    Paper: *Generalised Dice overlap as a deep learning loss function for highly unbalanced
    segmentations*, Sudre et al., DLMIA 2017 (arXiv:1707.03237).

    Args:
        include_background: score channel 0.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation per channel.
        softmax: softmax over channels; `None` = softmax if `C > 1`, else sigmoid.
        w_type: `"square" | "simple" | "uniform"`.
        smooth_nr: numerator smoothing.
        smooth_dr: denominator smoothing.
        batch: pool the sums over the batch.
        ignore_index: class index that counts nowhere.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices or `[N, C, *]` one-hot.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import GeneralizedDiceLoss
        >>> target = torch.zeros(1, 2, 2).long()
        >>> GeneralizedDiceLoss(w_type="simple")(torch.zeros(1, 2, 2, 2), target)
        tensor(0.5000)
    """

    functional = staticmethod(generalized_dice_loss)
    impl = staticmethod(_gdl_impl)

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool | None = None,
        w_type: str = "square",
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        ignore_index: int | None = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_gdl_args(
                include_background=include_background,
                to_onehot_y=to_onehot_y,
                sigmoid=sigmoid,
                softmax=softmax,
                w_type=w_type,
                smooth_nr=smooth_nr,
                smooth_dr=smooth_dr,
                batch=batch,
                ignore_index=ignore_index,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against `target [N, *]` (indices) or `[N, C, *]`."""
        return self._call_functional(input, target)


# -- Tversky ---------------------------------------------------------------------------------------


def _check_tversky_args(
    *,
    include_background: Any,
    to_onehot_y: Any,
    sigmoid: Any,
    softmax: Any,
    alpha: Any,
    beta: Any,
    smooth_nr: Any,
    smooth_dr: Any,
    batch: Any,
    ignore_index: Any,
    ignore_empty: Any,
    per_class: Any,
) -> dict[str, Any]:
    return {
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
        "alpha": check_number("alpha", alpha, low=0.0),
        "beta": check_number("beta", beta, low=0.0),
        "per_class": check_bool("per_class", per_class),
    }


def _tversky_impl(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    ignore_index: int | None = -100,
    ignore_empty: bool = False,
    per_class: bool = False,
    validate_args: bool = True,
) -> DenseResult:
    hp = _check_tversky_args(
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        alpha=alpha,
        beta=beta,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        ignore_index=ignore_index,
        ignore_empty=ignore_empty,
        per_class=per_class,
    )
    b = prepare_dense_options(input, target, hp, validate_args)
    tp, pred, ground = scored_class_sums(
        b, include_background=hp["include_background"], pool=hp["batch"]
    )
    fp, fn = pred - tp, ground - tp
    den = tp + hp["alpha"] * fp + hp["beta"] * fn + hp["smooth_dr"]
    f = 1 - (tp + hp["smooth_nr"]) / den
    return finish_dense(
        f,
        n=b.logits.shape[0],
        ground=ground,
        batch=hp["batch"],
        ignore_empty=hp["ignore_empty"],
        per_class=hp["per_class"],
        sample_valid=b.sample_valid,
    )


def tversky_loss(
    input: Tensor,
    target: Tensor,
    *,
    include_background: bool = True,
    to_onehot_y: bool = False,
    sigmoid: bool = False,
    softmax: bool | None = None,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
    ignore_index: int | None = -100,
    ignore_empty: bool = False,
    per_class: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Tversky loss: Dice with separate weights on false positives and false negatives.

    $$
    \ell_{n,c} = 1 - \frac{TP + \epsilon_n}{TP + \alpha\,FP + \beta\,FN + \epsilon_d},\quad
    TP = \sum p\,g,\ FP = \sum p\,(1-g),\ FN = \sum (1-p)\,g
    $$

    averaged over the classes of each image. $\alpha = \beta = 0.5$ is the Dice loss (with
    `smooth_nr`/`smooth_dr` halved); $\beta > \alpha$ penalises missed foreground more, which
    favours recall on small structures.

    **MONAI parity.** Same values and gradients as `monai.losses.TverskyLoss` with the same
    arguments, with the activation, target, `reduction` and `ignore_index` differences of
    [dice_loss][lightning_losses.functional.dice_loss] (MONAI's `"none"` is `[N, C]`: ours
    with `per_class=True`).

    Paper: *Tversky loss function for image segmentation using 3D fully convolutional deep
    networks*, Salehi et al., MLMI 2017 (arXiv:1706.05721).

    Args:
        input: logits `[N, C, *spatial]`.
        target: class indices `[N, *]` / `[N, 1, *]`, or one-hot / soft `[N, C, *]`.
        include_background: score channel 0.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation per channel.
        softmax: softmax over channels; `None` = softmax if `C > 1`, else sigmoid.
        alpha: weight of false positives (≥ 0).
        beta: weight of false negatives (≥ 0).
        smooth_nr: numerator smoothing (≥ 0).
        smooth_dr: denominator smoothing (≥ 0).
        batch: pool the sums over the batch.
        ignore_index: class index that counts nowhere (index targets).
        ignore_empty: leave empty ground-truth classes out of the class mean.
        per_class: `reduction="none"` returns `[N, C]`.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check label range and target values (host syncs).

    Returns:
        The reduced loss, `[N]` with `reduction="none"`, or `[N, C]` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import tversky_loss
        >>> probs = torch.tensor([[[[1.0, 1.0, 0.0]]]])  # [N=1, C=1, 1, 3], one false positive
        >>> tversky_loss(probs, torch.tensor([[[1, 0, 0]]]), softmax=False, alpha=0.7, beta=0.3)
        tensor(0.4118)
    """
    check_reduction(reduction)
    return _tversky_impl(
        input,
        target,
        include_background=include_background,
        to_onehot_y=to_onehot_y,
        sigmoid=sigmoid,
        softmax=softmax,
        alpha=alpha,
        beta=beta,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        ignore_index=ignore_index,
        ignore_empty=ignore_empty,
        per_class=per_class,
        validate_args=validate_args,
    ).reduce(reduction)


@register_loss("tversky", aliases=("tversky_loss",))
class TverskyLoss(DenseLoss):
    r"""Tversky loss, $1 - TP/(TP + \alpha FP + \beta FN)$, with MONAI's arguments.

    See [tversky_loss][lightning_losses.functional.tversky_loss].

    Paper: *Tversky loss function for image segmentation using 3D fully convolutional deep
    networks*, Salehi et al., MLMI 2017 (arXiv:1706.05721).

    Args:
        include_background: score channel 0.
        to_onehot_y: read a float `[N, 1, *]` target as class indices.
        sigmoid: sigmoid activation per channel.
        softmax: softmax over channels; `None` = softmax if `C > 1`, else sigmoid.
        alpha: weight of false positives.
        beta: weight of false negatives.
        smooth_nr: numerator smoothing.
        smooth_dr: denominator smoothing.
        batch: pool the sums over the batch.
        ignore_index: class index that counts nowhere.
        ignore_empty: leave empty ground-truth classes out of the class mean.
        per_class: `reduction="none"` returns `[N, C]`.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices or `[N, C, *]` one-hot.
        - output: scalar, `[N]` with `reduction="none"`, `[N, C]` with `per_class=True`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import TverskyLoss
        >>> probs = torch.tensor([[[[0.9, 0.8, 0.1]]]])  # [N=1, C=1, 1, 3]
        >>> target = torch.tensor([[[1, 1, 1]]])  # 1 - 1.8 / (1.8 + 0.7 · 1.2)
        >>> TverskyLoss(softmax=False, alpha=0.3, beta=0.7)(probs, target)
        tensor(0.3182)
    """

    functional = staticmethod(tversky_loss)
    impl = staticmethod(_tversky_impl)

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool = False,
        sigmoid: bool = False,
        softmax: bool | None = None,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        ignore_index: int | None = -100,
        ignore_empty: bool = False,
        per_class: bool = False,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_tversky_args(
                include_background=include_background,
                to_onehot_y=to_onehot_y,
                sigmoid=sigmoid,
                softmax=softmax,
                alpha=alpha,
                beta=beta,
                smooth_nr=smooth_nr,
                smooth_dr=smooth_dr,
                batch=batch,
                ignore_index=ignore_index,
                ignore_empty=ignore_empty,
                per_class=per_class,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against `target [N, *]` (indices) or `[N, C, *]`."""
        return self._call_functional(input, target)
