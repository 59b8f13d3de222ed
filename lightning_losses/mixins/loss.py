r"""`LossMixin`: a LightningModule mixin for a catalog loss, per-sample reduction, a backward seam.

Lightning back-propagates the loss that `training_step` returns and lets callbacks read but not
replace it. So the module computes **per-sample** losses and reduces them itself, asking the
behaviour callbacks attached to it for what they own. A callback attaches itself in `setup` as a
module attribute named after its *role* (the constants of
[Role][lightning_losses.mixins.loss.Role]):

- `Role.SAMPLE_WEIGHTER` (`pl_module.sample_weighter`): `sample_weights(per_sample.detach())`
  returns `[B]` weights; the main loss becomes $\sum_i w_i \ell_i$
  ([SampleWeighter][lightning_losses.mixins.loss.SampleWeighter]).
- `Role.GRADIENT_HANDLER` (`pl_module.gradient_handler`): receives the main loss and every aux
  objective separately in [LossMixin.backward][lightning_losses.mixins.loss.LossMixin.backward]
  and decides how they become gradients
  ([GradientHandler][lightning_losses.mixins.loss.GradientHandler]; Bloop, Jacobian aggregators).

A behaviour that needs these seams requires its module to be a
[LossModel][lightning_losses.mixins.loss.LossModel], which every `LossMixin` subclass is. The
criterion a module is built with is a
[CriterionSpec][lightning_losses.mixins.loss.CriterionSpec]. The role constants live here, below
the callbacks in the dependency order, and are re-exported by `lightning_losses.callbacks.base`;
the design page `docs/design/callbacks.md` explains the roles, hooks and seams.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias, runtime_checkable

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightning_losses.losses.base import InputKind
from lightning_losses.mixins.epoch_metrics import EpochMetricsMixin
from lightning_losses.registry import get_loss, get_loss_class, list_losses

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule

__all__ = [
    "CriterionSpec",
    "GradientHandler",
    "LossMixin",
    "LossModel",
    "LossOutput",
    "Role",
    "SampleWeighter",
    "build_criterion",
]


class Role:
    """The module attribute names behaviour callbacks attach as (one callback per role).

    In `setup` a behaviour callback stores itself on the module under its role (a plain attribute,
    not a submodule) and removes itself in `teardown`; a second callback of the same role on the
    same module is refused. The module (through `LossMixin`) calls the callbacks of the roles it
    has seams for; the other roles mark which behaviour is attached, so two of a kind cannot act
    on one module.

    Example:
        >>> from lightning_losses.mixins import Role
        >>> Role.SAMPLE_WEIGHTER, Role.GRADIENT_HANDLER, Role.PLD
        ('sample_weighter', 'gradient_handler', 'pld')
    """

    SAMPLE_WEIGHTER: ClassVar[str] = "sample_weighter"
    """Called by `LossMixin.reduce_per_sample`: per-sample weights of the main loss."""
    GRADIENT_HANDLER: ClassVar[str] = "gradient_handler"
    """Called by `LossMixin.backward`: turns the main loss and the aux objectives into gradients."""
    PLD: ClassVar[str] = "pld"
    """`PLDResampling`: rewrites the batch's positives; called by the callback itself in
    `on_train_batch_start`, or by the module's inline scoring (`pld_select(self, batch, ...)`)."""
    PATCH_MINER: ClassVar[str] = "patch_miner"
    """`HardPatchMining`: writes the hard-patch mask into the batch in `on_train_batch_start`
    and keeps the EMA teacher that scores the patches (the module only reads `batch["mask"]`)."""
    LOAD_BALANCER: ClassVar[str] = "load_balancer"
    """`LossFreeBalancing`: updates every MoE router's selection bias from the step's expert
    loads in `on_before_optimizer_step` (the routers count the loads themselves)."""


CriterionSpec: TypeAlias = str | Mapping[str, Any]
"""A criterion as a configuration file or the command line can give it (the recipes' type).

One of:

- a registry name: `"poly"` (see `lightning_losses.registry.get_loss`);
- a dict with a registry name and constructor keyword arguments: `{"name": "poly",
  "epsilon": 2.0}`;
- a LightningCLI-style dict: `{"class_path": "package.module.Class", "init_args": {...}}`.

`LossMixin.configure_criterion` and `build_criterion` also take an `nn.Module` with a
`reduction` attribute (every catalog loss, every `torch.nn` loss; one whose reduction is not
`"none"` is deep-copied and set to `"none"`), and so do the recipes in Python. `nn.Module` is
left out of this alias on purpose: in a LightningCLI signature it would make `--model.help` list
every `nn.Module` subclass.

Recipes import it as `from lightning_losses.mixins import CriterionSpec`.
"""


