"""Shared input check of the ranking losses: `pos_score [N]` against `neg_score [N] | [N, K]`."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.validation import check_tensor


def prepare_scores(
    pos_score: Tensor, neg_score: Tensor, *, as_2d: bool = True
) -> tuple[Tensor, Tensor]:
    """Validate `pos_score [N]` / `neg_score [N] | [N, K]`; return float32+ `[N]` and `[N, K]`.

    With `as_2d=False` a 1-D `neg_score` stays `[N]` (K = 1), for losses that handle it directly.

    Shape and dtype checks only (no host sync), so they run whatever `validate_args` says.
    Half / bfloat16 scores are upcast to float32 and both are promoted to a common dtype.
    """
    check_tensor("pos_score", pos_score, floating=True)
    check_tensor("neg_score", neg_score, floating=True)
    if pos_score.ndim != 1:
        raise ValueError(f"pos_score must have shape [N], got {tuple(pos_score.shape)}")
    if neg_score.ndim not in (1, 2):
        raise ValueError(f"neg_score must have shape [N] or [N, K], got {tuple(neg_score.shape)}")
    if neg_score.shape[0] != pos_score.shape[0]:
        raise ValueError(
            f"neg_score must have the batch size of pos_score ({pos_score.shape[0]}), "
            f"got shape {tuple(neg_score.shape)}"
        )
    if neg_score.ndim == 2 and neg_score.shape[1] < 1:
        raise ValueError(
            f"neg_score needs at least one negative per row, got {tuple(neg_score.shape)}"
        )
    pos = upcast(pos_score)
    neg = upcast(neg_score)
    if as_2d and neg.ndim == 1:
        neg = neg.unsqueeze(1)
    if pos.dtype != neg.dtype:
        dtype = torch.promote_types(pos.dtype, neg.dtype)
        pos, neg = pos.to(dtype), neg.to(dtype)
    return pos, neg
