"""The protocol every behaviour callback follows.

A behaviour = a **pure functional core** (tensors in, tensors out, unit-tested without a
Trainer) + a thin :class:`BehaviourCallback` that owns configuration, state and logging.

One wiring for all behaviours (DYNAMICS.md §0): Lightning back-propagates what
``training_step`` returns, so a behaviour that changes the objective cannot act from a hook
after the fact. Instead, in ``setup`` the callback checks the module (:meth:`check_module`,
failing with a clear message when the module cannot serve it) and attaches itself to the module
under its :attr:`~BehaviourCallback.role`; the module (through
:class:`~lightning_losses.mixins.LossMixin`) calls it inside ``training_step``. In ``teardown``
it detaches. Behaviours that only rewrite the batch or the gradients act in their hooks:

================================  ==================================================
hook                              what acts there
================================  ==================================================
``on_train_batch_start``          batch composition: masks, resampling (dict batch, in place)
``LossMixin.reduce_per_sample``   sample weights (:class:`SampleWeighter`, role ``sample_weighter``)
``LossMixin.compute_loss``        aux objectives (:class:`AuxGradientHandler`, role ``aux_gradient_handler``)
``on_before_optimizer_step``      gradients (unscaled, all-reduced, before clipping)
``on_train_batch_end``            router / EMA state after the optimizer step
================================  ==================================================

State that must survive a resume goes in ``state_dict``/``load_state_dict`` (including every
rank's ``torch.Generator`` state, see :func:`generator_state` / :func:`restore_generator`).
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from lightning_losses.distributed import all_gather_no_grad, get_rank
from lightning_losses.mixins.loss import (
    AUX_GRADIENT_HANDLER_ATTR,
    SAMPLE_WEIGHTER_ATTR,
    LossMixin,
)

__all__ = [
    "AUX_GRADIENT_HANDLER_ATTR",
    "SAMPLE_WEIGHTER_ATTR",
    "AuxGradientHandler",
    "BehaviourCallback",
    "SampleWeighter",
    "generator_state",
    "restore_generator",
]


@runtime_checkable
class SampleWeighter(Protocol):
    """Role ``sample_weighter``: turns detached per-sample losses into reduction weights.

    ``sample_weights`` receives ``[B]`` detached local losses and returns ``[B]`` weights such that
    the local loss is ``Σ_i w_i · l_i`` (under DDP, including any ``× world_size`` factor needed
    for gradient averaging to give the intended global objective).
    """

    def sample_weights(self, per_sample: Tensor) -> Tensor: ...


@runtime_checkable
class AuxGradientHandler(Protocol):
    """Role ``aux_gradient_handler``: takes the summed aux objective out of the backward pass."""

    def consume_aux(self, aux_total: Tensor) -> None: ...


class BehaviourCallback(Callback):
    """Base class of every behaviour callback.

    Subclasses set :attr:`role` (the module attribute they attach as, or ``None`` for callbacks
    that only act in hooks), :attr:`requires_loss_mixin`, and may extend :meth:`check_module`.
    """

    role: ClassVar[str | None] = None
    requires_loss_mixin: ClassVar[bool] = False

    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise a clear ``TypeError``/``ValueError`` when ``pl_module`` cannot serve this behaviour."""
        name = type(self).__name__
        if self.requires_loss_mixin and not isinstance(pl_module, LossMixin):
            raise TypeError(
                f"{name} needs per-sample losses: {type(pl_module).__name__} must inherit "
                "lightning_losses.mixins.LossMixin and compute its loss with compute_loss()"
            )
        if self.role is not None:
            current = pl_module.__dict__.get(self.role)
            if current is not None and current is not self:
                raise ValueError(
                    f"{name} cannot attach as `{self.role}`: {type(current).__name__} is already "
                    "attached there; use one callback per role"
                )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.check_module(trainer, pl_module)
        if self.role is not None:
            # Plain attribute (not a submodule): never part of state_dict or parameters.
            pl_module.__dict__[self.role] = self

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.role is not None and pl_module.__dict__.get(self.role) is self:
            del pl_module.__dict__[self.role]


def generator_state(generator: torch.Generator | None) -> Tensor | None:
    """Every rank's ``generator.get_state()``, stacked ``[world, S]`` (or ``None``).

    For ``Callback.state_dict``: Lightning writes rank 0's callback state only, so a per-rank
    stream (seeded ``seed + rank``) survives a multi-rank resume only if rank 0 saves all of them.
    Under DDP this is a collective (an all-gather of a few KiB); Lightning builds checkpoints on
    every rank, as ``Trainer.save_checkpoint`` requires.
    """
    if generator is None:
        return None
    return all_gather_no_grad(generator.get_state()[None])


def restore_generator(generator: torch.Generator, state: Tensor | None) -> bool:
    """Inverse of :func:`generator_state` for this process's rank; returns whether it restored.

    Accepts the stacked ``[world, S]`` form and a single ``[S]`` state. Returns ``False`` (and
    leaves ``generator`` untouched) when the checkpoint holds no state for this rank, e.g. after
    resuming on more ranks than were saved; the caller then reseeds deterministically.
    """
    if state is None:
        return False
    if state.ndim == 1:
        generator.set_state(state)
        return True
    rank = get_rank()
    if rank >= state.shape[0]:
        return False
    # clone, not contiguous(): a row view keeps a storage offset that set_state does not honour.
    generator.set_state(state[rank].clone())
    return True
