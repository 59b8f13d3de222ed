"""lightning_losses: research training objectives for PyTorch Lightning.

A catalog of verified loss functions under one contract, LightningModule mixins that supply
them (`lightning_losses.mixins`), callbacks for dynamic training behaviours
(`lightning_losses.callbacks`), and recipes (`lightning_losses.recipes`). This module exports
only the entry points: the registry (`get_loss`, `list_losses`, ...), the mixin
(`LossMixin`, `LossOutput`, `build_criterion`), `InputKind` (the input kinds a module can accept,
`accepted_input_kinds = (InputKind.CLASSIFICATION,)`) and the two loss namespaces, `losses` (every
loss class) and `functional` (every loss function).

Example:
    >>> import torch
    >>> import lightning_losses as ll
    >>> criterion = ll.get_loss("focal", gamma=2.0)
    >>> criterion(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])).shape
    torch.Size([])
    >>> ll.losses.FocalLoss is type(criterion), ll.functional.focal_loss is criterion.functional
    (True, True)
"""

__version__ = "0.3.0"

from lightning_losses import functional, losses
from lightning_losses.losses.base import InputKind as InputKind
from lightning_losses.mixins import LossMixin, LossOutput, build_criterion
from lightning_losses.registry import get_loss, get_loss_class, list_losses, register_loss

# `InputKind` is importable here for user modules (`from lightning_losses import InputKind`); its
# documented home stays `lightning_losses.losses.InputKind`.
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
]
