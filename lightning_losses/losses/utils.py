"""Helpers that produce loss arguments rather than losses: class-balanced `weight` vectors.

The effective-number weights come from *Class-Balanced Loss Based on Effective Number of
Samples* (Cui et al., CVPR 2019, arXiv:1901.05555); inverse and inverse-square-root frequency
weights are the classic baselines it compares with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_losses.validation import (
    check_choice,
    check_class_indices,
    check_int,
    check_number,
    check_tensor,
)

__all__ = ["ClassBalancedWeights", "class_balanced_weights"]

WEIGHT_MODES = ("inverse", "sqrt", "inverse_sqrt", "effective")


def class_balanced_weights(
    counts: Tensor | Sequence[int],
    *,
    mode: str = "inverse",
    beta: float = 0.999,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Per-class weights from class counts, normalised so that $\sum_c w_c = C$.

    $$
    w_c \propto \frac{1}{n_c}\ (\text{inverse}),\quad
    \frac{1}{\sqrt{n_c}}\ (\text{sqrt}),\quad
    \frac{1-\beta}{1-\beta^{n_c}}\ (\text{effective number})
    $$

    Pass the result as `weight=` to [CrossEntropyLoss][lightning_losses.losses.CrossEntropyLoss],
    [PolyLoss][lightning_losses.losses.PolyLoss], `torch.nn.functional.cross_entropy`, ...
    Uniform counts give all ones. Effective-number weights interpolate between no reweighting
    ($\beta \to 0$) and inverse frequency ($\beta \to 1$).

    Paper: *Class-Balanced Loss Based on Effective Number of Samples*, Cui et al., CVPR 2019
    (arXiv:1901.05555).

    Args:
        counts: `[C]` number of training samples per class (all ≥ 1).
        mode: `"inverse"` (default), `"sqrt"` (alias `"inverse_sqrt"`) or `"effective"`.
        beta: $\beta \in [0, 1)$ for `mode="effective"` (default 0.999).
        dtype: floating dtype of the result.

    Example:
        >>> from lightning_losses.functional import class_balanced_weights
        >>> class_balanced_weights([10, 30])  # ∝ (1/10, 1/30), sum = 2
        tensor([1.5000, 0.5000])
    """
    mode = check_choice("mode", mode, WEIGHT_MODES)
    beta = check_number("beta", beta, low=0.0, high=1.0, high_inclusive=False)
    n = torch.as_tensor(counts).to(torch.float64)
    if n.ndim != 1 or n.numel() == 0:
        raise ValueError(f"counts must be a non-empty 1-D [C] sequence, got shape {tuple(n.shape)}")
    if not bool(torch.isfinite(n).all()) or bool((n < 1).any()):
        raise ValueError(
            f"counts must be finite and ≥ 1 for every class (a class with no samples has no "
            f"defined weight), got {n.tolist()}"
        )
    if mode == "inverse":
        w = 1.0 / n
    elif mode in ("sqrt", "inverse_sqrt"):
        w = n.rsqrt()
    else:
        # (1 - β) / (1 - β^n); -expm1(n log β) = 1 - β^n without cancellation for β near 1.
        w = (1.0 - beta) / -torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64)))
        if beta == 0.0:
            w = torch.ones_like(n)
    return (w * (n.numel() / w.sum())).to(dtype)


class ClassBalancedWeights:
    r"""Class-balanced per-class weights as a reusable, configurable object.

    Configure once (e.g. in a YAML), then produce `weight=` for any loss from class counts or from
    the training labels. Same math as
    [class_balanced_weights][lightning_losses.functional.class_balanced_weights]:
    inverse frequency, inverse square root, or the effective number of samples
    $w_c \propto (1-\beta)/(1-\beta^{n_c})$, normalised to $\sum_c w_c = C$.

    Paper: *Class-Balanced Loss Based on Effective Number of Samples*, Cui et al., CVPR 2019
    (arXiv:1901.05555).

    Args:
        mode: `"inverse"`, `"sqrt"` / `"inverse_sqrt"` or `"effective"` (default).
        beta: $\beta \in [0, 1)$ for `mode="effective"` (default 0.999).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ClassBalancedWeights, CrossEntropyLoss
        >>> cbw = ClassBalancedWeights(mode="inverse")
        >>> cbw.from_labels(torch.tensor([0, 0, 0, 1]), num_classes=2)
        tensor([0.5000, 1.5000])
        >>> loss = CrossEntropyLoss(weight=cbw([30, 10]))
    """

    def __init__(self, mode: str = "effective", beta: float = 0.999) -> None:
        self.mode = check_choice("mode", mode, WEIGHT_MODES)
        self.beta = check_number("beta", beta, low=0.0, high=1.0, high_inclusive=False)

    def __call__(
        self, counts: Tensor | Sequence[int], dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Weights `[C]` from per-class counts `[C]` (all ≥ 1)."""
        return class_balanced_weights(counts, mode=self.mode, beta=self.beta, dtype=dtype)

    def from_labels(
        self, labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Weights `[C]` from integer training labels (every class must occur at least once)."""
        check_tensor("labels", labels, floating=False)
        num_classes = check_int("num_classes", num_classes, low=1)
        flat, _, _ = check_class_indices(labels, num_classes, ignore_index=None, name="labels")
        return self(torch.bincount(flat, minlength=num_classes), dtype=dtype)

    def __repr__(self) -> str:
        return f"ClassBalancedWeights(mode={self.mode!r}, beta={self.beta})"
