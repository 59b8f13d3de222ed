"""Modules the behaviours and recipes need (recommendation models, ...)."""

from lightning_losses.nn.recsys import LightGCN, MatrixFactorization, normalized_adjacency

__all__ = ["LightGCN", "MatrixFactorization", "normalized_adjacency"]
