"""Dense (segmentation) plumbing shared by the Dice family.

`prepare_dense` validates logits `[N, C, *spatial]` against class indices (`[N, *]` or MONAI's
`[N, 1, *]`) or one-hot / soft targets (`[N, C, *]`) and masks ignored pixels. `class_sums`
returns the per-sample, per-class sums every Dice-like loss is made of (intersection,
prediction mass, ground-truth mass) *without* a one-hot copy of index targets: a custom
autograd function gathers and scatters by class index and saves only a compact copy of the
indices (one byte per pixel for up to 254 classes). `finish_dense` applies the class weight,
`ignore_empty`, the per-image / per-batch choice and the reduction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.validation import (
    check_bool,
    check_class_indices,
    check_ignore_index,
    check_number,
    check_probability_target,
    check_tensor,
)


def check_optional_bool(name: str, value: Any) -> bool | None:
    """`None` (automatic) or a real bool."""
    return None if value is None else check_bool(name, value)


def check_dense_common(
    *,
    include_background: Any,
    to_onehot_y: Any,
    sigmoid: Any,
    softmax: Any,
    smooth_nr: Any,
    smooth_dr: Any,
    batch: Any,
    ignore_index: Any,
    ignore_empty: Any,
) -> dict[str, Any]:
    """The one checker of the options every dense loss shares (MONAI's vocabulary)."""
    sigmoid = check_bool("sigmoid", sigmoid)
    softmax = check_optional_bool("softmax", softmax)
    if sigmoid and softmax:
        raise ValueError(
            "sigmoid and softmax are mutually exclusive, got sigmoid=True and softmax=True"
        )
    return {
        "include_background": check_bool("include_background", include_background),
        "to_onehot_y": check_bool("to_onehot_y", to_onehot_y),
        "sigmoid": sigmoid,
        "softmax": softmax,
        "smooth_nr": check_number("smooth_nr", smooth_nr, low=0.0),
        "smooth_dr": check_number("smooth_dr", smooth_dr, low=0.0),
        "batch": check_bool("batch", batch),
        "ignore_index": check_ignore_index(ignore_index),
        "ignore_empty": check_bool("ignore_empty", ignore_empty),
    }


def check_dense_weight(weight: Any, name: str = "weight") -> Tensor | None:
    """A per-class weight: `None` or a 1-D floating `[C]` tensor of non-negative values."""
    if weight is None:
        return None
    check_tensor(name, weight, floating=True)
    if weight.ndim != 1:
        raise ValueError(f"{name} must be a 1-D [C] tensor, got shape {tuple(weight.shape)}")
    if bool((weight < 0).any()):
        raise ValueError(f"{name} must be ≥ 0, got {weight.tolist()}")
    return weight


@dataclass
class DenseBatch:
    """Validated dense inputs, flattened to `[N, C, S]` (S = number of pixels / voxels).

    `code` (index targets) holds, per pixel, the channel that is positive (`0..C-1`), `C` when
    no channel is (the background of a single-channel binary task), `C + 1` when the pixel is
    ignored. `target` (one-hot / soft targets) is `[N, C, S]`. `valid` `[N, S]` marks counted
    pixels (`None`: all), `labels` `[N, S]` are safe class indices for cross-entropy.
    """

    logits: Tensor
    probs: Tensor | None  # the activated prediction (dense targets; index targets: `None`)
    code: Tensor | None
    target: Tensor | None
    valid: Tensor | None
    labels: Tensor | None
    num_classes: int
    act: str  # "softmax" | "sigmoid" | "none"

    @property
    def sample_valid(self) -> Tensor | None:
        """`[N]`: the samples with at least one counted pixel (`None`: all)."""
        return None if self.valid is None else self.valid.any(1)

    def binary_target(self) -> Tensor:
        """`[N, 1, S]` float foreground of a single-channel task (index or dense target)."""
        if self.target is not None:
            return self.target
        assert self.code is not None
        return (self.code == 0).to(self.logits.dtype)[:, None]


def _activation(num_classes: int, sigmoid: bool, softmax: bool | None) -> str:
    if sigmoid:
        return "sigmoid"
    if softmax is None:
        return "softmax" if num_classes > 1 else "sigmoid"
    if softmax:
        if num_classes == 1:
            raise ValueError(
                "softmax=True needs input with C > 1 channels (a softmax over one channel is "
                "constant 1); use sigmoid=True for a single-channel binary task"
            )
        return "softmax"
    return "none"


def prepare_dense_options(
    input: Tensor, target: Tensor, options: Mapping[str, Any], validate_args: bool
) -> DenseBatch:
    """`prepare_dense` with the activation and target options of a loss's checked arguments."""
    return prepare_dense(
        input,
        target,
        sigmoid=options["sigmoid"],
        softmax=options["softmax"],
        to_onehot_y=options["to_onehot_y"],
        ignore_index=options["ignore_index"],
        validate_args=validate_args,
    )


def prepare_dense(
    input: Tensor,
    target: Tensor,
    *,
    sigmoid: bool,
    softmax: bool | None,
    to_onehot_y: bool,
    ignore_index: int | None,
    validate_args: bool,
) -> DenseBatch:
    """Validate logits `[N, C, *]` and the target; activate; mask ignored pixels."""
    check_tensor("input", input, floating=True)
    check_tensor("target", target)
    if input.ndim < 3:
        raise ValueError(
            f"input must have shape [N, C, *spatial] (logits with at least one spatial dim), "
            f"got {tuple(input.shape)}"
        )
    n, c = input.shape[:2]
    spatial = tuple(input.shape[2:])
    if c < 1:
        raise ValueError(f"input must have at least one channel, got shape {tuple(input.shape)}")
    x = upcast(input).reshape(n, c, -1)
    act = _activation(c, sigmoid, softmax)

    dense_target = target.ndim == input.ndim and target.shape[1] == c and not to_onehot_y
    if dense_target and (target.is_floating_point() or c > 1):
        if target.shape != input.shape:
            raise ValueError(
                f"target must have the shape of input {tuple(input.shape)} (one-hot / soft), "
                f"or [N, *] = {(n, *spatial)} (class indices), got {tuple(target.shape)}"
            )
        check_probability_target("target", target, validate_args=validate_args)
        t = target.to(x.dtype).reshape(n, c, -1)
        probs = _activate(x, act)
        return DenseBatch(x, probs, None, t, None, None, c, act)

    # Class indices: [N, *spatial] or MONAI's [N, 1, *spatial].
    if target.ndim == input.ndim and target.shape[1] == 1:
        labels = target[:, 0]
    elif target.ndim == input.ndim - 1:
        labels = target
    else:
        raise ValueError(
            f"target must have shape [N, *] = {(n, *spatial)} or [N, 1, *] (class indices) or "
            f"{tuple(input.shape)} (one-hot / soft), got {tuple(target.shape)}"
        )
    if tuple(labels.shape) != (n, *spatial):
        raise ValueError(
            f"target must have shape [N, *] = {(n, *spatial)} to match input "
            f"{tuple(input.shape)}, got {tuple(target.shape)}"
        )
    if labels.is_floating_point():
        if not to_onehot_y:
            raise TypeError(
                f"target of shape {tuple(target.shape)} must hold integer class indices "
                f"(got dtype {labels.dtype}); pass to_onehot_y=True for float-coded indices"
            )
        if validate_args and bool((labels != labels.round()).any()):
            raise ValueError("target must hold whole-number class indices with to_onehot_y=True")
        labels = labels.round()
    # A single channel is a binary task: label 1 is its foreground, 0 the background.
    safe, valid, any_ignored = check_class_indices(
        labels,
        max(c, 2),
        ignore_index=ignore_index,
        name="target",
        validate_args=validate_args,
    )
    safe = safe.reshape(n, -1)
    valid = valid.reshape(n, -1)
    code = torch.where(safe == 1, 0, 1) if c == 1 else safe
    if any_ignored:
        code = torch.where(valid, code, c + 1)
    if any_ignored:
        # Masked *before* the activation: an ignored pixel's NaN/inf logits never reach the
        # value or the gradient (0 · NaN would be NaN in the backward pass).
        x = torch.where(valid[:, None], x, x.new_zeros(()))
    probs = _activate(x, act)
    return DenseBatch(x, probs, code, None, valid if any_ignored else None, safe, c, act)


def _activate(x: Tensor, act: str) -> Tensor:
    if act == "softmax":
        return x.softmax(1)
    if act == "sigmoid":
        return torch.sigmoid(x)
    return x


def _compact(code: Tensor, num_classes: int) -> Tensor:
    # The codes span [0, C + 1]: store them in the smallest integer type that holds them.
    if num_classes + 1 <= 255:
        return code.to(torch.uint8)
    if num_classes + 1 <= 32767:
        return code.to(torch.int16)
    return code.to(torch.int32)


def bin_sums(bins: Tensor, weights: Tensor | None, size: int) -> Tensor:
    """`[size]` sums of `weights` (or counts) by bin: `bincount` eagerly, `index_add_` compiled.

    `bincount` is the faster on CPU, but its output size depends on the data (an unbacked size
    under `torch.compile`); `index_add_` into a fixed-size buffer is the same sum in one static
    graph.
    """
    if torch.compiler.is_compiling():
        values = torch.ones_like(bins, dtype=torch.float32) if weights is None else weights
        return values.new_zeros(size).index_add_(0, bins, values)
    return torch.bincount(bins, weights=weights, minlength=size)


class _IndexSums(torch.autograd.Function):
    """Per-sample, per-class `(Σ p·g, Σ p or Σ p², Σ g)` of index targets, no one-hot copy.

    Forward: a gather of each pixel's probability at its class, scattered into `[N, C]` by
    class, plus the prediction sums. Backward: `∂/∂p[n,c,s] = valid · (g_P[n,c]·(1 or 2p) +
    g_I[n,c]·[code = c])`, a broadcast copy and one scatter of one value per pixel. Saved: the
    class codes in one byte per pixel (up to 254 classes), and the probabilities with `squared`
    (the activation saves them anyway).
    """

    @staticmethod
    def forward(
        ctx: Any, probs: Tensor, code: Tensor, squared: bool, any_ignored: bool
    ) -> tuple[Tensor, ...]:
        n, c, _ = probs.shape
        zero = probs.new_zeros(())
        masked = torch.where((code <= c)[:, None], probs, zero) if any_ignored else probs
        pred = (masked * masked).sum(-1) if squared else masked.sum(-1)
        at = probs.gather(1, code.clamp(max=c - 1)[:, None]).squeeze(1)
        # Per-(sample, class) sums as one bincount over `sample * (C + 2) + code` (faster than
        # a scatter into [N, C + 2] on CPU); codes C and C + 1 land in columns that are dropped.
        bins = code + torch.arange(n, device=code.device)[:, None] * (c + 2)
        bins = bins.reshape(-1)
        inter = bin_sums(bins, at.reshape(-1), n * (c + 2))
        inter = inter.to(probs.dtype).reshape(n, c + 2)[:, :c]
        count = bin_sums(bins, None, n * (c + 2)).to(probs.dtype).reshape(n, c + 2)[:, :c]
        ctx.save_for_backward(_compact(code, c), probs if squared else None)
        ctx.squared, ctx.any_ignored = squared, any_ignored
        ctx.mark_non_differentiable(count)
        return inter, pred, count

    @staticmethod
    def backward(ctx: Any, g_inter: Tensor, g_pred: Tensor, _: Tensor) -> tuple[Any, ...]:
        code_c, probs = ctx.saved_tensors
        n, c = g_pred.shape
        code = code_c.long()
        if ctx.squared:
            grad = probs * (2 * g_pred[:, :, None])
        else:
            grad = g_pred.new_empty(n, c, code.shape[1])
            grad.copy_(g_pred[:, :, None].expand_as(grad))
        # g_I at each pixel's own class: one scatter of one value per pixel (0 without a class).
        at = torch.nn.functional.pad(g_inter, (0, 2)).gather(1, code)
        grad.scatter_add_(1, code.clamp(max=c - 1)[:, None], at[:, None])
        if ctx.any_ignored:
            grad.masked_fill_((code > c)[:, None], 0)
        return grad, None, None, None


def class_sums(batch: DenseBatch, *, squared: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """`(I, P, G)` `[N, C]`: `Σ p·g`, `Σ p` (`Σ p²` if `squared`), `Σ g` (`Σ g²`) per class."""
    if batch.code is not None:
        assert batch.probs is not None
        return _IndexSums.apply(batch.probs, batch.code, squared, batch.valid is not None)
    p = batch.probs
    assert p is not None
    t = batch.target
    assert t is not None
    inter = (p * t).sum(-1)
    if squared:
        return inter, (p * p).sum(-1), (t * t).sum(-1)
    return inter, p.sum(-1), t.sum(-1)


def select_classes(
    include_background: bool, num_classes: int, *tensors: Tensor
) -> tuple[Tensor, ...]:
    """Drop channel 0 (dim 1) when `include_background=False` and C > 1 (MONAI's rule)."""
    if include_background or num_classes == 1:
        return tensors
    return tuple(t[:, 1:] for t in tensors)


def pool_batch(batch: bool, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Sum `[N, C]` sums over the batch (`[1, C]`) for per-batch Dice."""
    if not batch:
        return tensors
    return tuple(t.sum(0, keepdim=True) for t in tensors)


def scored_class_sums(
    batch: DenseBatch, *, include_background: bool, pool: bool, squared: bool = False
) -> tuple[Tensor, ...]:
    """`(I, P, G)` of the scored classes (`select_classes`), pooled over the batch with `pool`.

    The common start of every overlap loss (Dice, generalized Dice, Tversky).
    """
    sums = class_sums(batch, squared=squared)
    return pool_batch(pool, *select_classes(include_background, batch.num_classes, *sums))


def class_weight_for(
    weight: Tensor | None, num_classes: int, like: Tensor, *, name: str = "weight"
) -> Tensor | None:
    if weight is None:
        return None
    if weight.shape != (num_classes,):
        raise ValueError(
            f"{name} must have shape [C] = ({num_classes},) (the classes that are scored; "
            f"without the background when include_background=False), got {tuple(weight.shape)}"
        )
    return weight.to(device=like.device, dtype=like.dtype)


@dataclass
class DenseResult:
    """Unreduced values (`[N]` or `[N, C]`) and the mask of those that count (`None`: all)."""

    values: Tensor
    valid: Tensor | None

    def reduce(self, reduction: str) -> Tensor:
        return reduce_loss(self.values, reduction, valid=self.valid)


def finish_dense(
    f: Tensor,
    *,
    n: int,
    ground: Tensor,
    batch: bool,
    ignore_empty: bool,
    per_class: bool,
    sample_valid: Tensor | None,
) -> DenseResult:
    """Per-(sample|batch, class) losses `f` -> `[N]` (or `[N, C]` with `per_class`) + mask.

    With `ignore_empty`, a class whose ground truth is empty in the sample (in the batch with
    `batch=True`) is left out of that sample's mean over classes; a sample whose classes are all
    empty gives 0 and does not count in the mean. A sample without any counted pixel (all
    ignored) gives 0 with zero gradient and does not count either.
    """
    valid_nc: Tensor | None = None
    if ignore_empty:
        valid_nc = ground > 0
    if batch:
        # One pooled value per class, repeated for every sample: `"mean"` is the pooled loss.
        f = f.expand(n, -1)
        if valid_nc is not None:
            valid_nc = valid_nc.expand(n, -1)
        if sample_valid is not None:
            sample_valid = sample_valid.any().expand(n)
    if sample_valid is not None:
        valid_nc = sample_valid[:, None] if valid_nc is None else valid_nc & sample_valid[:, None]
    if valid_nc is not None:
        f = torch.where(valid_nc, f, f.new_zeros(()))
    if per_class:
        mask = None if valid_nc is None else valid_nc.expand_as(f)
        return DenseResult(f, mask)
    if valid_nc is None:
        return DenseResult(f.mean(1), None)
    count = valid_nc.expand_as(f).sum(1)
    values = f.sum(1) / count.clamp_min(1).to(f.dtype)
    return DenseResult(values, count > 0)


class DenseLoss(Loss):
    """Base of the dense losses: `reduction="none"` is one value per sample (or sample, class).

    A subclass sets `impl`, the functional's body without the reduction (it returns a
    `DenseResult`). `element_mask` says which unreduced values count: not a sample whose pixels
    are all ignored, nor (with `ignore_empty`) a class whose ground truth is empty.
    """

    input_kind = InputKind.DENSE
    impl: ClassVar[Callable[..., DenseResult] | None] = None

    def element_mask(self, *args: Any, **kwargs: Any) -> Tensor | None:
        impl = type(self).impl
        if impl is None:
            return None
        with torch.no_grad():
            result = impl(*args, **kwargs, **self.hparams, validate_args=self.validate_args)
        return result.valid
