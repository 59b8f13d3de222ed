"""Family F · language-model losses. Logits put the vocabulary at dimension 1 (`[N, V, *]`), as
every loss of the catalog and `F.cross_entropy` do; the chunked linear cross-entropy takes the
LM head's hidden states `[N, H]` / `[B, T, H]` and weight `[V, H]` instead of logits."""

from lightning_losses.losses.language.chunked_ce import (
    ChunkedLinearCrossEntropyLoss,
    chunked_linear_cross_entropy,
)
from lightning_losses.losses.language.fused_ce import (
    CrossEntropyWithZLoss,
    LMLossOutput,
    cross_entropy_with_z_loss,
)
from lightning_losses.losses.language.zloss import ZLoss, z_loss

__all__ = [
    "ChunkedLinearCrossEntropyLoss",
    "CrossEntropyWithZLoss",
    "LMLossOutput",
    "ZLoss",
    "chunked_linear_cross_entropy",
    "cross_entropy_with_z_loss",
    "z_loss",
]
