r"""Focal losses: multi-class softmax focal, sigmoid (binary / multi-label) focal, Poly-1 focal.

Focal loss comes from *Focal Loss for Dense Object Detection* (Lin et al., ICCV 2017,
arXiv:1708.02002); the Poly-1 focal loss from *PolyLoss: A Polynomial Expansion Perspective of
Classification Loss Functions* (Leng et al., ICLR 2022, arXiv:2204.12511). The sigmoid losses take
logits and probability targets of any (equal) shape; `sigmoid_focal_loss_torchvision` keeps
`torchvision.ops.sigmoid_focal_loss`'s exact signature for drop-in use.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._classification import prepare_classification
from lightning_losses.losses._numerics import softplus_from_sigmoid, upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_class_weight,
    check_ignore_index,
    check_number,
    check_probability_target,
    check_reduction,
    check_same_shape,
    check_tensor,
    check_weight_arg,
)

__all__ = [
    "FocalLoss",
    "PolyFocalLoss",
    "SigmoidFocalLoss",
    "focal_loss",
    "poly_focal_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_torchvision",
]


# -- softmax focal ---------------------------------------------------------------------------------


def _check_focal_alpha(alpha: Any) -> float | Tensor | None:
    if alpha is None:
        return None
    if isinstance(alpha, Tensor):
        check_weight_arg(alpha, name="alpha")
        if bool((alpha < 0).any()):
            raise ValueError(
                f"alpha must be ≥ 0, got {alpha.tolist() if alpha.numel() <= 8 else alpha}"
            )
        return alpha
    return check_number("alpha", alpha, low=0.0)


def _check_focal_args(*, gamma: Any, alpha: Any, weight: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of focal_loss's hyperparameters: the functional and FocalLoss use it.
    return {
        "gamma": check_number("gamma", gamma, low=0.0),
        "alpha": _check_focal_alpha(alpha),
        "weight": check_weight_arg(weight),
        "ignore_index": check_ignore_index(ignore_index),
    }


def _alpha_vector(alpha: float | Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    if alpha is None:
        return None
    if isinstance(alpha, Tensor):
        if alpha.shape != (num_classes,):
            raise ValueError(
                f"alpha must be a float or a [C] = ({num_classes},) tensor, "
                f"got {tuple(alpha.shape)}"
            )
        return alpha.to(device=like.device, dtype=like.dtype)
    return torch.full((num_classes,), alpha, device=like.device, dtype=like.dtype)


def focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Multi-class (softmax) focal loss.

    $$
    \ell = -w_y\,\alpha_y\,(1 - p_y)^{\gamma}\,\log p_y
    $$

    `gamma=0` with `alpha=None` is cross-entropy, class `weight` included: `weight` is a class
    weight with the semantics of `torch.nn.functional.cross_entropy` (`"mean"` divides by the
    summed weight $\sum w_y$ of the counted targets). `alpha` rescales samples and is not a
    normaliser (`"mean"` divides by the number of counted targets when `weight` is `None`).

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        gamma: focusing parameter $\gamma \ge 0$.
        alpha: per-class balance `[C]` (≥ 0) or one float for every class; `None` = 1.
        weight: per-class weight `[C]` (CE semantics, see above).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range and the finiteness of `weight` (host syncs).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import focal_loss
        >>> focal_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), gamma=2.0)
        tensor(0.0018)
    """
    check_reduction(reduction)
    hp = _check_focal_args(gamma=gamma, alpha=alpha, weight=weight, ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    a = _alpha_vector(hp["alpha"], batch.num_classes, batch.logits)
    w = check_class_weight(
        hp["weight"], batch.num_classes, batch.logits, validate_args=validate_args
    )
    log_p_y = batch.log_p_target()
    # 1 - p_y from log p_y without cancellation when p_y -> 1.
    rows = -(-torch.expm1(log_p_y)).clamp_min(0).pow(hp["gamma"]) * log_p_y
    if a is not None:
        rows = rows * a[batch.target]
    den = None
    if w is not None:
        den = w[batch.target]
        rows = rows * den
    return reduce_loss(rows, reduction, valid=batch.valid, weight=den, out_shape=batch.out_shape)


@register_loss("focal", aliases=("focal_loss",))
class FocalLoss(Loss):
    r"""Multi-class softmax focal loss, $-w_y \alpha_y (1-p_y)^\gamma \log p_y$.

    See [focal_loss][lightning_losses.functional.focal_loss] for the formula and the
    normalisation. For binary / multi-label targets use
    [SigmoidFocalLoss][lightning_losses.losses.SigmoidFocalLoss].

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        gamma: focusing parameter (default 2.0).
        alpha: per-class weights `[C]` or a float; `None` disables.
        weight: per-class weight `[C]` with cross-entropy semantics.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import FocalLoss
        >>> FocalLoss(gamma=0.0)(torch.zeros(2, 4), torch.tensor([1, 3]))  # = CE = log 4
        tensor(1.3863)
        >>> FocalLoss(gamma=2.0)
        FocalLoss(gamma=2.0, alpha=None, weight=None, ignore_index=-100, reduction='mean')
    """

    functional = staticmethod(focal_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Tensor | None = None,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_focal_args(gamma=gamma, alpha=alpha, weight=weight, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)


# -- sigmoid focal and Poly-1 sigmoid focal --------------------------------------------------------


def _check_sigmoid_alpha(alpha: Any) -> float | None:
    # torchvision's convention: alpha in [0, 1] balances positives, alpha < 0 (or None) disables.
    return None if alpha is None else check_number("alpha", alpha, high=1.0)


def _check_sigmoid_focal_args(*, alpha: Any, gamma: Any) -> dict[str, Any]:
    return {"alpha": _check_sigmoid_alpha(alpha), "gamma": check_number("gamma", gamma, low=0.0)}


def _sigmoid_focal_expr(
    x: Tensor, t: Tensor, alpha: float | None, gamma: float, epsilon: float
) -> Tensor:
    """Element-wise (Poly-1) sigmoid focal loss through autograd: torchvision's arithmetic.

    The reference the fused function reproduces, and its twice-differentiable path.
    """
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    one_minus_p_t = 1 - (p * t + (1 - p) * (1 - t))
    loss = ce * one_minus_p_t.pow(gamma)
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    if epsilon:
        loss = loss + epsilon * one_minus_p_t.pow(gamma + 1.0)
    return loss


class _SigmoidFocal(torch.autograd.Function):
    r"""Fused (Poly-1) sigmoid focal loss: the value and its derivative from the same passes.

    With $p = \sigma(x)$, $q = 1 - p_t = p + t - 2pt$, $s = \partial q / \partial x =
    p(1 - p)(1 - 2t)$ and $\mathrm{BCE}' = p - t$:

    $$
    \frac{\partial \ell}{\partial x} = q^{\gamma - 1}\big[\alpha_t(\gamma\,s\,\mathrm{BCE}
    + q\,(p - t)) + \epsilon(\gamma + 1)\,q\,s\big].
    $$

    The forward computes it in place next to the value and saves only it (plus references to
    the inputs): autograd through torchvision's expression keeps about seven `[*]` tensors and
    runs some twenty element-wise passes in backward; here the backward is one multiply. For a
    scalar reduction the `1/N` of the mean is applied to the upstream scalar in backward.
    Under `create_graph=True` the backward differentiates the reference expression instead, so
    higher-order gradients are right (at autograd's cost, only then).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        t: Tensor,
        alpha: float | None,
        gamma: float,
        epsilon: float,
        reduction: str,
    ) -> Tensor:
        p = torch.sigmoid(x)
        # BCE = softplus(x) - x t, from the sigmoid already at hand: one `log` where
        # `binary_cross_entropy_with_logits` evaluates `log1p(exp(-|x|))`.
        ce = softplus_from_sigmoid(x, p).addcmul_(x, t, value=-1.0)
        q = torch.add(p, t).addcmul_(p, t, value=-2.0)  # 1 - p_t
        if gamma != int(gamma):
            q.clamp_min_(0.0)  # rounding must not hand a negative base to a fractional power
        d = torch.sub(p, t)  # d BCE / dx
        s = p.addcmul_(p, p, value=-1.0)  # p (1 - p), in p's buffer
        s.addcmul_(s, t, value=-2.0)  # · (1 - 2t) = dq/dx
        if gamma:
            d.mul_(q).addcmul_(s, ce, value=gamma)  # q (p - t) + γ s BCE
        if alpha is not None:  # α_t = (1 - α) + t (2α - 1), the balance of the focal term
            # 0-dim fills, not new_tensor: no host-to-device copy on CUDA.
            a_t = torch.lerp(q.new_full((), 1.0 - alpha), q.new_full((), alpha), t)
            d.mul_(a_t)
            ce.mul_(a_t)
        if epsilon:
            if gamma:
                d.addcmul_(q, s, value=epsilon * (gamma + 1.0))
            else:
                d.add_(s, alpha=epsilon)
            ce.add_(q, alpha=epsilon)
        if gamma and gamma != 1.0:
            # q^(γ-1); where q = 0 the bracket vanishes like q, so 0 is the limit for γ < 1.
            r = q if gamma == 2.0 else q.pow(gamma - 1.0)
            if gamma < 1.0:
                r.masked_fill_(q == 0, 0.0)
            d.mul_(r)
        if gamma:
            ce.mul_(q.pow_(gamma))  # the value: q^γ (α_t BCE + ε q)
        ctx.save_for_backward(d, x, t)
        ctx.hp = (alpha, gamma, epsilon, reduction)
        if reduction == "none":
            return ce
        total = ce.sum()
        return total / max(ce.numel(), 1) if reduction == "mean" else total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        d, x, t = ctx.saved_tensors
        alpha, gamma, epsilon, reduction = ctx.hp
        nones = (None,) * 5
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            with torch.enable_grad():
                out = reduce_loss(_sigmoid_focal_expr(x, t, alpha, gamma, epsilon), reduction)
            (g,) = torch.autograd.grad(out, x, grad, create_graph=True)
            return g, *nones
        if reduction == "mean":
            grad = grad / max(d.numel(), 1)
        return d * grad, *nones


def _sigmoid_focal_elements(
    input: Tensor,
    target: Tensor,
    alpha: float | None,
    gamma: float,
    *,
    epsilon: float = 0.0,
    reduction: str,
    validate_args: bool,
    input_name: str = "input",
    target_name: str = "target",
) -> Tensor:
    """Validated, reduced (Poly-1) sigmoid focal loss (torchvision's values and gradients)."""
    check_tensor(input_name, input, floating=True)
    check_tensor(target_name, target)
    check_same_shape(input_name, input, target_name, target)
    check_probability_target(target_name, target, validate_args=validate_args)
    x = upcast(input)
    t = target.to(x.dtype)
    if alpha is not None and alpha < 0:  # torchvision: a negative alpha disables the balance
        alpha = None
    return _SigmoidFocal.apply(x, t, alpha, gamma, epsilon, reduction)


def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Sigmoid (binary / multi-label / dense) focal loss, element-wise.

    $$
    p_t = t\,\sigma(x) + (1-t)(1-\sigma(x)),\qquad
    \alpha_t = \alpha t + (1-\alpha)(1-t),\qquad
    \ell = \alpha_t\,(1-p_t)^{\gamma}\,\mathrm{BCE}(x, t)
    $$

    The same values and gradients as `torchvision.ops.sigmoid_focal_loss`, in the house
    convention (`input`, `target`, keyword hyperparameters, default `reduction="mean"`, a mean
    over all elements). For torchvision's exact signature (`inputs`, `targets`, positional
    `alpha`/`gamma`, default `reduction="none"`) use
    [sigmoid_focal_loss_torchvision][lightning_losses.functional.sigmoid_focal_loss_torchvision].
    Half/bf16 inputs are computed in float32.

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        input: logits of any shape.
        target: targets in $[0, 1]$ (binary or soft), same shape as `input`.
        alpha: positive-class balance in $[0, 1]$; `None` or `< 0` disables it (torchvision).
        gamma: focusing parameter `≥ 0`.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per element).
        validate_args: check that `target` lies in $[0, 1]$ (a host sync).

    Returns:
        The reduced loss, or the element-wise loss (shape of `input`) with `reduction="none"`.

    Raises:
        ValueError: `target` holds a value outside $[0, 1]$ (with `validate_args`), or its
            shape differs from `input`'s.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sigmoid_focal_loss
        >>> sigmoid_focal_loss(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]), reduction="none")
        tensor([4.3322e-02, 2.7321e-05])
    """
    check_reduction(reduction)
    hp = _check_sigmoid_focal_args(alpha=alpha, gamma=gamma)
    return _sigmoid_focal_elements(
        input, target, **hp, reduction=reduction, validate_args=validate_args
    )


def sigmoid_focal_loss_torchvision(
    inputs: Tensor,
    targets: Tensor,
    alpha: float = 0.25,
    gamma: float = 2,
    reduction: str = "none",
) -> Tensor:
    r"""`torchvision.ops.sigmoid_focal_loss` with its exact signature, for drop-in replacement.

    Same arguments, defaults (`reduction="none"`) and results as torchvision's function; it calls
    [sigmoid_focal_loss][lightning_losses.functional.sigmoid_focal_loss] (so `targets` outside
    $[0, 1]$ raise a `ValueError`, where torchvision computes a meaningless value).

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        inputs: logits of any shape.
        targets: targets in $[0, 1]$ with the same shape.
        alpha: positive-class balance in $[0, 1]$, or `< 0` to disable.
        gamma: focusing parameter `≥ 0`.
        reduction: `"none" | "mean" | "sum"`.

    Returns:
        The element-wise loss, or its mean / sum.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sigmoid_focal_loss_torchvision
        >>> sigmoid_focal_loss_torchvision(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]))
        tensor([4.3322e-02, 2.7321e-05])
    """
    check_reduction(reduction)
    hp = _check_sigmoid_focal_args(alpha=alpha, gamma=gamma)
    return _sigmoid_focal_elements(
        inputs,
        targets,
        **hp,
        reduction=reduction,
        validate_args=True,
        input_name="inputs",
        target_name="targets",
    )


@register_loss("sigmoid_focal", aliases=("binary_focal",))
class SigmoidFocalLoss(Loss):
    r"""Sigmoid focal loss, $\alpha_t (1-p_t)^\gamma\,\mathrm{BCE}$, for binary / multi-label data.

    See [sigmoid_focal_loss][lightning_losses.functional.sigmoid_focal_loss].
    `reduction="none"` returns one loss per element. `torchvision.ops.sigmoid_focal_loss`
    defaults to `reduction="none"`; with `reduction="mean"` it reproduces this default.

    Paper: *Focal Loss for Dense Object Detection*, Lin et al., ICCV 2017 (arXiv:1708.02002).

    Args:
        alpha: positive-class balance in $[0, 1]$; `None` or `< 0` disables (default 0.25).
        gamma: focusing parameter (default 2.0).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that `target` lies in $[0, 1]$ on every call.

    Shape:
        - input: logits of any shape; target: the same shape, values in $[0, 1]$.
        - output: scalar, or the shape of `input` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SigmoidFocalLoss
        >>> SigmoidFocalLoss()(torch.zeros(2, 3), torch.ones(2, 3))
        tensor(0.0433)
    """

    functional = staticmethod(sigmoid_focal_loss)
    input_kind = InputKind.MULTILABEL
    target_arg = None

    def __init__(
        self,
        alpha: float | None = 0.25,
        gamma: float = 2.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_sigmoid_focal_args(alpha=alpha, gamma=gamma),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input` (any shape) against `target` in `[0, 1]`, same shape."""
        return self._call_functional(input, target)


