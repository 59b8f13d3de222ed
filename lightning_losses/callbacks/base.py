"""The protocol every behaviour callback follows, and the plumbing they share.

A behaviour = a **pure functional core** (tensors in, tensors out, unit-tested without a Trainer)
plus a thin [BehaviourCallback][lightning_losses.callbacks.base.BehaviourCallback] that owns
configuration, state and logging.

One wiring for all behaviours (the design page `docs/design/callbacks.md` walks through it):
Lightning back-propagates what `training_step` returns, so a behaviour that changes the objective
cannot act from a hook after the fact. Instead, in `setup` the callback checks the module
(`check_module`) and attaches itself to the module under its `role` (a
[Role][lightning_losses.mixins.loss.Role] constant); the module, through
[LossMixin][lightning_losses.mixins.LossMixin], calls it inside the training step. In `teardown`
it detaches. If the module never calls it during the first training step, the callback raises
(`RuntimeError` naming the method the module must call) instead of training silently without it.

What a behaviour needs from the module is a runtime-checkable `Protocol`, declared as the
callback's `requires`; `check_module` names the Protocol and the missing method or attribute:

| behaviour | `requires` | in practice, the module |
|---|---|---|
| `LossReweighting`, `EMAGradientProjection` | `LossModel` | inherits `LossMixin` |
| `PLDResampling` | `PLDScorer` | has `pld_candidate_losses(batch, *reuse)` |
| `HardPatchMining` | `HPMModel` (`HPMTeacherModel` with the EMA teacher) | predicts patch losses |
| `LossFreeBalancing` | `MoEModel` | contains our MoE routers |

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
- the configuration check on resume: `config()` (the hyperparameters named in `config_keys`) is
  saved in `state_dict`, and `load_state_dict` warns (rank zero) naming every hyperparameter whose
  value differs from the checkpoint's, with both values; the current configuration is used;
- logging through `pl_module.log` only (no private Lightning API).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_losses.distributed import all_gather_no_grad, all_reduce_sum, get_rank
from lightning_losses.mixins.loss import GradientHandler, LossModel, Role, SampleWeighter
from lightning_losses.validation import check_int

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

__all__ = [
    "BehaviourCallback",
    "GradientHandler",
    "LossModel",
    "Role",
    "SampleWeighter",
    "amp_scale",
    "fold_unclaimed_aux",
    "generator_state",
    "grads_set_aside",
    "is_dtensor",
    "local_shard",
    "restore_generator",
    "resume_seed",
    "shard_sum_fn",
    "trained_parameters",
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


def is_dtensor(t: Tensor) -> TypeGuard[DTensor]:
    """Whether `t` is a `DTensor` (an FSDP2 / `ModelParallelStrategy` parameter or gradient).

    Args:
        t: a tensor.

    Returns:
        `True` for a DTensor (duck-typed: no import of `torch.distributed.tensor`).

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.base import is_dtensor
        >>> is_dtensor(torch.ones(2))
        False
    """
    return hasattr(t, "device_mesh") and hasattr(t, "placements")


def local_shard(t: Tensor) -> Tensor:
    """The rank's shard of a DTensor (it shares storage: in-place edits reach the parameter).

    Args:
        t: a tensor or DTensor.

    Returns:
        `t.to_local()` for a DTensor, `t` itself otherwise.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.base import local_shard
        >>> local_shard(torch.ones(2))
        tensor([1., 1.])
    """
    return t.to_local() if is_dtensor(t) else t


def amp_scale(scaler: Any | None) -> float:
    """The loss scale an fp16 `GradScaler` multiplied into the backward, `1.0` without one.

    Gradient handlers receive objectives already scaled like Lightning's loss; they divide this
    factor out of the gradients they keep themselves.

    Args:
        scaler: the precision plugin's grad scaler, or `None` (fp32, bf16).

    Returns:
        `scaler.get_scale()` as a float, or `1.0`.

    Example:
        >>> from lightning_losses.callbacks.base import amp_scale
        >>> amp_scale(None)
        1.0
    """
    return float(scaler.get_scale()) if scaler is not None else 1.0


def fold_unclaimed_aux(main: Tensor, aux: Mapping[str, Tensor], claimed: Iterable[str]) -> Tensor:
    """`main` plus every aux objective a gradient handler does not treat separately.

    An aux objective the handler was not configured for is trained like part of the main loss.

    Args:
        main: the main objective.
        aux: the aux objectives by name.
        claimed: the names the handler back-propagates on its own.

    Returns:
        `main + Σ aux[k]` over the unclaimed names (cast to `main`'s dtype), or `main` itself.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.base import fold_unclaimed_aux
        >>> aux = {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}
        >>> fold_unclaimed_aux(torch.tensor(10.0), aux, claimed=["a"])
        tensor(12.)
    """
    claimed = set(claimed)
    rest = [v.to(main.dtype) for k, v in aux.items() if k not in claimed]
    return main + torch.stack(rest).sum() if rest else main


@contextmanager
def grads_set_aside(params: Sequence[Tensor]) -> Iterator[None]:
    """Set every parameter's `.grad` aside for the block and put it back afterwards.

    A `backward()` inside the block leaves only its own gradient in `.grad` (under FSDP2 the
    only way to get a reduce-scattered gradient of one objective), while the gradient
    accumulated before (earlier micro-batches) is restored, also when the block raises.

    Args:
        params: the parameters.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.base import grads_set_aside
        >>> w = torch.ones(2, requires_grad=True)
        >>> w.grad = torch.full((2,), 5.0)
        >>> with grads_set_aside([w]):
        ...     (3 * w).sum().backward()
        ...     inside = w.grad.clone()
        >>> inside, w.grad
        (tensor([3., 3.]), tensor([5., 5.]))
    """
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, grad in zip(params, saved, strict=True):
            p.grad = grad


def trained_parameters(module: LightningModule) -> list[Tensor]:
    """The parameters the attached trainer's optimizers step, each once, in their order.

    Under FSDP2 these are the sharded DTensor parameters that receive the reduce-scattered
    gradients. `module.parameters()` is not: between a module's forward and the end of its
    backward FSDP2 registers the all-gathered (unsharded) copies in their place, always on the
    root module (it does not reshard after forward by default) and on every module with
    `reshard_after_forward=False`; those copies get no `.grad` from FSDP. Without a trainer or
    before the optimizers exist: the module's parameters that require a gradient.

    Args:
        module: the LightningModule.

    Returns:
        The parameters (`requires_grad` only).

    Example:
        >>> import torch
        >>> from lightning import LightningModule
        >>> from lightning_losses.callbacks.base import trained_parameters
        >>> module = LightningModule()
        >>> module.net = torch.nn.Linear(2, 1)
        >>> [tuple(p.shape) for p in trained_parameters(module)]
        [(1, 2), (1,)]
    """
    trainer = getattr(module, "_trainer", None)
    optimizers = getattr(trainer, "optimizers", None) or []
    seen: set[int] = set()
    params: list[Tensor] = []
    for optimizer in optimizers:
        for group in getattr(optimizer, "optimizer", optimizer).param_groups:
            for p in group["params"]:
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
    if not params:
        params = [p for p in module.parameters() if p.requires_grad]
    return params


def shard_sum_fn(params: Sequence[Tensor], owner: str) -> Callable[[Tensor], Tensor]:
    """A function that sums a per-rank partial over the process group that shards `params`.

    For a reduction over all parameters as one vector (a norm, a dot product) computed from the
    local shards: every element lives on exactly one rank, so the sum of the local partials is the
    global value. Only FSDP2-style sharding is supported (every DTensor sharded over one mesh
    dimension, all on one process group).

    Args:
        params: the (DTensor) parameters; plain tensors are ignored.
        owner: the caller's name, quoted in errors.

    Returns:
        `t -> all_reduce_sum(t, group)` (in place).

    Raises:
        ValueError: a parameter is replicated or on a multi-dimensional mesh, or the parameters
            span several process groups.
    """
    groups = set()
    for p in params:
        if not is_dtensor(p):
            continue
        mesh = p.device_mesh
        if mesh.ndim != 1 or not all(pl.is_shard() for pl in p.placements):
            raise ValueError(
                f"{owner} supports FSDP2 parameters sharded over one data-parallel mesh "
                f"dimension, got placements {p.placements} on a {mesh.ndim}-D mesh"
            )
        groups.add(mesh.get_group())
    if len(groups) != 1:
        raise ValueError(f"{owner}: all sharded parameters must share one process group")
    group = groups.pop()
    return lambda t: all_reduce_sum(t, group=group)


def _protocol_members(protocol: type) -> dict[str, str]:
    # {name: "method" | "attribute"} over the Protocol and the Protocols it extends.
    members: dict[str, str] = {}
    for cls in reversed(protocol.__mro__):
        if not getattr(cls, "_is_protocol", False) or cls.__module__ == "typing":
            continue
        for name in getattr(cls, "__annotations__", {}):
            if not name.startswith("_"):
                members[name] = "attribute"
        for name, value in vars(cls).items():
            if name.startswith("_") or name in members:
                continue
            members[name] = "method" if callable(value) else "attribute"
    return members


def _missing_members(obj: object, protocol: type) -> list[tuple[str, str]]:
    # getattr, not isinstance: Python >= 3.12 checks Protocols statically and would miss what
    # nn.Module serves through __getattr__ (submodules, parameters, buffers).
    missing = []
    for name, kind in _protocol_members(protocol).items():
        try:
            value = getattr(obj, name)
        except AttributeError:
            missing.append((name, kind))
            continue
        if kind == "method" and not callable(value):
            missing.append((name, kind))
    return missing


class BehaviourCallback(Callback):
    """Base class of every behaviour callback.

    Subclasses declare, as class attributes:

    - `role`: a [Role][lightning_losses.mixins.loss.Role] constant, the module attribute they
      attach as (`None` for callbacks that only act in hooks);
    - `requires`: the runtime-checkable `Protocol` the module must implement (`None`: any
      module); `requires_hint` says how to get it (default: the first line of the Protocol's
      docstring);
    - `call_hint`: what the module must call, quoted in the "attached but never called" error
      (`None`: the callback is not called by the module, no check);
    - `config_keys`: the names of the hyperparameter attributes saved in `state_dict` and
      compared on resume (override `config()` when an attribute is not named like its argument).

    They may extend `check_module` for checks beyond the Protocol (values, strategies) and
    override `interface` when a module can serve the Protocol another way. A subclass that needs
    randomness passes `seed=` to `__init__` and draws from `self.generator`. Hooks that a
    subclass overrides (`setup`, `teardown`, `on_train_start`, `on_train_batch_end`,
    `state_dict`, `load_state_dict`) must call `super()`.

    Args:
        seed: base seed of the per-rank generator (rank `r` uses `seed + r`); `None` = no
            generator.

    Example:
        >>> from typing import Protocol, runtime_checkable
        >>> from lightning import LightningModule
        >>> from lightning_losses.callbacks.base import BehaviourCallback
        >>> @runtime_checkable
        ... class Scorer(Protocol):
        ...     def score(self, batch): ...
        >>> class Probe(BehaviourCallback):
        ...     requires = Scorer
        ...     config_keys = ("temperature",)
        ...     def __init__(self, temperature=1.0):
        ...         super().__init__()
        ...         self.temperature = temperature
        >>> Probe().check_module(None, LightningModule())
        Traceback (most recent call last):
            ...
        TypeError: Probe needs the module (LightningModule) to implement Scorer:
        missing method 'score'
        >>> Probe(0.5).state_dict()
        {'config': {'temperature': 0.5}}
    """

    role: ClassVar[str | None] = None
    # Not a ClassVar: a behaviour whose needs depend on its arguments sets it per instance.
    requires: type | None = None
    requires_hint: ClassVar[str | None] = None
    call_hint: ClassVar[str | None] = None
    config_keys: ClassVar[tuple[str, ...]] = ()

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
    def interface(self, pl_module: LightningModule) -> Any:
        """The object that must implement `requires`: the module itself by default.

        A behaviour overrides it when a module can serve the Protocol another way (e.g.
        `LossFreeBalancing` adapts modules whose MoE routers it finds on its own).

        Args:
            pl_module: the module being set up.

        Returns:
            What `check_module` checks against `requires`.
        """
        return pl_module

    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise a clear `TypeError`/`ValueError` when `pl_module` cannot serve this behaviour.

        Args:
            trainer: the trainer.
            pl_module: the module the callback is about to attach to.

        Raises:
            TypeError: the module does not implement `requires`; the message names the
                Protocol and every missing method or attribute.
            ValueError: another callback already holds this role.
        """
        name = type(self).__name__
        if self.requires is not None:
            missing = _missing_members(self.interface(pl_module), self.requires)
            if missing:
                what = ", ".join(f"{kind} {member!r}" for member, kind in missing)
                advice = self.requires_hint or (self.requires.__doc__ or "").strip().split("\n")[0]
                hint = f"; {advice}" if advice else ""
                raise TypeError(
                    f"{name} needs the module ({type(pl_module).__name__}) to implement "
                    f"{self.requires.__name__}: missing {what}{hint}"
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
    def log_interval(trainer: Trainer) -> int:
        """`trainer.log_every_n_steps`, at least 1 (Lightning sets the attribute at runtime).

        Args:
            trainer: the trainer.

        Returns:
            The number of optimizer steps between two logged steps.
        """
        return max(int(getattr(trainer, "log_every_n_steps", 1)), 1)

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
        generator = getattr(self, "generator", None)
        if stage == "fit" and generator is not None and self.seed is not None:
            # Distinct stream per rank; a checkpoint restore (after setup) overrides it.
            generator.manual_seed(self.seed + trainer.global_rank)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.role is not None and pl_module.__dict__.get(self.role) is self:
            del pl_module.__dict__[self.role]

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_step = trainer.global_step
        generator = getattr(self, "generator", None)
        resumed = trainer.global_step > 0 and not self._generator_restored
        if generator is not None and self.seed is not None and resumed:
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
    def config(self) -> dict[str, Any]:
        """The hyperparameters saved in `state_dict` and compared when a run resumes.

        Returns:
            `{name: getattr(self, name)}` over `config_keys` (override when an attribute is not
            named like its constructor argument).
        """
        return {key: getattr(self, key) for key in self.config_keys}

    @override
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        config = self.config()
        if config:
            state["config"] = config
        generator = getattr(self, "generator", None)
        if generator is not None:
            state["generator"] = generator_state(generator)
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.warn_on_config_change(state_dict.get("config"))
        generator = getattr(self, "generator", None)
        if generator is not None:
            self._generator_restored = restore_generator(generator, state_dict.get("generator"))

    def warn_on_config_change(self, saved: dict[str, Any] | None) -> None:
        """Warn (rank zero) naming each hyperparameter that differs from the checkpoint's.

        Only the keys both configurations have are compared: a checkpoint saved without a
        configuration (older versions) or without a newer key loads silently.

        Args:
            saved: the `"config"` entry of the checkpointed state, or `None`.

        Example:
            >>> import warnings
            >>> from lightning_losses.callbacks import LossReweighting
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     LossReweighting(kl_reg=2.0).warn_on_config_change({"kl_reg": 1.0})
            >>> print(caught[0].message)
            LossReweighting resumed with a configuration that differs from the checkpoint:
            kl_reg = 1.0 in the checkpoint, 2.0 now; the current configuration is used
        """
        if not saved:
            return
        current = self.config()
        diffs = [
            f"{key} = {saved[key]!r} in the checkpoint, {current[key]!r} now"
            for key in current
            if key in saved and not _same(saved[key], current[key])
        ]
        if diffs:
            rank_zero_warn(
                f"{type(self).__name__} resumed with a configuration that differs from the "
                f"checkpoint: {'; '.join(diffs)}; the current configuration is used",
                category=UserWarning,
            )


def _same(a: Any, b: Any) -> bool:
    # A tuple saved in a checkpoint may come back as a list; tensors compare by value.
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and torch.equal(a, b)
    return bool(a == b)


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
