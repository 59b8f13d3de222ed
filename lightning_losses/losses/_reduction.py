"""The one reduction used by every loss: ``none`` / ``sum`` / ``mean`` over valid rows."""

from __future__ import annotations

import torch
from torch import Tensor


def reduce_loss(
    loss: Tensor,
    reduction: str,
    *,
    valid: Tensor | None = None,
    weight: Tensor | None = None,
    out_shape: torch.Size | None = None,
) -> Tensor:
    """Reduce row losses ``[M]``.

    Ignored rows (``valid == False``) are set to exactly 0 (``torch.where``, so a non-finite value
    computed for an ignored row never leaks) and excluded from the ``mean`` denominator.
    ``weight`` is the per-row weight the caller has *already multiplied into* ``loss`` (e.g. the
    class weight of each row's label); ``mean`` then divides by the summed weight of valid rows,
    as ``torch.nn.functional.cross_entropy`` does. A mean over zero valid rows is 0, not NaN.
    """
    if valid is not None:
        loss = torch.where(valid, loss, torch.zeros((), dtype=loss.dtype, device=loss.device))
    if reduction == "none":
        return loss.reshape(out_shape) if out_shape is not None else loss
    if reduction == "mean" and weight is None and valid is None and loss.numel():
        return loss.mean()  # one kernel and one graph node, no unused `sum`
    total = loss.sum()
    if reduction == "sum":
        return total
    if weight is not None:
        w = weight if valid is None else weight * valid
        denom = w.sum()
    elif valid is not None:
        denom = valid.sum().to(loss.dtype)
    else:
        return loss.mean() if loss.numel() else total
    return torch.where(denom > 0, total / torch.where(denom > 0, denom, 1), total * 0)
