"""lightning_losses: research training objectives for PyTorch Lightning.

A catalog of verified loss functions under one contract (`lightning_losses.losses` modules,
`lightning_losses.functional` functions, `get_loss` by name), LightningModule mixins that supply
them (`lightning_losses.mixins`), callbacks for dynamic training behaviours
(`lightning_losses.callbacks`), and recipes (`lightning_losses.recipes`). This module only
re-exports the losses, the mixin and the registry.

Example:
    >>> import torch
    >>> import lightning_losses as ll
    >>> criterion = ll.get_loss("focal", gamma=2.0)
    >>> criterion(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])).shape
    torch.Size([])
"""

__version__ = "0.2.0"

from lightning_losses import functional, losses
from lightning_losses.losses import *  # noqa: F403
from lightning_losses.losses import __all__ as _losses_all
from lightning_losses.mixins import LossMixin, LossOutput, build_criterion
from lightning_losses.registry import get_loss, get_loss_class, list_losses, register_loss

__all__ = [
    "LossMixin",
    "LossOutput",
    "__version__",
    "build_criterion",
    "functional",
    "get_loss",
    "get_loss_class",
    "list_losses",
    "losses",
    "register_loss",
    *_losses_all,
]
