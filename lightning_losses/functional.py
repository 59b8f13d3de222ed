"""Every functional loss of the catalog: ``import lightning_losses.functional as LF``.

The modules in :mod:`lightning_losses.losses` store hyperparameters and call these functions;
the math lives once, here re-exported from its family module.
"""

from lightning_losses.losses.calibration import dual_focal_loss, encouraging_loss
from lightning_losses.losses.classification import (
    cross_entropy,
    focal_loss,
    logit_adjusted_loss,
    one_vs_rest_loss,
    poly_focal_loss,
    poly_loss,
    sigmoid_focal_loss,
    spherical_z_loss,
    squentropy_loss,
    stablemax_cross_entropy,
)
from lightning_losses.losses.language import z_loss
from lightning_losses.losses.ranking import (
    bce_rec_loss,
    bpr_loss,
    cosine_contrastive_loss,
    sampled_softmax_loss,
)
from lightning_losses.losses.robust import (
    active_passive_loss,
    comp_sum_loss,
    generalized_cross_entropy,
    ldr_kl_loss,
    mean_absolute_error_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    reverse_cross_entropy,
    symmetric_cross_entropy,
)

__all__ = [
    "active_passive_loss",
    "bce_rec_loss",
    "bpr_loss",
    "comp_sum_loss",
    "cosine_contrastive_loss",
    "cross_entropy",
    "dual_focal_loss",
    "encouraging_loss",
    "focal_loss",
    "generalized_cross_entropy",
    "ldr_kl_loss",
    "logit_adjusted_loss",
    "mean_absolute_error_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "one_vs_rest_loss",
    "poly_focal_loss",
    "poly_loss",
    "reverse_cross_entropy",
    "sampled_softmax_loss",
    "sigmoid_focal_loss",
    "spherical_z_loss",
    "squentropy_loss",
    "stablemax_cross_entropy",
    "symmetric_cross_entropy",
    "z_loss",
]
