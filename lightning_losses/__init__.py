"""lightning_losses: research training objectives for PyTorch Lightning.

A catalog of verified loss functions under one contract, LightningModule mixins that supply
them, callbacks for dynamic training behaviours, and recipes. This module only re-exports.
"""

__version__ = "0.1.0"

from lightning_losses import functional, losses
from lightning_losses.losses import *  # noqa: F403
from lightning_losses.losses import __all__ as _losses_all
from lightning_losses.mixins import LossMixin, LossOutput, build_criterion
from lightning_losses.registry import (
    LossExample,
    LossSpec,
    get_loss,
    get_loss_spec,
    list_losses,
    register_loss,
)

__all__ = [
    "LossExample",
    "LossMixin",
    "LossOutput",
    "LossSpec",
    "__version__",
    "build_criterion",
    "functional",
    "get_loss",
    "get_loss_spec",
    "list_losses",
    "losses",
    "register_loss",
    *_losses_all,
]
