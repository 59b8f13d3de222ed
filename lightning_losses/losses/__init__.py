"""Every loss module of the catalog, and the base types a loss builds on.

`lightning_losses.losses` is the one public home of every loss **class** (`FocalLoss`,
`SupConLoss`, ...) and of the base types (`Loss`, `InputKind`, `EmbeddingLoss`,
`ClassCentreLoss`, ...); the loss **functions** live in [lightning_losses.functional][]. The code
is laid out in one subpackage per family (`classification`, `robust`, `calibration`, `ranking`,
`language`, `contrastive`, `metric`, `preference`, `reconstruction`, `segmentation`,
`regression`, `weak_supervision`, `audio`, `regularization`), one loss (or a tight group) per
file; the family packages are layout, not API, and re-export nothing.

Importing this package registers every built-in loss with [lightning_losses.registry][].
`tests/losses/test_public_api.py` checks that the list below holds every class that a family
module exports and every registered class.

Example:
    >>> import torch
    >>> from lightning_losses.losses import FocalLoss
    >>> FocalLoss(gamma=0.0)(torch.zeros(2, 4), torch.tensor([1, 3]))  # = cross-entropy = log 4
    tensor(1.3863)
"""

from lightning_losses.losses._embedding import DistributedSemantics, EmbeddingLoss
from lightning_losses.losses.audio.stft import MultiResolutionSTFTLoss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.calibration.dual_focal import DualFocalLoss
from lightning_losses.losses.calibration.encouraging import EncouragingLoss
from lightning_losses.losses.classification.ce import (
    CrossEntropyLoss,
    LabelSmoothingCrossEntropyLoss,
)
from lightning_losses.losses.classification.focal import FocalLoss, PolyFocalLoss, SigmoidFocalLoss
from lightning_losses.losses.classification.logit_adjusted import LogitAdjustedLoss
from lightning_losses.losses.classification.one_vs_rest import OneVsRestLoss
from lightning_losses.losses.classification.poly import PolyLoss
from lightning_losses.losses.classification.spherical_z import SphericalZLoss
from lightning_losses.losses.classification.squentropy import SquentropyLoss
from lightning_losses.losses.classification.stablemax import StableMaxCrossEntropyLoss
from lightning_losses.losses.contrastive.align_uniform import AlignmentUniformityLoss
from lightning_losses.losses.contrastive.decoupled_softmax import DecoupledSoftmaxLoss
from lightning_losses.losses.contrastive.deep_supervision import ContrastiveDeepSupervisionLoss
from lightning_losses.losses.contrastive.info_nce import InfoNCELoss, NTXentLoss
from lightning_losses.losses.contrastive.siglip import SigmoidContrastiveLoss
from lightning_losses.losses.contrastive.supcon import SupConLoss
from lightning_losses.losses.hidden_states import HiddenStatesCriterion
from lightning_losses.losses.language.chunked_ce import ChunkedLinearCrossEntropyLoss
from lightning_losses.losses.language.fused_ce import CrossEntropyWithZLoss, LMLossOutput
from lightning_losses.losses.language.load_balancing import LoadBalancingLoss
from lightning_losses.losses.language.zloss import ZLoss
from lightning_losses.losses.metric.adaface import AdaFaceLoss
from lightning_losses.losses.metric.circle import CircleLoss
from lightning_losses.losses.metric.ge2e import GE2ELoss
from lightning_losses.losses.metric.margin_softmax import (
    ArcFaceLoss,
    ClassCentreLoss,
    CosFaceLoss,
    NormalizedSoftmaxLoss,
)
from lightning_losses.losses.metric.multi_similarity import MultiSimilarityLoss
from lightning_losses.losses.metric.pair_margin import ContrastiveLoss
from lightning_losses.losses.metric.partial_fc import PartialFCLoss
from lightning_losses.losses.metric.prototypical import PrototypicalLoss
from lightning_losses.losses.metric.triplet import TripletMarginLoss
from lightning_losses.losses.preference.dpo import (
    ConservativeDPOLoss,
    DPOLoss,
    RobustDPOLoss,
    RPOLoss,
)
from lightning_losses.losses.preference.ipo import IPOLoss
from lightning_losses.losses.ranking.bce_rec import BinaryCrossEntropyRecLoss
from lightning_losses.losses.ranking.bpr import BPRLoss
from lightning_losses.losses.ranking.cosine_contrastive import CosineContrastiveLoss
from lightning_losses.losses.ranking.macro_auc import (
    PairwiseMacroAUCLoss,
    ReweightedUnivariateAUCLoss,
)
from lightning_losses.losses.ranking.sampled_softmax import SampledSoftmaxLoss
from lightning_losses.losses.reconstruction.norm_pix import NormPixLoss
from lightning_losses.losses.regression.binned import RegressionWithBinnedClassificationLoss
from lightning_losses.losses.regression.card import SignalDecayRobustLoss
from lightning_losses.losses.regression.madl import MADLLoss
from lightning_losses.losses.regression.pointwise import (
    LogCoshLoss,
    MAPELoss,
    MSLELoss,
    RMSELoss,
)
from lightning_losses.losses.regression.pseudo_huber import (
    PseudoHuberLoss,
    ScheduledPseudoHuberLoss,
)
from lightning_losses.losses.regression.quantile import (
    PinballLoss,
    QuantileCrossingPenaltyLoss,
)
from lightning_losses.losses.regularization.energy_pointing import EnergyPointingLoss
from lightning_losses.losses.robust.active_passive import ActivePassiveLoss
from lightning_losses.losses.robust.comp_sum import CompSumLoss
from lightning_losses.losses.robust.generalized_ce import GeneralizedCrossEntropyLoss
from lightning_losses.losses.robust.ldr_kl import LDRKLLoss
from lightning_losses.losses.robust.normalized_ce import NormalizedCrossEntropyLoss
from lightning_losses.losses.robust.normalized_focal import NormalizedFocalLoss
from lightning_losses.losses.robust.prob_mae import MeanAbsoluteErrorLoss
from lightning_losses.losses.robust.reverse_ce import ReverseCrossEntropyLoss
from lightning_losses.losses.robust.symmetric_ce import SymmetricCrossEntropyLoss
from lightning_losses.losses.segmentation.combined import DiceCELoss, DiceFocalLoss
from lightning_losses.losses.segmentation.deep_supervision import DeepSupervisionLoss
from lightning_losses.losses.segmentation.dice import (
    DiceLoss,
    GeneralizedDiceLoss,
    TverskyLoss,
)
from lightning_losses.losses.segmentation.mip import MaxIntensityProjectionLoss
from lightning_losses.losses.segmentation.prior_entropy import PriorEntropyMinimizationLoss
from lightning_losses.losses.utils import ClassBalancedWeights
from lightning_losses.losses.weak_supervision.aggregate import (
    BagLevelLoss,
    InstanceLevelLoss,
    InterpolatingAggregateLoss,
)
from lightning_losses.losses.weak_supervision.proportion import (
    ConfidenceIntervalProportionLoss,
    ProportionLoss,
)

