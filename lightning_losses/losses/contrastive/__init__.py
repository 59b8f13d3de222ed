"""Family B · contrastive losses: paired views, supervised contrastive, sigmoid (SigLIP) and
retrieval-style softmax losses over embeddings, with exact multi-process gathering."""

__all__: list[str] = []
