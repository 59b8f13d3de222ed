"""Every functional loss of the catalog: ``import lightning_losses.functional as LF``.

The modules in :mod:`lightning_losses.losses` store hyperparameters and call these functions;
the math lives once, here re-exported from its family module.
"""

from lightning_losses.losses.classification import (
    cross_entropy,
    focal_loss,
    poly_loss,
    sigmoid_focal_loss,
)
from lightning_losses.losses.language import z_loss
from lightning_losses.losses.robust import (
    active_passive_loss,
    generalized_cross_entropy,
    mean_absolute_error_loss,
    normalized_cross_entropy,
    normalized_focal_loss,
    reverse_cross_entropy,
)

__all__ = [
    "active_passive_loss",
    "cross_entropy",
    "focal_loss",
    "generalized_cross_entropy",
    "mean_absolute_error_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "poly_loss",
    "reverse_cross_entropy",
    "sigmoid_focal_loss",
    "z_loss",
]
