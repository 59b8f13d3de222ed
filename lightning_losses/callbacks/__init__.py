"""Callbacks for dynamic training behaviours, all following :mod:`lightning_losses.callbacks.base`."""

from lightning_losses.callbacks.base import (
    AuxGradientHandler,
    BehaviourCallback,
    SampleWeighter,
)
from lightning_losses.callbacks.pld import PLDResampling
from lightning_losses.callbacks.reweighting import LossReweighting, loss_weights

__all__ = [
    "AuxGradientHandler",
    "BehaviourCallback",
    "LossReweighting",
    "PLDResampling",
    "SampleWeighter",
    "loss_weights",
]