@runtime_checkable
class SampleWeighter(Protocol):
    """Role `sample_weighter`: turns detached per-sample losses into reduction weights.

    `sample_weights` receives `[B]` detached local losses and returns `[B]` weights such that the
    local loss is $\\sum_i w_i \\ell_i$ (under DDP including any `× world_size` factor needed for
    gradient averaging to give the intended global objective). A weight of exactly 0 removes the
    sample from the sum (it is not multiplied in), so a non-finite loss with weight 0 leaves the
    loss finite.
    """

    def sample_weights(self, per_sample: Tensor) -> Tensor: ...


@runtime_checkable
class GradientHandler(Protocol):
    r"""Role `gradient_handler`: decides how the main loss and each aux objective become gradients.

    [LossMixin.backward][lightning_losses.mixins.loss.LossMixin.backward] calls it instead of
    `loss.backward()` on every backward of a training step (every micro-batch under gradient
    accumulation), in automatic and in manual optimization.

    What it receives:

    - `main`: the main objective of the step's last `compute_loss`, and `aux`: each aux objective
      by name, both **already scaled exactly as Lightning scaled the loss it back-propagates**:
      multiplied by `accumulation_factor` (`1 / trainer.accumulate_grad_batches` in automatic
      optimization, 1 in manual) and, under fp16 AMP, by the grad scaler's current scale. So
      `torch.autograd.backward([main, *aux.values()])` reproduces the default backward exactly.
    - `accumulation_factor`: the float applied, for handlers that keep their own buffers.
    - `scaler`: the AMP grad scaler (`trainer.precision_plugin.scaler`) or `None`. Lightning
      unscales `p.grad` before `on_before_optimizer_step`; a gradient the handler keeps elsewhere
      (e.g. from `torch.autograd.grad`) is still scaled and must be divided by
      `scaler.get_scale()`.

    Under DDP, DDP's reducer must run **once** per backward: compute every separate gradient with
    `torch.autograd.grad(aux_total, params, retain_graph=True)` (it bypasses DDP's hooks, so the
    result is per-rank; all-reduce it yourself, e.g. in `on_before_optimizer_step`), then do exactly
    one `main.backward()` (or one `torch.autograd.backward` over a list of tensors), which DDP
    all-reduces into `p.grad`. Calling `.backward()` twice through the DDP graph in one step fails.
    Under FSDP2 (`ModelParallelStrategy`) use manual optimization
    ([LossMixin.manual_loss_backward][lightning_losses.mixins.loss.LossMixin.manual_loss_backward]);
    `torch.autograd.grad` does not run FSDP's reduce-scatter hooks.
    """

    def backward(
        self,
        module: LightningModule,
        main: Tensor,
        aux: Mapping[str, Tensor],
        *,
        accumulation_factor: float,
        scaler: Any | None,
    ) -> None: ...


