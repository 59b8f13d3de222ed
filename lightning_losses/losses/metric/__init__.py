"""Family B · metric-learning losses: pair and triplet losses over embeddings + labels, and
margin-softmax losses with learnable class centres (proxies)."""

__all__: list[str] = []
