"""Family A · classification: cross-entropy and its modern variants, one loss (or tight group) per module.

`cross_entropy` (CE, label smoothing), `poly` (Poly-1 / Poly-N), `focal` (softmax focal, sigmoid
focal, Poly-1 sigmoid focal), `squentropy`, `stablemax` (StableMax CE and `log_stablemax`),
`logit_adjusted`, `one_vs_rest` and `spherical_z`.
"""

from lightning_losses.losses.classification.ce import (
    CrossEntropyLoss,
    LabelSmoothingCrossEntropyLoss,
    cross_entropy,
)
from lightning_losses.losses.classification.focal import (
    FocalLoss,
    PolyFocalLoss,
    SigmoidFocalLoss,
    focal_loss,
    poly_focal_loss,
    sigmoid_focal_loss,
    sigmoid_focal_loss_torchvision,
)
from lightning_losses.losses.classification.logit_adjusted import (
    LogitAdjustedLoss,
    logit_adjusted_loss,
)
from lightning_losses.losses.classification.one_vs_rest import OneVsRestLoss, one_vs_rest_loss
from lightning_losses.losses.classification.poly import PolyLoss, poly_loss
from lightning_losses.losses.classification.spherical_z import SphericalZLoss, spherical_z_loss
from lightning_losses.losses.classification.squentropy import SquentropyLoss, squentropy_loss
from lightning_losses.losses.classification.stablemax import (
    StableMaxCrossEntropyLoss,
    log_stablemax,
    stablemax_cross_entropy,
)

__all__ = [
    "CrossEntropyLoss",
    "FocalLoss",
    "LabelSmoothingCrossEntropyLoss",
    "LogitAdjustedLoss",
    "OneVsRestLoss",
    "PolyFocalLoss",
    "PolyLoss",
    "SigmoidFocalLoss",
    "SphericalZLoss",
    "SquentropyLoss",
    "StableMaxCrossEntropyLoss",
    "cross_entropy",
    "focal_loss",
    "log_stablemax",
    "logit_adjusted_loss",
    "one_vs_rest_loss",
    "poly_focal_loss",
    "poly_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_torchvision",
    "spherical_z_loss",
    "squentropy_loss",
    "stablemax_cross_entropy",
]
