"""Family B · contrastive losses: paired views, supervised contrastive, sigmoid (SigLIP) and
retrieval-style softmax losses over embeddings, with exact multi-process gathering.

Every loss here subclasses `lightning_losses.losses._embedding.EmbeddingLoss` and declares its
distributed semantics; those with `gather_distributed=True` score local anchors against the
batch gathered from every rank, with gradients (docs: the contrastive catalog page).
"""

from lightning_losses.losses.contrastive.align_uniform import (
    AlignmentUniformityLoss,
    alignment_uniformity_loss,
)
from lightning_losses.losses.contrastive.decoupled_softmax import (
    DecoupledSoftmaxLoss,
    decoupled_softmax_loss,
)
from lightning_losses.losses.contrastive.info_nce import (
    InfoNCELoss,
    NTXentLoss,
    info_nce_loss,
    nt_xent_loss,
)
from lightning_losses.losses.contrastive.siglip import (
    SigmoidContrastiveLoss,
    sigmoid_contrastive_loss,
)
from lightning_losses.losses.contrastive.supcon import SupConLoss, supcon_loss

__all__ = [
    "AlignmentUniformityLoss",
    "DecoupledSoftmaxLoss",
    "InfoNCELoss",
    "NTXentLoss",
    "SigmoidContrastiveLoss",
    "SupConLoss",
    "alignment_uniformity_loss",
    "decoupled_softmax_loss",
    "info_nce_loss",
    "nt_xent_loss",
    "sigmoid_contrastive_loss",
    "supcon_loss",
]
