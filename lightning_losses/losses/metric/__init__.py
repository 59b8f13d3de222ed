"""Metric-learning losses: pair and triplet losses over embeddings + labels, and
margin-softmax losses with learnable class centres (proxies).

Layout only: the classes are public in [lightning_losses.losses][], the functions in
[lightning_losses.functional][].
"""

__all__: list[str] = []
