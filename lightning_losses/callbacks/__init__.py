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
from lightning_losses.callbacks.kl_dro import KLDROReweighting, kl_dro_loss, kl_dro_weights
from lightning_losses.callbacks.multi_task import GradientAggregation
from lightning_losses.callbacks.perp_grad import PerpGrad, perpendicular_gradient
from lightning_losses.callbacks.pld import PLDResampling, PLDScorer, pld_select
from lightning_losses.callbacks.reweighting import LossReweighting, loss_weights
from lightning_losses.callbacks.sam import SAM, sam_perturbation

__all__ = [
    "SAM",
    "BehaviourCallback",
    "Bloop",
    "EMAGradientProjection",
    "GradientAggregation",
    "GradientHandler",
    "HPMModel",
    "HPMTeacherModel",
    "HardPatchMining",
    "KLDROReweighting",
    "LossFreeBalancing",
    "LossModel",
    "LossReweighting",
    "MoEModel",
    "PLDResampling",
    "PLDScorer",
    "PerpGrad",
    "Role",
    "SampleWeighter",
    "balance_bias_update",
    "bloop_direction",
    "hard_patch_mask",
    "kl_dro_loss",
    "kl_dro_weights",
    "loss_weights",
    "max_violation",
    "perpendicular_gradient",
    "pld_select",
    "sam_perturbation",
]
