"""Callbacks for dynamic training behaviours, all following :mod:`lightning_losses.callbacks.base`."""

from lightning_losses.callbacks.base import (
    AuxGradientHandler,
    BehaviourCallback,
    SampleWeighter,
)

__all__ = ["AuxGradientHandler", "BehaviourCallback", "SampleWeighter"]