@runtime_checkable
class LossModel(Protocol):
    """The seams sample weighters and gradient handlers need: inherit `LossMixin` for them.

    `LossReweighting` (role `sample_weighter`) and `EMAGradientProjection` (role
    `gradient_handler`) require it. In practice: inherit
    [LossMixin][lightning_losses.mixins.LossMixin] and compute the training loss with
    `self.compute_loss(...)`; the mixin implements every method below. A module that implements
    them itself must call the attached callbacks as `LossMixin` does, or the callback raises
    after the first training step.

    Example:
        >>> from lightning import LightningModule
        >>> from lightning_losses.mixins import LossMixin, LossModel
        >>> class Model(LossMixin, LightningModule): ...
        >>> isinstance(Model(), LossModel), isinstance(LightningModule(), LossModel)
        (True, False)
    """

    def compute_loss(self, *args: Any, **kwargs: Any) -> LossOutput:
        """Per-sample losses of the criterion, reduced through `reduce_per_sample`."""
        ...

    def reduce_per_sample(
        self, per_sample: Tensor, sample_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reduce `[B]` losses; calls the attached `sample_weighter` in training."""
        ...

    def route_backward(self, handler: Any, output: LossOutput) -> None:
        """Hand the step's main and aux objectives to the attached `gradient_handler`."""
        ...


@dataclass
class LossOutput:
    """What [LossMixin.compute_loss][lightning_losses.mixins.loss.LossMixin.compute_loss] returns.

    Attributes:
        loss: the scalar Lightning back-propagates: `main + aux_total`, whether or not a gradient
            handler is attached (the handler receives the parts separately in `backward`).
        per_sample: `[B]` unreduced main losses, still attached to the graph.
        aux: named auxiliary objectives (attached scalars), never summed into one entry.
        weights: the detached `[B]` sample weights used to reduce `per_sample`.
        main: the reduced main objective $\\sum_i w_i \\ell_i$ (`loss` minus the aux).
        extras: anything else the step produced for callbacks and logging (logits, router counts,
            rewards, ...); not back-propagated.
    """

    loss: Tensor
    per_sample: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)
    weights: Tensor | None = None
    main: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def aux_total(self) -> Tensor | None:
        """The sum of the aux objectives, or `None` when there are none."""
        if not self.aux:
            return None
        return torch.stack([v.to(self.loss.dtype) for v in self.aux.values()]).sum()

    def to_dict(self) -> dict[str, Any]:
        """The dict `training_step` returns; Lightning back-propagates its `"loss"`."""
        return {
            "loss": self.loss,
            "main": self.main,
            "per_sample": self.per_sample,
            "aux": self.aux,
            "extras": self.extras,
        }


def _import_class(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"class_path must be a dotted path 'package.module.Class', got {path!r}")
    return getattr(importlib.import_module(module_name), name)


_REDUCTION_WARNED: set[str] = set()


def _warn_reduction(name: str, reduction: Any) -> None:
    if reduction in (None, "none", "mean") or name in _REDUCTION_WARNED:
        return
    _REDUCTION_WARNED.add(name)
    rank_zero_warn(
        f"criterion {name} was given reduction={reduction!r}; LossMixin computes it with "
        "reduction='none' and reduces the per-sample losses itself (a mean, or the sample "
        "weighter's weighted sum), so the requested reduction is replaced",
        category=UserWarning,
    )


def build_criterion(criterion: CriterionSpec | nn.Module, **overrides: Any) -> nn.Module:
    """Build a criterion that returns unreduced losses (`reduction="none"`).

    A requested `reduction` other than `"none"`/`"mean"` (e.g. `"sum"`) is replaced by `"none"`
    with a one-time rank-zero warning: the mixin reduces the per-sample losses itself (their mean
    without a sample weighter).

    Args:
        criterion: a registry name (`"poly"`), a dict `{"name": "poly", "epsilon": 2.0}` or
            LightningCLI-style `{"class_path": "...", "init_args": {...}}`, or an `nn.Module` with a
            `reduction` attribute (every catalog loss and every `torch.nn` loss). A module whose
            reduction is not `"none"` is deep-copied and set to `"none"`; the caller's instance is
            left untouched.
        **overrides: extra constructor keyword arguments (names and dicts only).

    Returns:
        The criterion module with `reduction == "none"`.

    Raises:
        TypeError: `criterion` is of an unsupported type or the module has no `reduction`.
        ValueError: a dict without `name` or `class_path`.

    Example:
        >>> from lightning_losses.mixins import build_criterion
        >>> build_criterion("cross_entropy").reduction
        'none'
    """
    if isinstance(criterion, str):
        _warn_reduction(criterion, overrides.get("reduction"))
        module = get_loss(criterion, **{**overrides, "reduction": "none"})
    elif isinstance(criterion, Mapping):
        spec = dict(criterion)
        if "class_path" in spec:
            cls = _import_class(spec["class_path"])
            kwargs = {**dict(spec.get("init_args") or {}), **overrides}
            _warn_reduction(cls.__name__, kwargs.get("reduction"))
            module = cls(**kwargs)
        elif "name" in spec:
            name = spec.pop("name")
            kwargs = {**spec, **overrides}
            _warn_reduction(name, kwargs.get("reduction"))
            module = get_loss(name, **{**kwargs, "reduction": "none"})
        else:
            raise ValueError(
                "criterion dict needs a 'name' (registry) or a 'class_path' key, "
                f"got keys {sorted(spec)}"
            )
    elif isinstance(criterion, nn.Module):
        if overrides:
            raise TypeError("overrides are only accepted with a criterion name or dict")
        module = criterion
    else:
        raise TypeError(
            "criterion must be a registry name, a dict or an nn.Module, "
            f"got {type(criterion).__name__}"
        )
    if not hasattr(module, "reduction"):
        raise TypeError(
            f"criterion {type(module).__name__} has no `reduction` attribute; LossMixin needs "
            "per-sample losses (reduction='none')"
        )
    if module.reduction != "none":
        _warn_reduction(type(module).__name__, module.reduction)
        module = copy.deepcopy(module)
        # setattr: nn.Module's typing declares every unknown attribute a Tensor or a Module.
        setattr(module, "reduction", "none")  # noqa: B010
    return module


