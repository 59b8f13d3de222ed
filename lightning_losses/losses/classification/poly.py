r"""Poly-1 / Poly-N loss: cross-entropy plus polynomial terms in $(1 - p_t)$.

From *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*, Leng et
al., ICLR 2022 (arXiv:2204.12511). The sigmoid Poly-1 focal loss lives in `focal.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.classification.ce import (
    _check_cross_entropy_args,
    cross_entropy_rows,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = ["PolyLoss", "poly_loss"]


def _check_epsilon(epsilon: Any) -> float | tuple[float, ...]:
    """Poly-1 `epsilon` (a float) or Poly-N coefficients `(ε_1, …, ε_N)`; ε_1 ≥ -1."""
    if isinstance(epsilon, (list, tuple)):
        if not epsilon:
            raise ValueError("epsilon must be a float or a non-empty sequence of floats, got []")
        coeffs = tuple(check_number(f"epsilon[{j}]", e) for j, e in enumerate(epsilon))
        check_number("epsilon[0]", coeffs[0], low=-1.0)
        return coeffs
    return check_number("epsilon", epsilon, low=-1.0)


def _check_poly_args(
    *, epsilon: Any, weight: Any, ignore_index: Any, label_smoothing: Any
) -> dict[str, Any]:
    # The one validator of poly_loss's hyperparameters: the functional and PolyLoss use it.
    return {
        "epsilon": _check_epsilon(epsilon),
        **_check_cross_entropy_args(
            weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
        ),
    }


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
    validate_args: bool = True,
) -> Tensor:
    r"""Poly-1 loss: cross-entropy plus a first-order polynomial term (Poly-N with a sequence).

    $$
    \ell = \mathrm{CE}(z, t) + \epsilon\,(1 - p_t), \qquad p_t = \sum_k t_k p_k
    $$

    General Poly-N (`epsilon=(ε_1, …, ε_N)`):
    $\ell = \mathrm{CE} + \sum_{j=1}^{N} \epsilon_j (1 - p_t)^j$.

    With class indices $p_t = p_y$; with label smoothing or soft targets $t$ is the (smoothed)
    target distribution, as in the paper's reference code. With class `weight` the polynomial
    term is weighted like the CE term ($\sum_k w_k t_k$), so `epsilon=0` equals
    [cross_entropy][lightning_losses.functional.cross_entropy] exactly, weights and smoothing
    included.

    Same value and gradient as `timm.loss.PolyCrossEntropy` with the same `epsilon` and
    `smoothing` (timm defaults to `epsilon=2.0`, this function to 1.0).

    Paper: *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*,
    Leng et al., ICLR 2022 (arXiv:2204.12511).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]` or soft targets `[N, C, *]`.
        epsilon: coefficient of $(1 - p_t)$; may be negative but must be ≥ -1 so that the loss
            stays a decreasing function of $p_t$ (the paper's constraint). A sequence
            `(ε_1, …, ε_N)` gives Poly-N (only `ε_1 ≥ -1` is checked).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        label_smoothing: $\varepsilon \in [0, 1]$.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range and finiteness of `weight` (host syncs).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import poly_loss
        >>> poly_loss(torch.zeros(2, 4), torch.tensor([1, 3]), epsilon=1.0)
        tensor(2.1363)
        >>> poly_loss(torch.zeros(2, 4), torch.tensor([1, 3]), epsilon=[1.0, 0.5])  # Poly-2
        tensor(2.4175)
    """
    check_reduction(reduction)
    hp = _check_poly_args(
        epsilon=epsilon, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    eps = hp.pop("epsilon")
    coeffs = eps if isinstance(eps, tuple) else (eps,)
    smoothing = hp["label_smoothing"]
    batch, w, rows, den = cross_entropy_rows(input, target, **hp, validate_args=validate_args)
    if batch.soft is None and w is None and smoothing == 0.0:
        # Plain hard-label CE row = -log p_y: reuse it instead of a second [M, C] softmax.
        rows = rows + _poly_series(-torch.expm1(-rows), coeffs)
        return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)
    probs = batch.logits.softmax(dim=-1)
    if batch.soft is not None:
        t = batch.soft * (1.0 - smoothing) + smoothing / batch.num_classes
        p_t = (t * probs).sum(-1)
        row_w = (t * w).sum(-1) if w is not None else None
    else:
        p_y = batch.at_target(probs)
        p_t = (1.0 - smoothing) * p_y + smoothing / batch.num_classes
        # Σ_k w_k t_k for the smoothed one-hot t, as for soft targets.
        row_w = (
            (1.0 - smoothing) * w[batch.target] + smoothing * w.mean() if w is not None else None
        )
    poly = _poly_series(1.0 - p_t, coeffs)
    rows = rows + (poly * row_w if row_w is not None else poly)
    return reduce_loss(rows, reduction, valid=batch.valid, weight=den, out_shape=batch.out_shape)


@register_loss("poly", aliases=("poly1", "poly_loss"))
class PolyLoss(Loss):
    r"""Poly-1 loss, $\mathrm{CE} + \epsilon(1 - p_t)$, or Poly-N with a sequence of coefficients.

    See [poly_loss][lightning_losses.functional.poly_loss].

    Paper: *PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions*,
    Leng et al., ICLR 2022 (arXiv:2204.12511).

    Args:
        epsilon: polynomial coefficient (default 1.0; the paper's best ImageNet value was 2.0,
            which is also the default of timm's `PolyCrossEntropy`: `PolyCrossEntropy(epsilon=1.0)`
            reproduces ours), or a sequence `(ε_1, …, ε_N)` for Poly-N (stored as a tuple).
        weight: per-class weight `[C]`.
        ignore_index: target value that is ignored.
        label_smoothing: $\varepsilon \in [0, 1]$.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` indices or `[N, C, *]` soft targets.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PolyLoss
        >>> PolyLoss(epsilon=2.0)(torch.zeros(2, 4), torch.tensor([1, 3]))
        tensor(2.8863)
    """

    functional = staticmethod(poly_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        epsilon: float | Sequence[float] = 1.0,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_poly_args(
                epsilon=epsilon,
                weight=weight,
                ignore_index=ignore_index,
                label_smoothing=label_smoothing,
            ),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]`, class indices `target [N, *]` or soft `[N, C, *]`."""
        return self._call_functional(input, target)
