"""Modules the behaviours and recipes need (recommendation models, ...)."""

from lightning_losses.nn.mae import MaskedAutoencoder
from lightning_losses.nn.moe import (
    BalanceState,
    ExpertLoad,
    MoEFeedForward,
    RouterOutput,
    TopKRouter,
    build_moe_llama,
    collect_balance_loss,
    load_balancing_loss,
    moe_balance_state,
    moe_token_mask,
    track_expert_load,
)
from lightning_losses.nn.recsys import LightGCN, MatrixFactorization, normalized_adjacency

__all__ = [
    "BalanceState",
    "ExpertLoad",
    "LightGCN",
    "MaskedAutoencoder",
    "MatrixFactorization",
    "MoEFeedForward",
    "RouterOutput",
    "TopKRouter",
    "build_moe_llama",
    "collect_balance_loss",
    "load_balancing_loss",
    "moe_balance_state",
    "moe_token_mask",
    "normalized_adjacency",
    "track_expert_load",
]
