"""Every loss module of the catalog, one file per family (functional forms in the same file).

Importing this package registers every loss with :mod:`lightning_losses.registry`.
"""

from lightning_losses.losses.base import Loss
from lightning_losses.losses.classification import (
    CrossEntropyLoss,
    FocalLoss,
    LabelSmoothingCrossEntropy,
    PolyLoss,
    SigmoidFocalLoss,
)
from lightning_losses.losses.language import ZLoss
from lightning_losses.losses.robust import (
    ActivePassiveLoss,
    GeneralizedCrossEntropy,
    MeanAbsoluteErrorLoss,
    NormalizedCrossEntropy,
    NormalizedFocalLoss,
    ReverseCrossEntropy,
)

__all__ = [
    "ActivePassiveLoss",
    "CrossEntropyLoss",
    "FocalLoss",
    "GeneralizedCrossEntropy",
    "LabelSmoothingCrossEntropy",
    "Loss",
    "MeanAbsoluteErrorLoss",
    "NormalizedCrossEntropy",
    "NormalizedFocalLoss",
    "PolyLoss",
    "ReverseCrossEntropy",
    "SigmoidFocalLoss",
    "ZLoss",
]
