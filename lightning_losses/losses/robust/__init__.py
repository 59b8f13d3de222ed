r"""Family A · label-noise-robust classification losses, one loss per module.

GCE, comp-sum, normalized CE / focal, reverse CE, probability MAE, symmetric CE,
Active-Passive Loss and LDR-KL. Each computes $\log p_y$ through the one shared helper
`ClassificationBatch.log_p_target`.
"""

from lightning_losses.losses.robust.active_passive import ActivePassiveLoss, active_passive_loss
from lightning_losses.losses.robust.comp_sum import CompSumLoss, comp_sum_loss
from lightning_losses.losses.robust.generalized_ce import (
    GeneralizedCrossEntropyLoss,
    generalized_cross_entropy,
)
from lightning_losses.losses.robust.ldr_kl import LDRKLLoss, ldr_kl_loss
from lightning_losses.losses.robust.normalized_ce import (
    NormalizedCrossEntropyLoss,
    normalized_cross_entropy,
)
from lightning_losses.losses.robust.normalized_focal import (
    NormalizedFocalLoss,
    normalized_focal_loss,
)
from lightning_losses.losses.robust.prob_mae import MeanAbsoluteErrorLoss, mean_absolute_error_loss
from lightning_losses.losses.robust.reverse_ce import ReverseCrossEntropyLoss, reverse_cross_entropy
from lightning_losses.losses.robust.symmetric_ce import (
    SymmetricCrossEntropyLoss,
    symmetric_cross_entropy,
)

__all__ = [
    "ActivePassiveLoss",
    "CompSumLoss",
    "GeneralizedCrossEntropyLoss",
    "LDRKLLoss",
    "MeanAbsoluteErrorLoss",
    "NormalizedCrossEntropyLoss",
    "NormalizedFocalLoss",
    "ReverseCrossEntropyLoss",
    "SymmetricCrossEntropyLoss",
    "active_passive_loss",
    "comp_sum_loss",
    "generalized_cross_entropy",
    "ldr_kl_loss",
    "mean_absolute_error_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "reverse_cross_entropy",
    "symmetric_cross_entropy",
]