# Kinds whose losses are called alike, `(logits [N, C, *], class indices [N, *])`: a module
# written for one can use the others.
_LOGITS_AND_INDICES = (InputKind.CLASSIFICATION, InputKind.SEQUENCES, InputKind.DENSE)
# Kinds whose inputs are never integer class indices.
_NO_INDICES = (InputKind.RANKING, InputKind.PREFERENCE, InputKind.REGRESSION, InputKind.MULTILABEL)
_CRITERION_PARAMETERS = ("criterion", "loss")


def _kind_group(kind: str) -> tuple[str, ...]:
    return _LOGITS_AND_INDICES if kind in _LOGITS_AND_INDICES else (kind,)


def _registry_kind(spec: Any) -> str | None:
    """The input kind of a criterion given by registry name (or `{"name": ...}`), else `None`."""
    name = spec.get("name") if isinstance(spec, Mapping) else spec
    if not isinstance(name, str):
        return None
    try:
        kind = getattr(get_loss_class(name), "input_kind", None)
    except (KeyError, ValueError):
        return None
    return kind if isinstance(kind, str) else None


def loss_names_of_kind(*kinds: str) -> list[str]:
    """The registry names of the losses whose `input_kind` is one of `kinds`.

    Example:
        >>> from lightning_losses.mixins.loss import loss_names_of_kind
        >>> loss_names_of_kind("preference")[:2]
        ['conservative_dpo', 'dpo']
    """
    return [n for n in list_losses() if getattr(get_loss_class(n), "input_kind", None) in kinds]


def _inferred_input_kinds(cls: type) -> tuple[str, ...] | None:
    """The kinds a module takes, from the registry default of its `criterion=` parameter.

    `def __init__(self, criterion="cross_entropy")` declares a module that calls its criterion
    as a classification loss; `None` when no such default tells.
    """
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return None
    for name in _CRITERION_PARAMETERS:
        param = parameters.get(name)
        kind = None if param is None else _registry_kind(param.default)
        if kind is not None:
            return _kind_group(kind)
    return None


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    return type(value).__name__


