r"""Spherical Z-loss: a shift- and scale-invariant softplus of the standardised target logit.

From *The Z-loss: a shift and scale invariant classification loss belonging to the Spherical
Family*, de Brébisson & Vincent, 2016 (arXiv:1604.08859). Not the language-model logit z-loss
(`ZLoss`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._classification import prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_number, check_reduction

__all__ = ["SphericalZLoss", "spherical_z_loss"]

# Added to the variance: all-equal logits give z = 0, not NaN.
SPHERICAL_Z_EPS = 1e-12
# For float16 inputs the floor is float16's machine epsilon squared (σ ≥ 2^-10 ≈ 1e-3): the
# gradient scales as 1/σ (|∂ℓ/∂o| ≤ 2/σ per row), so with the float32 floor (σ ≥ 1e-6) a row of
# all-equal logits would send a ~1e6 gradient back into a float16 tensor (max 65504) as inf.
# Logits closer than that are indistinguishable in float16 at unit scale anyway.
SPHERICAL_Z_EPS_FP16 = torch.finfo(torch.float16).eps ** 2


def _check_spherical_z_args(*, a: Any, b: Any, ignore_index: Any) -> dict[str, Any]:
    return {
        "a": check_number("a", a, low=0.0, low_inclusive=False),
        "b": check_number("b", b),
        "ignore_index": check_ignore_index(ignore_index),
    }


def spherical_z_loss(
    input: Tensor,
    target: Tensor,
    *,
    a: float = 0.1,
    b: float = 10.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Z-loss of the spherical family: a softplus of the standardised target logit.

    $$
    \mu = \tfrac1C\sum_k o_k,\quad \sigma^2 = \tfrac1C\sum_k (o_k-\mu)^2,\quad
    z_y = \frac{o_y - \mu}{\sigma},\quad
    \ell = \frac1a \log\bigl(1 + e^{a (b - z_y)}\bigr)
    $$

    Invariant to shifting and (positively) scaling the logits, like rank-based metrics; not the
    same as the language-model logit z-loss [ZLoss][lightning_losses.losses.ZLoss]. The paper
    tunes `a` and `b` per task and gives no universal default; `a=0.1, b=10` are a starting
    point chosen for this library, not a paper setting. Since $z_y \le \sqrt{C-1}$, a large `b`
    keeps the loss in its near-linear regime.

    A floor is added to $\sigma^2$ so that all-equal logits give $z_y = 0$ (not NaN): $10^{-12}$,
    or $\epsilon_{16}^2 \approx 9.5 \cdot 10^{-7}$ (float16's machine epsilon squared) when
    `input` is float16. The gradient grows like $1/\sigma$, and the larger float16 floor keeps it
    inside float16's range (finite gradients at all-equal logits); it changes the value only
    for rows whose logits differ by less than float16's resolution.

    Paper: *The Z-loss: a shift and scale invariant classification loss belonging to the
    Spherical Family*, de Brébisson & Vincent, 2016 (arXiv:1604.08859).

    Args:
        input: logits `[N, C, *]` with `C ≥ 2`.
        target: class indices `[N, *]`.
        a: sharpness $a > 0$ (default 0.1).
        b: location $b$ (default 10.0).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import spherical_z_loss
        >>> # o = (1, -1): μ = 0, σ = 1, z_0 = 1, loss = softplus(1 - 1) = log 2
        >>> spherical_z_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([0]), a=1.0, b=1.0)
        tensor(0.6931)
    """
    check_reduction(reduction)
    hp = _check_spherical_z_args(a=a, b=b, ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    eps = SPHERICAL_Z_EPS_FP16 if input.dtype == torch.float16 else SPHERICAL_Z_EPS
    o = batch.logits
    centred = o - o.mean(-1, keepdim=True)
    sigma = (centred.square().mean(-1) + eps).sqrt()
    z_y = batch.at_target(centred) / sigma
    rows = F.softplus(hp["a"] * (hp["b"] - z_y)) / hp["a"]
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss("spherical_z", aliases=("spherical_z_loss",))
class SphericalZLoss(Loss):
    r"""Shift- and scale-invariant Z-loss $\frac1a\mathrm{softplus}(a(b - z_y))$.

    See [spherical_z_loss][lightning_losses.functional.spherical_z_loss] (including the
    variance floor that keeps float16 gradients finite).

    Paper: *The Z-loss: a shift and scale invariant classification loss belonging to the
    Spherical Family*, de Brébisson & Vincent, 2016 (arXiv:1604.08859).

    Args:
        a: sharpness (default 0.1).
        b: location (default 10.0).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits with `C ≥ 2`; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SphericalZLoss
        >>> loss = SphericalZLoss(a=1.0, b=1.0)
        >>> x = torch.tensor([[1.0, -1.0]])
        >>> bool(torch.isclose(loss(x, torch.tensor([0])), loss(5 * x + 3, torch.tensor([0]))))
        True
    """

    functional = staticmethod(spherical_z_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        a: float = 0.1,
        b: float = 10.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_spherical_z_args(a=a, b=b, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
