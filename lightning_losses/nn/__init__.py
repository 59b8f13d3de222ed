"""Modules the behaviours and recipes need (recommendation models, ...)."""

from lightning_losses.nn.backbones import build_backbone
from lightning_losses.nn.causal_lm import build_causal_lm
from lightning_losses.nn.elle import ElleAdaptiveWeight, elle_loss, elle_points
from lightning_losses.nn.grad_cache import grad_cache_loss
from lightning_losses.nn.mae import MaskedAutoencoder
from lightning_losses.nn.mae_metrics import pairwise_ranking_accuracy
from lightning_losses.nn.moe import (
    BalanceState,
    ExpertLoad,
    MoEFeedForward,
    RouterOutput,
    TopKRouter,
    build_moe_llama,
    collect_balance_loss,
    moe_balance_state,
    moe_token_mask,
    track_expert_load,
)
from lightning_losses.nn.patches import masked_rows, num_masked, patchify, random_patch_mask
from lightning_losses.nn.rationale import (
    RationaleInvariance,
    rationale_invariance_loss,
    rationales,
)
from lightning_losses.nn.recsys import LightGCN, MatrixFactorization, normalized_adjacency
from lightning_losses.nn.vat import frozen_batchnorm_stats, vat_direction, vat_loss

__all__ = [
    "BalanceState",
    "ElleAdaptiveWeight",
    "ExpertLoad",
    "LightGCN",
    "MaskedAutoencoder",
    "MatrixFactorization",
    "MoEFeedForward",
    "RationaleInvariance",
    "RouterOutput",
    "TopKRouter",
    "build_backbone",
    "build_causal_lm",
    "build_moe_llama",
    "collect_balance_loss",
    "elle_loss",
    "elle_points",
    "frozen_batchnorm_stats",
    "grad_cache_loss",
    "masked_rows",
    "moe_balance_state",
    "moe_token_mask",
    "normalized_adjacency",
    "num_masked",
    "pairwise_ranking_accuracy",
    "patchify",
    "random_patch_mask",
    "rationale_invariance_loss",
    "rationales",
    "track_expert_load",
    "vat_direction",
    "vat_loss",
]
