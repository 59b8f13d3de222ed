"""Family B · metric-learning losses: pair and triplet losses over embeddings + labels, and
margin-softmax losses with learnable class centres (proxies)."""

from lightning_losses.losses.metric.adaface import AdaFaceLoss, adaface_loss
from lightning_losses.losses.metric.circle import CircleLoss, circle_loss
from lightning_losses.losses.metric.ge2e import GE2ELoss, ge2e_loss
from lightning_losses.losses.metric.margin_softmax import (
    ArcFaceLoss,
    CosFaceLoss,
    NormalizedSoftmaxLoss,
    arcface_loss,
    cosface_loss,
    normalized_softmax_loss,
)
from lightning_losses.losses.metric.multi_similarity import (
    MultiSimilarityLoss,
    multi_similarity_loss,
)
from lightning_losses.losses.metric.pair_margin import ContrastiveLoss, contrastive_loss
from lightning_losses.losses.metric.partial_fc import PartialFCLoss, partial_fc_loss
from lightning_losses.losses.metric.prototypical import PrototypicalLoss, prototypical_loss
from lightning_losses.losses.metric.triplet import TripletMarginLoss, triplet_margin_loss

__all__ = [
    "AdaFaceLoss",
    "ArcFaceLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "GE2ELoss",
    "MultiSimilarityLoss",
    "NormalizedSoftmaxLoss",
    "PartialFCLoss",
    "PrototypicalLoss",
    "TripletMarginLoss",
    "adaface_loss",
    "arcface_loss",
    "circle_loss",
    "contrastive_loss",
    "cosface_loss",
    "ge2e_loss",
    "multi_similarity_loss",
    "normalized_softmax_loss",
    "partial_fc_loss",
    "prototypical_loss",
    "triplet_margin_loss",
]
