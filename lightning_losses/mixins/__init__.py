"""LightningModule mixins that supply catalog losses to any model."""

from lightning_losses.mixins.loss import (
    AUX_GRADIENT_HANDLER_ATTR,
    GRADIENT_HANDLER_ATTR,
    SAMPLE_WEIGHTER_ATTR,
    GradientHandler,
    LossMixin,
    LossOutput,
    Role,
    SampleWeighter,
    build_criterion,
)

__all__ = [
    "AUX_GRADIENT_HANDLER_ATTR",
    "GRADIENT_HANDLER_ATTR",
    "SAMPLE_WEIGHTER_ATTR",
    "GradientHandler",
    "LossMixin",
    "LossOutput",
    "Role",
    "SampleWeighter",
    "build_criterion",
]
