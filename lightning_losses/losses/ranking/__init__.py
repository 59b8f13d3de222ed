"""Family D · ranking and recommendation losses over (user, positive item, negative items) scores.

Every loss takes the score of the observed item `pos_score [N]` and of sampled negatives
`neg_score [N, K]` (`[N]` means `K = 1`) and, with `reduction="none"`, returns one loss per
interaction `(u, i)`: the granularity PLD resampling and sample reweighting act on. There is no
class target, so these losses keep the recommendation argument names (`input_kind` is
`InputKind.RANKING`, `target_arg` is `None`).
"""

from lightning_losses.losses.ranking.bce_rec import BinaryCrossEntropyRecLoss, bce_rec_loss
from lightning_losses.losses.ranking.bpr import BPRLoss, bpr_loss
from lightning_losses.losses.ranking.cosine_contrastive import (
    CosineContrastiveLoss,
    cosine_contrastive_loss,
)
from lightning_losses.losses.ranking.sampled_softmax import (
    SampledSoftmaxLoss,
    sampled_softmax_loss,
)

__all__ = [
    "BPRLoss",
    "BinaryCrossEntropyRecLoss",
    "CosineContrastiveLoss",
    "SampledSoftmaxLoss",
    "bce_rec_loss",
    "bpr_loss",
    "cosine_contrastive_loss",
    "sampled_softmax_loss",
]