def _check_poly_focal_args(*, epsilon: Any, alpha: Any, gamma: Any) -> dict[str, Any]:
    return {
        "epsilon": check_number("epsilon", epsilon, low=-1.0),
        **_check_sigmoid_focal_args(alpha=alpha, gamma=gamma),
    }


def poly_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Poly-1 focal loss: sigmoid focal loss plus $\epsilon (1-p_t)^{\gamma+1}$.

    $$
    \ell = \alpha_t (1-p_t)^{\gamma}\,\mathrm{BCE}(x, t) + \epsilon\,(1-p_t)^{\gamma+1},
    \qquad p_t = t\,\sigma(x) + (1-t)(1-\sigma(x))
    $$

    **`alpha` weights the focal term only.** This follows the paper: its focal Poly-1 formula
    adds $\epsilon (1-P_t)^{\gamma+1}$ to the focal loss, and its code listing applies the balance
    to the focal loss first (`FL = alpha_t * FL`) and then adds the unweighted poly term
    (`Poly1 = FL + epsilon * pow(1 - pt, gamma + 1)`). `timm.loss.PolyBinaryCrossEntropy`
    (timm 1.0) instead multiplies $\alpha_t$ into *both* terms. The two agree when the balance
    is off (`alpha=None` in both, or `alpha < 0` here) and otherwise differ by exactly the poly
    term's weight:

    $$
    \ell_{\text{ours}} - \ell_{\text{timm}} = (1 - \alpha_t)\,\epsilon\,(1-p_t)^{\gamma+1}
    $$

    (with timm's `gamma` and `epsilon` set to ours; its defaults are `gamma=0`, `epsilon=2`).
    `epsilon=0` is [sigmoid_focal_loss][lightning_losses.functional.sigmoid_focal_loss]
    exactly. The paper found $\epsilon = -1$ best for RetinaNet detection; tune it per task.

    Paper: *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*,
    Leng et al., ICLR 2022 (arXiv:2204.12511).

    Args:
        input: logits of any shape (multi-label / dense binary).
        target: targets in $[0, 1]$, same shape as `input`.
        epsilon: polynomial coefficient (default 1.0), ≥ -1.
        alpha: positive-class balance of the focal term in $[0, 1]$; `None` or `< 0` disables
            it (default 0.25).
        gamma: focusing parameter `≥ 0` (default 2.0).
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per element).
        validate_args: check that `target` lies in $[0, 1]$ (a host sync).

    Returns:
        The reduced loss, or the element-wise loss with `reduction="none"`.

    Raises:
        ValueError: `target` holds a value outside $[0, 1]$ (with `validate_args`).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import poly_focal_loss
        >>> # x=0, t=1: p_t=1/2, focal = 0.25 * 0.25 * log 2, poly = 1 * 0.5**3
        >>> poly_focal_loss(torch.zeros(1), torch.ones(1))
        tensor(0.1683)
    """
    check_reduction(reduction)
    hp = _check_poly_focal_args(epsilon=epsilon, alpha=alpha, gamma=gamma)
    return _sigmoid_focal_elements(
        input,
        target,
        hp["alpha"],
        hp["gamma"],
        epsilon=hp["epsilon"],
        reduction=reduction,
        validate_args=validate_args,
    )


@register_loss("poly_focal", aliases=("poly1_focal",))
class PolyFocalLoss(Loss):
    r"""Poly-1 sigmoid focal loss, $\mathrm{FL} + \epsilon (1-p_t)^{\gamma+1}$, `alpha` on FL only.

    See [poly_focal_loss][lightning_losses.functional.poly_focal_loss] for the formula and how it
    differs from `timm.loss.PolyBinaryCrossEntropy` when `alpha` is set. `reduction="none"`
    returns one loss per element.

    Paper: *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*,
    Leng et al., ICLR 2022 (arXiv:2204.12511).

    Args:
        epsilon: polynomial coefficient (default 1.0), ≥ -1.
        alpha: positive-class balance of the focal term in $[0, 1]$; `None` or `< 0` disables
            (default 0.25).
        gamma: focusing parameter (default 2.0).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that `target` lies in $[0, 1]$ on every call.

    Shape:
        - input: logits of any shape; target: the same shape, values in $[0, 1]$.
        - output: scalar, or the shape of `input` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PolyFocalLoss
        >>> PolyFocalLoss(epsilon=0.0)(torch.zeros(2, 3), torch.ones(2, 3))  # = sigmoid focal
        tensor(0.0433)
    """

    functional = staticmethod(poly_focal_loss)
    input_kind = InputKind.MULTILABEL
    target_arg = None

    def __init__(
        self,
        epsilon: float = 1.0,
        alpha: float | None = 0.25,
        gamma: float = 2.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_poly_focal_args(epsilon=epsilon, alpha=alpha, gamma=gamma),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input` (any shape) against `target` in `[0, 1]`, same shape."""
        return self._call_functional(input, target)
