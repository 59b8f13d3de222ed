"""Family F · language-model losses. Logits put the vocabulary at dimension 1 (`[N, V, *]`), as
every loss of the catalog and `F.cross_entropy` do."""

from lightning_losses.losses.language.zloss import ZLoss, z_loss

__all__ = ["ZLoss", "z_loss"]