def _kind_mismatch(criterion: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Why a criterion's call failed when its inputs look like another kind's, else `""`."""
    kind = getattr(type(criterion), "input_kind", None)
    if not isinstance(kind, str):
        return ""
    name = getattr(type(criterion), "registry_name", "") or type(criterion).__name__
    try:
        signature = inspect.signature(criterion.forward)
    except (TypeError, ValueError):
        return ""
    got = ", ".join(_describe(a) for a in args) or "no positional arguments"
    params = ", ".join(signature.parameters)
    head = f"criterion {name!r} ({type(criterion).__name__}) takes {kind!r} inputs ({params})"
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    looks_like_indices = len(args) >= 2 and any(
        not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
        for t in tensors[1:]
    )
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        pass
    else:
        if not (kind in _NO_INDICES and looks_like_indices):
            return ""
    if looks_like_indices:
        names = ", ".join(loss_names_of_kind(*_LOGITS_AND_INDICES))
        return (
            f"{head}, but compute_loss got ({got}), which looks like logits and class indices; "
            f"losses for them: {names}"
        )
    return f"{head}, but compute_loss got ({got}); it is a loss for other inputs"


def _notify(callback: Any) -> None:
    # Behaviour callbacks record that the module called them ("attached but never called").
    notify = getattr(callback, "notify_called", None)
    if notify is not None:
        notify()


class LossMixin(EpochMetricsMixin):
    r"""LightningModule mixin: build a catalog criterion, compute per-sample losses, reduce them.

    Use with `class MyModule(LossMixin, LightningModule)`: call `configure_criterion` in
    `__init__` and `compute_loss` in `training_step`, and return its `loss` (or `to_dict()`).
    The criterion is a registered submodule, so a loss with parameters (learnable temperatures,
    class centres) is trained by `self.parameters()` automatically.

    Reduction: `per_sample` is `[B]`. For dense losses (`[B, *]` elements, e.g. tokens) it is the
    mean over each sample's valid elements, unless `loss_granularity = "element"`, which makes
    every valid element its own "sample". Which elements are valid: the `element_mask=` argument,
    else `criterion.element_mask(*args, **kwargs)` (catalog losses: `target != ignore_index`),
    else all. A `torch.nn` loss has no `element_mask`: pass `element_mask=` yourself. Without a
    sample weighter the main loss is the mean of `per_sample` over the samples with at least one
    valid element; with one attached (in training only) it is $\sum_i w_i \ell_i$ with its detached
    weights (samples with weight exactly 0 are left out of the sum).

    Capabilities: `configure_criterion` rejects a criterion whose `input_kind` the module does not
    take, naming the registry names it does take. The kinds are the class's
    `accepted_input_kinds` (a tuple of [InputKind][lightning_losses.losses.InputKind] values,
    importable as `from lightning_losses import InputKind`) or, when
    it declares none, inferred from the registry default of its `criterion` (or `loss`)
    parameter: `criterion="cross_entropy"` takes classification, sequence and dense losses (all
    called as logits and class indices). Set `accepted_input_kinds = InputKind.ALL` to accept
    every loss. A criterion call that fails because its inputs are of another kind (a ranking
    or preference loss given logits and class indices) raises a `ValueError` saying so.

    Logging: `compute_loss` logs `{stage}/loss` (and the aux terms). Logging one of these names
    yourself (`self.log("train/loss", ...)`) replaces the automatic entry from then on; or pass
    `log=False` to `compute_loss`.

    Resume: the running epoch means of what the module logs travel in the checkpoint
    ([EpochMetricsMixin][lightning_losses.mixins.epoch_metrics.EpochMetricsMixin], a base
    class); a subclass that overrides `on_save_checkpoint`, `on_load_checkpoint`,
    `on_train_batch_start` or `on_train_epoch_end` calls `super()` first.

    Example:
        >>> import torch
        >>> from lightning import LightningModule
        >>> from lightning_losses.mixins import LossMixin
        >>> class Model(LossMixin, LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(4, 3)
        ...         self.configure_criterion("cross_entropy")
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return self.compute_loss(self.net(x), y).to_dict()
        >>> out = Model().compute_loss(torch.zeros(2, 3), torch.tensor([0, 1]))
        >>> out.per_sample
        tensor([1.0986, 1.0986])
    """

    criterion: nn.Module
    loss_granularity: str = "sample"
    accepted_input_kinds: ClassVar[tuple[str, ...] | None] = None

    if TYPE_CHECKING:  # provided by the LightningModule this mixin is combined with

        def manual_backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None: ...

    # ------------------------------------------------------------------------------ building
    def configure_criterion(
        self, criterion: CriterionSpec | nn.Module, **overrides: Any
    ) -> nn.Module:
        """Build the criterion (see `build_criterion`), check its input kind, register it.

        Args:
            criterion: a registry name, a dict or a module (see `build_criterion`).
            **overrides: extra constructor keyword arguments.

        Returns:
            The criterion, also stored as `self.criterion`.

        Raises:
            ValueError: the criterion's `input_kind` is not one the module takes (its
                `accepted_input_kinds`, or the kind of its `criterion=` default).
        """
        module = build_criterion(criterion, **overrides)
        cls = type(self)
        accepted = cls.accepted_input_kinds
        if accepted is None:
            accepted = _inferred_input_kinds(cls)
        kind = getattr(type(module), "input_kind", None)
        if accepted is not None and kind is not None and kind not in accepted:
            names = ", ".join(loss_names_of_kind(*accepted)) or "none registered"
            raise ValueError(
                f"criterion {type(module).__name__} takes {kind!r} inputs, but {cls.__name__} "
                f"takes {', '.join(repr(k) for k in accepted)} losses: {names} (or set "
                f"{cls.__name__}.accepted_input_kinds, e.g. InputKind.ALL)"
            )
        self.criterion = module
        return module

    # ----------------------------------------------------------------------------- reduction
    def per_sample_losses(self, elements: Tensor, element_mask: Tensor | None = None) -> Tensor:
        """`[B, *]` unreduced losses to `[B]` (or the valid elements for `"element"` granularity).

        Args:
            elements: the criterion's `reduction="none"` output.
            element_mask: boolean mask of the valid elements, shaped like `elements`, or `None`.

        Returns:
            The per-sample losses.

        Raises:
            ValueError: a scalar output, a mask of the wrong shape, or an unknown granularity.
        """
        if elements.ndim == 0:
            raise ValueError(
                "criterion returned a scalar with reduction='none'; LossMixin needs one loss per "
                "sample (or per element)"
            )
        if element_mask is not None and element_mask.shape != elements.shape:
            raise ValueError(
                f"element_mask must have the shape of the unreduced loss {tuple(elements.shape)}, "
                f"got {tuple(element_mask.shape)}"
            )
        if self.loss_granularity == "element":
            return elements[element_mask] if element_mask is not None else elements.reshape(-1)
        if self.loss_granularity != "sample":
            raise ValueError(
                f"loss_granularity must be 'sample' or 'element', got {self.loss_granularity!r}"
            )
        if elements.ndim == 1:
            return elements
        flat = elements.reshape(elements.shape[0], -1)
        if element_mask is None:
            return flat.mean(1)
        mask = element_mask.reshape(elements.shape[0], -1)
        # where, not multiply: an ignored element whose loss is NaN/inf must not poison the mean.
        total = torch.where(mask, flat, torch.zeros((), dtype=flat.dtype, device=flat.device))
        return total.sum(1) / mask.sum(1).clamp_min(1).to(flat.dtype)

    def reduce_per_sample(
        self, per_sample: Tensor, sample_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Reduce `[B]` losses with the attached sample weighter (training) or a plain mean.

        Args:
            per_sample: `[B]` losses (attached).
            sample_mask: `[B]` bool, which samples count in the plain mean (samples with no valid
                element do not); `None` = all.

        Returns:
            `(main, weights)`: the reduced main objective and the detached `[B]` weights.
        """
        weighter = getattr(self, Role.SAMPLE_WEIGHTER, None)
        if weighter is None or not getattr(self, "training", True):
            if sample_mask is None:
                weights = torch.full_like(per_sample.detach(), 1.0 / max(per_sample.numel(), 1))
            else:
                valid = sample_mask.to(per_sample.dtype)
                weights = valid / valid.sum().clamp_min(1)
        else:
            _notify(weighter)
            weights = weighter.sample_weights(per_sample.detach())
            if not isinstance(weights, Tensor) or weights.shape != per_sample.shape:
                raise ValueError(
                    f"{type(weighter).__name__}.sample_weights must return a tensor of shape "
                    f"{tuple(per_sample.shape)}, got "
                    f"{getattr(weights, 'shape', type(weights).__name__)}"
                )
            weights = weights.detach().to(per_sample.dtype)
        # Weight-0 samples are left out (not multiplied by 0): 0 · inf would be NaN.
        zero = torch.zeros((), dtype=per_sample.dtype, device=per_sample.device)
        main = torch.where(weights != 0, weights * per_sample, zero).sum()
        return main, weights

    def _element_mask(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
        declared = getattr(self.criterion, "element_mask", None)
        return declared(*args, **kwargs) if callable(declared) else None

    # ---------------------------------------------------------------------------------- loss
    def compute_loss(
        self,
        *args: Any,
        aux: Mapping[str, Tensor] | None = None,
        element_mask: Tensor | None = None,
        extras: Mapping[str, Any] | None = None,
        stage: str = "train",
        log: bool = True,
        **kwargs: Any,
    ) -> LossOutput:
        """Run the criterion on `*args, **kwargs` and reduce it through the callback protocol.

        Args:
            *args: the criterion's positional inputs (e.g. `logits, target`).
            aux: named auxiliary scalar objectives, added to `loss`, logged as `{stage}/{name}`
                and handed separately to an attached gradient handler.
            element_mask: which elements of the unreduced loss count; default: the criterion's
                `element_mask(*args, **kwargs)` when it has one, else all.
            extras: anything to carry to callbacks and logging in `LossOutput.extras`.
            stage: logging prefix (`train`, `val`, `test`).
            log: log through `log_loss_output` when attached to a Trainer.
            **kwargs: the criterion's keyword inputs.

        Returns:
            The [LossOutput][lightning_losses.mixins.loss.LossOutput].

        Raises:
            ValueError: an aux value that is not a scalar tensor.
        """
        try:
            elements = self.criterion(*args, **kwargs)
        except (TypeError, ValueError, RuntimeError) as err:
            # Only on failure: a loss of another kind reports dtypes or missing arguments.
            mismatch = _kind_mismatch(self.criterion, args, kwargs)
            if not mismatch:
                raise
            raise ValueError(mismatch) from err
        if element_mask is None:
            element_mask = self._element_mask(args, kwargs)
        per_sample = self.per_sample_losses(elements, element_mask)
        sample_mask = None
        if element_mask is not None and self.loss_granularity == "sample":
            sample_mask = element_mask.reshape(elements.shape[0], -1).any(1)
        main, weights = self.reduce_per_sample(per_sample, sample_mask)

        aux = dict(aux or {})
        for name, value in aux.items():
            if not isinstance(value, Tensor) or value.ndim != 0:
                raise ValueError(f"aux[{name!r}] must be a scalar tensor, got {value!r}")
        output = LossOutput(
            loss=main,
            per_sample=per_sample,
            aux=aux,
            weights=weights,
            main=main,
            extras=dict(extras or {}),
        )
        aux_total = output.aux_total
        if aux_total is not None:
            output.loss = main + aux_total
        if getattr(self, "training", False) and torch.is_grad_enabled():
            # Read by `backward` (gradient handler) and cleared there.
            self.__dict__["_last_loss_output"] = output
        if log and getattr(self, "_trainer", None) is not None:
            self.log_loss_output(output, stage, int(per_sample.shape[0]))
        return output

    def log_loss_output(self, output: LossOutput, stage: str, batch_size: int) -> None:
        """Log `{stage}/loss` (main + aux), `{stage}/loss_main` and every `{stage}/{aux}`.

        `{stage}/loss` is always the total objective, the same quantity with or without a
        gradient handler attached; `{stage}/loss_main` (logged when there are aux objectives) is
        the main objective alone. Training logs per step and per epoch, evaluation per epoch;
        every entry with `sync_dist`, so under DDP/FSDP the logged values (step and epoch) are
        the means over the ranks, not rank 0's own (one scalar all-reduce per entry and step).

        Args:
            output: what `compute_loss` returned.
            stage: the prefix.
            batch_size: for Lightning's epoch averaging.
        """
        on_step = stage == "train"
        common = {
            "on_step": on_step,
            "on_epoch": True,
            "batch_size": batch_size,
            "sync_dist": True,
        }
        entries = [(f"{stage}/loss", output.loss, {"prog_bar": True})]
        if output.aux and output.main is not None:
            entries.append((f"{stage}/loss_main", output.main, {}))
        entries += [(f"{stage}/{name}", value, {}) for name, value in output.aux.items()]
        user_names = self.__dict__.get("_user_logged_names", ())
        auto = self.__dict__.setdefault("_auto_logged", {})
        fx = getattr(self, "_current_fx_name", None)
        for name, value, extra in entries:
            if name in user_names:
                continue  # the module logs this name itself
            super().log(name, value.detach(), **extra, **common)  # type: ignore[misc]
            auto[name] = fx

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """`LightningModule.log`; a name that `compute_loss` logs becomes the module's own.

        Logging a name that `compute_loss` logged in the same hook (`self.log("train/loss",
        ...)` in `training_step`) makes it the module's own: this step's automatic entry is
        dropped and `compute_loss` no longer logs that name, so the two do not clash (Lightning
        refuses one name logged twice in one hook with different arguments).

        Args:
            name: the logged key.
            value: the value.
            *args: `LightningModule.log`'s positional arguments.
            **kwargs: `LightningModule.log`'s keyword arguments.
        """
        auto = self.__dict__.get("_auto_logged", {})
        fx = getattr(self, "_current_fx_name", None)
        if fx is not None and auto.get(name) == fx:
            self.__dict__.setdefault("_user_logged_names", set()).add(name)
            del auto[name]
            results = getattr(getattr(self, "_trainer", None), "_results", None)
            if results is not None:
                # Lightning's result collection keys an entry "{hook}.{name}" (a private API,
                # covered by tests/mixins/test_loss_mixin.py).
                results.pop(f"{fx}.{name}", None)
        super().log(name, value, *args, **kwargs)  # type: ignore[misc]

    # ------------------------------------------------------------------------------ backward
    def _grad_scaler(self) -> Any | None:
        trainer = getattr(self, "_trainer", None)
        plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
        return getattr(plugin, "scaler", None)

    def _accumulation_factor(self) -> float:
        trainer = getattr(self, "_trainer", None)
        if trainer is None or not getattr(self, "automatic_optimization", True):
            return 1.0
        return 1.0 / trainer.accumulate_grad_batches

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's backward hook, routed through an attached gradient handler.

        Without a handler this is `LightningModule.backward` (`loss.backward()`). With one, the
        handler receives the main objective and each aux objective of the step's last
        `compute_loss`, scaled like `loss` (see
        [GradientHandler][lightning_losses.mixins.loss.GradientHandler]), and does the backward
        itself. Lightning calls this hook in automatic optimization and from `manual_backward`.

        Args:
            loss: what Lightning back-propagates: the returned loss divided by
                `accumulate_grad_batches` and, under fp16 AMP, multiplied by the grad scale.
            *args: forwarded to `Tensor.backward` when no handler is attached.
            **kwargs: forwarded to `Tensor.backward` when no handler is attached.

        Raises:
            RuntimeError: a handler is attached but the step's loss did not come from
                `compute_loss`.
        """
        handler = getattr(self, Role.GRADIENT_HANDLER, None)
        if handler is None or not getattr(self, "training", True):
            super().backward(loss, *args, **kwargs)  # type: ignore[misc]
            return
        output = self.__dict__.pop("_last_loss_output", None)
        if output is None:
            raise RuntimeError(
                f"{type(handler).__name__} is attached as `{Role.GRADIENT_HANDLER}` but "
                f"{type(self).__name__}'s training_step did not compute its loss with "
                "self.compute_loss(...): the handler needs the main loss and the aux objectives "
                "separately"
            )
        self.route_backward(handler, output)

    def route_backward(self, handler: Any, output: LossOutput) -> None:
        """Scale `output`'s main and aux objectives like Lightning's loss and call the handler.

        Args:
            handler: the [GradientHandler][lightning_losses.mixins.loss.GradientHandler].
            output: the step's `LossOutput`.

        Raises:
            ValueError: `output.main` is `None` (the output was not built by `compute_loss`).
        """
        if output.main is None:
            raise ValueError(
                "output.main is None: the gradient handler needs the main objective apart from "
                "the aux ones; build the LossOutput with self.compute_loss(...)"
            )
        main = output.main
        factor = self._accumulation_factor()
        scaler = self._grad_scaler()

        def scale(t: Tensor) -> Tensor:
            t = t * factor if factor != 1.0 else t
            return scaler.scale(t) if scaler is not None else t

        _notify(handler)
        handler.backward(
            self,
            scale(main),
            {name: scale(value) for name, value in output.aux.items()},
            accumulation_factor=factor,
            scaler=scaler,
        )

    def manual_loss_backward(self, output: LossOutput, *args: Any, **kwargs: Any) -> None:
        """Manual-optimization backward of a `LossOutput` (e.g. for FSDP2), through the handler.

        Use it in a `training_step` with `automatic_optimization = False` in place of
        `self.manual_backward(output.loss)`: it goes through Lightning's strategy and precision
        plugin (AMP scaling) and then, with a gradient handler attached, through the same handler
        call as automatic optimization (accumulation factor 1: you step the optimizer yourself).

        Args:
            output: what `compute_loss` returned in this step.
            *args: forwarded to `manual_backward`.
            **kwargs: forwarded to `manual_backward`.
        """
        self.__dict__["_last_loss_output"] = output
        self.manual_backward(output.loss, *args, **kwargs)