__all__ = [
    "ActivePassiveLoss",
    "AdaFaceLoss",
    "AlignmentUniformityLoss",
    "ArcFaceLoss",
    "BPRLoss",
    "BagLevelLoss",
    "BinaryCrossEntropyRecLoss",
    "ChunkedLinearCrossEntropyLoss",
    "CircleLoss",
    "ClassBalancedWeights",
    "ClassCentreLoss",
    "CompSumLoss",
    "ConfidenceIntervalProportionLoss",
    "ConservativeDPOLoss",
    "ContrastiveDeepSupervisionLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "CosineContrastiveLoss",
    "CrossEntropyLoss",
    "CrossEntropyWithZLoss",
    "DPOLoss",
    "DecoupledSoftmaxLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "DistributedSemantics",
    "DualFocalLoss",
    "EmbeddingLoss",
    "EncouragingLoss",
    "EnergyPointingLoss",
    "FocalLoss",
    "GE2ELoss",
    "GeneralizedCrossEntropyLoss",
    "GeneralizedDiceLoss",
    "HiddenStatesCriterion",
    "IPOLoss",
    "InfoNCELoss",
    "InputKind",
    "InstanceLevelLoss",
    "InterpolatingAggregateLoss",
    "LDRKLLoss",
    "LMLossOutput",
    "LabelSmoothingCrossEntropyLoss",
    "LoadBalancingLoss",
    "LogCoshLoss",
    "LogitAdjustedLoss",
    "Loss",
    "MADLLoss",
    "MAPELoss",
    "MSLELoss",
    "MaxIntensityProjectionLoss",
    "MeanAbsoluteErrorLoss",
    "MultiResolutionSTFTLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "NormPixLoss",
    "NormalizedCrossEntropyLoss",
    "NormalizedFocalLoss",
    "NormalizedSoftmaxLoss",
    "OneVsRestLoss",
    "PairwiseMacroAUCLoss",
    "PartialFCLoss",
    "PinballLoss",
    "PolyFocalLoss",
    "PolyLoss",
    "PriorEntropyMinimizationLoss",
    "ProportionLoss",
    "PrototypicalLoss",
    "PseudoHuberLoss",
    "QuantileCrossingPenaltyLoss",
    "RMSELoss",
    "RPOLoss",
    "RegressionWithBinnedClassificationLoss",
    "ReverseCrossEntropyLoss",
    "ReweightedUnivariateAUCLoss",
    "RobustDPOLoss",
    "SampledSoftmaxLoss",
    "ScheduledPseudoHuberLoss",
    "SigmoidContrastiveLoss",
    "SigmoidFocalLoss",
    "SignalDecayRobustLoss",
    "SphericalZLoss",
    "SquentropyLoss",
    "StableMaxCrossEntropyLoss",
    "SupConLoss",
    "SymmetricCrossEntropyLoss",
    "TripletMarginLoss",
    "TverskyLoss",
    "ZLoss",
]
