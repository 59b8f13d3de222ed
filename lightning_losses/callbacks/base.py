"""The protocol every behaviour callback follows, and the plumbing they share.

A behaviour = a **pure functional core** (tensors in, tensors out, unit-tested without a Trainer)
plus a thin [BehaviourCallback][lightning_losses.callbacks.base.BehaviourCallback] that owns
configuration, state and logging.

One wiring for all behaviours (DYNAMICS.md §0): Lightning back-propagates what `training_step`
returns, so a behaviour that changes the objective cannot act from a hook after the fact. Instead,
in `setup` the callback checks the module (`check_module`, failing with a clear message when the
module cannot serve it) and attaches itself to the module under its `role` (a
[Role][lightning_losses.mixins.loss.Role] constant); the module, through
[LossMixin][lightning_losses.mixins.LossMixin], calls it inside the training step. In `teardown`
it detaches. If the module never calls it during the first training step, the callback raises
(`RuntimeError` naming the method the module must call) instead of training silently without it.

Where each behaviour acts:

- `on_train_batch_start`: batch composition (masks, resampling; dict batch, in place).
- `LossMixin.reduce_per_sample`: sample weights (role `Role.SAMPLE_WEIGHTER`).
- `LossMixin.backward`: gradients of the main loss and the aux objectives, separately (role
  `Role.GRADIENT_HANDLER`).
- `on_before_optimizer_step`: gradients (unscaled, all-reduced, before clipping).
- `on_train_batch_end`: router / EMA state after the optimizer step (use `optimizer_stepped`
  under gradient accumulation).

What the base owns, so that no behaviour carries it alone:

- a per-rank `torch.Generator` (`self.generator`, when the subclass passes a `seed`): seeded
  `seed + global_rank` in `setup`, saved for every rank in `state_dict` and restored in
  `load_state_dict`; a rank the checkpoint has no stream for (resume on more ranks, or a
  checkpoint without this callback's state) is reseeded deterministically from
  `(seed, rank, global_step)`;
- `optimizer_stepped(trainer)`: whether an optimizer step happened since the last call (safe under
  gradient accumulation: `global_step` advanced);
- `scoring(pl_module)`: eval mode + `torch.no_grad()`, training mode restored;
- logging through `pl_module.log` only (no private Lightning API).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.distributed import all_gather_no_grad, get_rank
from lightning_losses.mixins.loss import (
    AUX_GRADIENT_HANDLER_ATTR,
    GRADIENT_HANDLER_ATTR,
    SAMPLE_WEIGHTER_ATTR,
    GradientHandler,
    LossMixin,
    Role,
    SampleWeighter,
)
from lightning_losses.validation import check_int

__all__ = [
    "AUX_GRADIENT_HANDLER_ATTR",
    "GRADIENT_HANDLER_ATTR",
    "SAMPLE_WEIGHTER_ATTR",
    "BehaviourCallback",
    "GradientHandler",
    "Role",
    "SampleWeighter",
    "generator_state",
    "restore_generator",
    "resume_seed",
]

# A large odd multiplier keeps (seed, rank, step) -> seed injective over realistic ranges.
_STEP_STRIDE = 1_000_003


def resume_seed(seed: int, rank: int, global_step: int) -> int:
    """The deterministic seed of a rank that resumes without a saved generator state.

    Args:
        seed: the callback's base seed.
        rank: the global rank.
        global_step: the trainer's `global_step` at the resume.

    Returns:
        `seed + rank + 1_000_003 · (global_step + 1)`: distinct from every rank's initial seed
        `seed + rank` and from other steps.

    Example:
        >>> from lightning_losses.callbacks.base import resume_seed
        >>> resume_seed(0, 1, 0)
        1000004
    """
    return seed + rank + _STEP_STRIDE * (global_step + 1)


class BehaviourCallback(Callback):
    """Base class of every behaviour callback.

    Subclasses set `role` (a [Role][lightning_losses.mixins.loss.Role] constant: the module
    attribute they attach as, or `None` for callbacks that only act in hooks),
    `requires_loss_mixin`, and `call_hint` (what the module must call, quoted in the "attached
    but never called" error), and may extend `check_module`. A subclass that needs randomness
    passes `seed=` to `__init__` and draws from `self.generator`. Hooks that a subclass overrides
    (`setup`, `teardown`, `on_train_start`, `on_train_batch_end`, `state_dict`,
    `load_state_dict`) must call `super()`.

    Args:
        seed: base seed of the per-rank generator (rank `r` uses `seed + r`); `None` = no
            generator.
    """

    role: ClassVar[str | None] = None
    requires_loss_mixin: ClassVar[bool] = False
    call_hint: ClassVar[str | None] = None

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__()
        self.seed = None if seed is None else check_int("seed", seed)
        self.generator: torch.Generator | None = (
            None if seed is None else torch.Generator().manual_seed(seed)
        )
        self._last_step: int | None = None
        self._called = False
        self._call_checked = False
        self._generator_restored = False

    # -------------------------------------------------------------------------- checking
    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise a clear `TypeError`/`ValueError` when `pl_module` cannot serve this behaviour.

        Args:
            trainer: the trainer.
            pl_module: the module the callback is about to attach to.

        Raises:
            TypeError: `requires_loss_mixin` and the module is no `LossMixin`.
            ValueError: another callback already holds this role.
        """
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

    def notify_called(self) -> None:
        """Record that the module called this behaviour (the mixin calls it for its roles)."""
        self._called = True

    # ---------------------------------------------------------------------------- plumbing
    def optimizer_stepped(self, trainer: Trainer) -> bool:
        """Whether an optimizer step happened since the previous call (or since `on_train_start`).

        Safe under gradient accumulation: it compares `trainer.global_step` with the value seen at
        the previous call, so in `on_train_batch_end` it is `True` only on the micro-batch that
        ended with an optimizer step.

        Args:
            trainer: the trainer.

        Returns:
            `True` when `global_step` advanced.
        """
        step = trainer.global_step
        last = getattr(self, "_last_step", None)
        self._last_step = step
        return step > (0 if last is None else last)

    @staticmethod
    @contextmanager
    def scoring(pl_module: torch.nn.Module) -> Iterator[None]:
        """Eval mode and `torch.no_grad()` for scoring inside a training hook; mode restored.

        Args:
            pl_module: the module to score with.

        Example:
            >>> import torch
            >>> from lightning_losses.callbacks.base import BehaviourCallback
            >>> net = torch.nn.Dropout(0.5)
            >>> with BehaviourCallback.scoring(net):
            ...     print(net.training, torch.is_grad_enabled())
            False False
            >>> net.training
            True
        """
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            pl_module.train(was_training)

    # ------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.check_module(trainer, pl_module)
        if self.role is not None:
            # Plain attribute (not a submodule): never part of state_dict or parameters.
            pl_module.__dict__[self.role] = self
        self._called = False
        self._call_checked = False
        self._generator_restored = False
        if stage == "fit" and getattr(self, "generator", None) is not None:
            # Distinct stream per rank; a checkpoint restore (after setup) overrides it.
            self.generator.manual_seed(self.seed + trainer.global_rank)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.role is not None and pl_module.__dict__.get(self.role) is self:
            del pl_module.__dict__[self.role]

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_step = trainer.global_step
        generator = getattr(self, "generator", None)
        if generator is not None and trainer.global_step > 0 and not self._generator_restored:
            # Resumed, but the checkpoint holds no stream for this rank: a fresh, distinct one.
            generator.manual_seed(resume_seed(self.seed, trainer.global_rank, trainer.global_step))

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._call_checked or self.role is None or self.call_hint is None:
            return
        self._call_checked = True
        if not self._called:
            raise RuntimeError(
                f"{type(self).__name__} is attached to {type(pl_module).__name__} as "
                f"`{self.role}`, but the first training step never called it: "
                f"{self.call_hint}. Without it, training runs without the behaviour."
            )

    # -------------------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        generator = getattr(self, "generator", None)
        return {} if generator is None else {"generator": generator_state(generator)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        generator = getattr(self, "generator", None)
        if generator is not None:
            self._generator_restored = restore_generator(generator, state_dict.get("generator"))


def generator_state(generator: torch.Generator | None) -> Tensor | None:
    """Every rank's `generator.get_state()`, stacked `[world, S]` (or `None`).

    For `Callback.state_dict`: Lightning writes rank 0's callback state only, so a per-rank stream
    (seeded `seed + rank`) survives a multi-rank resume only if rank 0 saves all of them. Under DDP
    this is a collective (an all-gather of a few KiB); Lightning builds checkpoints on every rank,
    as `Trainer.save_checkpoint` requires.

    Args:
        generator: this rank's generator, or `None`.

    Returns:
        The stacked states, or `None`.
    """
    if generator is None:
        return None
    return all_gather_no_grad(generator.get_state()[None])


def restore_generator(generator: torch.Generator, state: Tensor | None) -> bool:
    """Inverse of `generator_state` for this process's rank; returns whether it restored.

    Accepts the stacked `[world, S]` form and a single `[S]` state. Returns `False` (and leaves
    `generator` untouched) when the checkpoint holds no state for this rank, e.g. after resuming
    on more ranks than were saved; the caller then reseeds deterministically (`resume_seed`).

    Args:
        generator: the generator to restore.
        state: what `generator_state` saved.

    Returns:
        Whether a state for this rank was found and restored.
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
