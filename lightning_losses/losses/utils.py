"""Helpers that produce loss arguments rather than losses: class-balanced ``weight`` vectors.

Paper:
    Class-Balanced Loss Based on Effective Number of Samples (Cui et al., CVPR 2019,
    arXiv:1901.05555) — the effective-number weights; inverse and inverse-square-root frequency
    weights are the classic baselines (used e.g. in the class-imbalance study of code-comment
    classification, CATALOG A23).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_losses.losses._validation import check_choice, check_number

__all__ = ["class_balanced_weights"]

WEIGHT_MODES = ("inverse", "sqrt", "effective")


def class_balanced_weights(
    counts: Tensor | Sequence[int],
    *,
    mode: str = "inverse",
    beta: float = 0.999,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""Per-class weights from class counts, normalised so that :math:`\sum_c w_c = C`.

    .. math::
        w_c \propto \frac{1}{n_c}\ (\text{inverse}),\quad
        \frac{1}{\sqrt{n_c}}\ (\text{sqrt}),\quad
        \frac{1-\beta}{1-\beta^{n_c}}\ (\text{effective number})

    Pass the result as ``weight=`` to :class:`~lightning_losses.losses.CrossEntropyLoss`,
    :class:`~lightning_losses.losses.PolyLoss`, ``torch.nn.functional.cross_entropy``, ...
    Uniform counts give all ones. Effective-number weights interpolate between no reweighting
    (:math:`\beta \to 0`) and inverse frequency (:math:`\beta \to 1`).

    Paper: *Class-Balanced Loss Based on Effective Number of Samples*, Cui et al., CVPR 2019
    (arXiv:1901.05555).

    Args:
        counts: ``[C]`` number of training samples per class (all ≥ 1).
        mode: ``"inverse"`` (default), ``"sqrt"`` or ``"effective"``.
        beta: :math:`\beta \in [0, 1)` for ``mode="effective"`` (default 0.999).
        dtype: floating dtype of the result.

    Example:
        >>> from lightning_losses.losses.utils import class_balanced_weights
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
    elif mode == "sqrt":
        w = n.rsqrt()
    else:
        # (1 - β) / (1 - β^n); -expm1(n log β) = 1 - β^n without cancellation for β near 1.
        w = (1.0 - beta) / -torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64)))
        if beta == 0.0:
            w = torch.ones_like(n)
    return (w * (n.numel() / w.sum())).to(dtype)
