"""Contrastive losses: paired views, supervised contrastive, sigmoid (SigLIP) and
retrieval-style softmax losses over embeddings, with exact multi-process gathering.

Every loss here subclasses [EmbeddingLoss][lightning_losses.losses.EmbeddingLoss] and declares
its distributed semantics; those with `gather_distributed=True` score local anchors against the
batch gathered from every rank, with gradients (see the contrastive catalog page). Layout only:
the classes are public in [lightning_losses.losses][], the functions in
[lightning_losses.functional][].
"""

__all__: list[str] = []
