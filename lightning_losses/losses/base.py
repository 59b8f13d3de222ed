"""The base class of every loss module: hyperparameters live here, the math in the functional."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_losses.losses._validation import check_reduction

__all__ = ["Loss"]


class Loss(nn.Module):
    """Base of every ``lightning_losses`` loss module.

    Stores and validates ``reduction`` (``"mean" | "sum" | "none"``). Subclasses store their
    hyperparameters in ``__init__`` (validated there, so a bad value fails at construction) and
    call their functional form in ``forward``.

    ``reduction`` is a plain attribute: :class:`~lightning_losses.mixins.LossMixin` sets it to
    ``"none"`` on its own copy of the criterion to obtain per-sample losses.
    """

    registry_name: str = ""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def _register_optional_buffer(self, name: str, value: Tensor | None) -> None:
        # Class weights follow the module across devices and into state_dict when given.
        self.register_buffer(name, None if value is None else value.detach().clone())

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
