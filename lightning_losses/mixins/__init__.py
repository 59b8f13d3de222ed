"""LightningModule mixins: catalog losses with the behaviour seams, CLI-replaceable optimizers."""

from lightning_losses.mixins.epoch_metrics import EpochMetricsMixin
from lightning_losses.mixins.loss import (
    CriterionSpec,
    GradientHandler,
    LossMixin,
    LossModel,
    LossOutput,
    Role,
    SampleWeighter,
    build_criterion,
)
from lightning_losses.mixins.optimizers import OptimizerMixin

__all__ = [
    "CriterionSpec",
    "EpochMetricsMixin",
    "GradientHandler",
    "LossMixin",
    "LossModel",
    "LossOutput",
    "OptimizerMixin",
    "Role",
    "SampleWeighter",
    "build_criterion",
]
