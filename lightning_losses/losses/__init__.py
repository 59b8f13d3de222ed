"""Every loss module of the catalog, one file per family (functional forms in the same file).

Importing this package registers every loss with :mod:`lightning_losses.registry`.
"""

from lightning_losses.losses.base import Loss
from lightning_losses.losses.calibration import DualFocalLoss, EncouragingLoss
from lightning_losses.losses.classification import (
    CrossEntropyLoss,
    FocalLoss,
    LabelSmoothingCrossEntropy,
    LogitAdjustedLoss,
    OneVsRestLoss,
    PolyFocalLoss,
    PolyLoss,
    SigmoidFocalLoss,
    SphericalZLoss,
    SquentropyLoss,
    StableMaxCrossEntropy,
)
from lightning_losses.losses.language import ZLoss
from lightning_losses.losses.ranking import (
    BinaryCrossEntropyRecLoss,
    BPRLoss,
    CosineContrastiveLoss,
    SampledSoftmaxLoss,
)
from lightning_losses.losses.robust import (
    ActivePassiveLoss,
    CompSumLoss,
    GeneralizedCrossEntropy,
    LDRKLLoss,
    MeanAbsoluteErrorLoss,
    NormalizedCrossEntropy,
    NormalizedFocalLoss,
    ReverseCrossEntropy,
    SymmetricCrossEntropy,
)
from lightning_losses.losses.utils import class_balanced_weights

__all__ = [
    "ActivePassiveLoss",
    "BPRLoss",
    "BinaryCrossEntropyRecLoss",
    "CompSumLoss",
    "CosineContrastiveLoss",
    "CrossEntropyLoss",
    "DualFocalLoss",
    "EncouragingLoss",
    "FocalLoss",
    "GeneralizedCrossEntropy",
    "LDRKLLoss",
    "LabelSmoothingCrossEntropy",
    "LogitAdjustedLoss",
    "Loss",
    "MeanAbsoluteErrorLoss",
    "NormalizedCrossEntropy",
    "NormalizedFocalLoss",
    "OneVsRestLoss",
    "PolyFocalLoss",
    "PolyLoss",
    "ReverseCrossEntropy",
    "SampledSoftmaxLoss",
    "SigmoidFocalLoss",
    "SphericalZLoss",
    "SquentropyLoss",
    "StableMaxCrossEntropy",
    "SymmetricCrossEntropy",
    "ZLoss",
    "class_balanced_weights",
]
