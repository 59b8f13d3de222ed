"""Metrics of a masked autoencoder's loss predictor: how well it ranks the patches.

The loss predictor of *Hard Patches Mining for Masked Image Modeling* (Wang et al., CVPR 2023,
arXiv:2304.05919) only has to *order* the patches by reconstruction difficulty, so it is scored
by its pairwise ranking accuracy against the true per-patch losses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_losses.nn.patches import check_patch_rows

__all__ = ["pairwise_ranking_accuracy"]


def pairwise_ranking_accuracy(pred: Tensor, target: Tensor) -> Tensor:
    """Share of each image's patch pairs (ties in `target` left out) that `pred` orders correctly.

    A pair tied in `pred` but not in `target` counts as half right, so a constant predictor
    scores 0.5.

    Args:
        pred: `[B, M]` predicted losses.
        target: `[B, M]` true losses.

    Returns:
        Scalar accuracy over all valid pairs of the batch (NaN when there is none).

    Example:
        >>> import torch
        >>> from lightning_losses.nn.mae_metrics import pairwise_ranking_accuracy
        >>> pred, target = torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[1.0, 2.0, 0.0]])
        >>> pairwise_ranking_accuracy(pred, target)
        tensor(0.3333)
    """
    pred, target = check_patch_rows(pred, target)
    dt = target.unsqueeze(1) - target.unsqueeze(2)
    dp = pred.detach().unsqueeze(1) - pred.detach().unsqueeze(2)
    valid = dt != 0
    score = torch.where(dp == 0, 0.5, ((dp > 0) == (dt > 0)).to(pred.dtype))
    return (score * valid).sum() / valid.sum().to(pred.dtype)
