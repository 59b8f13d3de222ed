"""Callbacks for dynamic training behaviours, all built on `lightning_losses.callbacks.base`."""

from lightning_losses.callbacks.balancing import (
    LossFreeBalancing,
    MoEModel,
    balance_bias_update,
    max_violation,
)
from lightning_losses.callbacks.base import (
    BehaviourCallback,
    GradientHandler,
    LossModel,
    Role,
    SampleWeighter,
)
from lightning_losses.callbacks.bloop import Bloop, EMAGradientProjection, bloop_direction
from lightning_losses.callbacks.hpm import (
    HardPatchMining,
    HPMModel,
    HPMTeacherModel,
    hard_patch_mask,
)
from lightning_losses.callbacks.pld import PLDResampling, PLDScorer, pld_select
from lightning_losses.callbacks.reweighting import LossReweighting, loss_weights

__all__ = [
    "BehaviourCallback",
    "Bloop",
    "EMAGradientProjection",
    "GradientHandler",
    "HPMModel",
    "HPMTeacherModel",
    "HardPatchMining",
    "LossFreeBalancing",
    "LossModel",
    "LossReweighting",
    "MoEModel",
    "PLDResampling",
    "PLDScorer",
    "Role",
    "SampleWeighter",
    "balance_bias_update",
    "bloop_direction",
    "hard_patch_mask",
    "loss_weights",
    "max_violation",
    "pld_select",
]
