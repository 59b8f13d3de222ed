"""Callbacks for dynamic training behaviours, all built on `lightning_losses.callbacks.base`."""

from lightning_losses.callbacks.base import (
    BehaviourCallback,
    GradientHandler,
    Role,
    SampleWeighter,
)
from lightning_losses.callbacks.pld import PLDResampling, PLDScorer, pld_select
from lightning_losses.callbacks.reweighting import LossReweighting, loss_weights

__all__ = [
    "BehaviourCallback",
    "GradientHandler",
    "LossReweighting",
    "PLDResampling",
    "PLDScorer",
    "Role",
    "SampleWeighter",
    "loss_weights",
    "pld_select",
]
