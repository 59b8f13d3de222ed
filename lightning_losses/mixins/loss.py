"""``LossMixin``: a LightningModule mixin that supplies a catalog loss and per-sample reduction.

Lightning back-propagates the loss that ``training_step`` returns and lets callbacks read but not
replace it. So the module computes **per-sample** losses and reduces them itself, asking the
behaviour callback attached to it (if any) for sample weights. A callback attaches itself in
``setup`` as a module attribute named after its *role* (see :mod:`lightning_losses.callbacks.base`):

=========================  ====================================================================
attribute                  used by the mixin
=========================  ====================================================================
``sample_weighter``        ``sample_weights(per_sample.detach()) -> Tensor[B]``; the main loss
                           becomes ``Σ_i w_i · per_sample_i``.
``aux_gradient_handler``   ``consume_aux(aux_total)``; the aux objectives are then handed to it
                           (e.g. Bloop's projected gradient) instead of being added to ``loss``.
=========================  ====================================================================
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lightning_losses.registry import get_loss

__all__ = [
    "AUX_GRADIENT_HANDLER_ATTR",
    "SAMPLE_WEIGHTER_ATTR",
    "LossMixin",
    "LossOutput",
    "build_criterion",
]

SAMPLE_WEIGHTER_ATTR = "sample_weighter"
AUX_GRADIENT_HANDLER_ATTR = "aux_gradient_handler"

CriterionSpec = str | Mapping[str, Any] | nn.Module


@dataclass
class LossOutput:
    """What :meth:`LossMixin.compute_loss` returns.

    Attributes:
        loss: the scalar to back-propagate (main loss + aux, unless an aux handler took the aux).
        per_sample: ``[B]`` unreduced main losses, still attached to the graph.
        aux: named auxiliary objectives (scalars, attached), kept apart from the main loss.
        weights: the detached ``[B]`` sample weights used to reduce ``per_sample``.
    """

    loss: Tensor
    per_sample: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)
    weights: Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """The dict form ``training_step`` returns (DYNAMICS.md §0)."""
        return {"loss": self.loss, "per_sample": self.per_sample, "aux": self.aux}


def _import_class(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise ValueError(f"class_path must be a dotted path 'package.module.Class', got {path!r}")
    return getattr(importlib.import_module(module_name), name)


def build_criterion(criterion: CriterionSpec, **overrides: Any) -> nn.Module:
    """Build a criterion that returns unreduced losses (``reduction="none"``).

    Args:
        criterion: a registry name (``"poly"``), a dict ``{"name": "poly", "epsilon": 2.0}`` or
            LightningCLI-style ``{"class_path": "...", "init_args": {...}}``, or an ``nn.Module``
            with a ``reduction`` attribute (every catalog loss and every ``torch.nn`` loss). A
            module whose reduction is not ``"none"`` is deep-copied and set to ``"none"``; the
            caller's instance is left untouched.
        overrides: extra constructor keyword arguments (names and dicts only).

    Example:
        >>> from lightning_losses.mixins import build_criterion
        >>> build_criterion({"name": "focal", "gamma": 1.0})
        FocalLoss(reduction='none')
    """
    if isinstance(criterion, str):
        module = get_loss(criterion, **{**overrides, "reduction": "none"})
    elif isinstance(criterion, Mapping):
        spec = dict(criterion)
        if "class_path" in spec:
            cls = _import_class(spec["class_path"])
            kwargs = {**dict(spec.get("init_args") or {}), **overrides}
            module = cls(**kwargs)
        elif "name" in spec:
            name = spec.pop("name")
            module = get_loss(name, **{**spec, **overrides, "reduction": "none"})
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
        module = copy.deepcopy(module)
        module.reduction = "none"
    return module


def _element_mask(criterion: nn.Module, elements: Tensor, args: tuple[Any, ...]) -> Tensor | None:
    # Dense losses return 0 at ignored positions; find them from the integer target if any.
    ignore_index = getattr(criterion, "ignore_index", None)
    if ignore_index is None:
        return None
    for arg in args:
        if isinstance(arg, Tensor) and not arg.is_floating_point() and arg.shape == elements.shape:
            return arg != ignore_index
    return None


class LossMixin:
    """LightningModule mixin: build a catalog criterion, compute per-sample losses, reduce them.

    Use with ``class MyModule(LossMixin, LightningModule)``: call
    :meth:`configure_criterion` in ``__init__`` and :meth:`compute_loss` in ``training_step``.
    The criterion is a registered submodule, so a loss with parameters (learnable
    temperatures, class centres) is trained by ``self.parameters()`` automatically.

    Reduction: ``per_sample`` is ``[B]``. For dense losses (``[B, *]`` elements, e.g. tokens) it
    is the mean over each sample's valid elements (``ignore_index`` positions excluded), unless
    ``loss_granularity = "element"``, which makes every valid element its own "sample". Without a
    sample-weighting callback the main loss is ``per_sample.mean()``; with one attached (in
    training only) it is ``Σ_i w_i · per_sample_i`` with the callback's detached weights.

    Example:
        >>> import torch
        >>> from lightning import LightningModule
        >>> from lightning_losses.mixins import LossMixin
        >>> class Model(LossMixin, LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(4, 3)
        ...         self.configure_criterion("poly", epsilon=1.0)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return self.compute_loss(self.net(x), y).to_dict()
        >>> out = Model().compute_loss(torch.zeros(2, 3), torch.tensor([0, 1]))
        >>> out.per_sample
        tensor([1.7653, 1.7653])
    """

    criterion: nn.Module
    loss_granularity: str = "sample"

    def configure_criterion(self, criterion: CriterionSpec, **overrides: Any) -> nn.Module:
        """Build the criterion (see :func:`build_criterion`) and register it as ``self.criterion``."""
        self.criterion = build_criterion(criterion, **overrides)
        return self.criterion

    def per_sample_losses(self, elements: Tensor, element_mask: Tensor | None = None) -> Tensor:
        """``[B, *]`` unreduced losses -> ``[B]`` (or valid elements for ``"element"`` granularity)."""
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
        mask = element_mask.reshape(elements.shape[0], -1).to(flat.dtype)
        return (flat * mask).sum(1) / mask.sum(1).clamp_min(1)

    def reduce_per_sample(self, per_sample: Tensor) -> tuple[Tensor, Tensor]:
        """Reduce ``[B]`` losses with the attached sample weighter (training) or a plain mean."""
        weighter = getattr(self, SAMPLE_WEIGHTER_ATTR, None)
        if weighter is None or not getattr(self, "training", True):
            n = per_sample.numel()
            weights = torch.full_like(per_sample.detach(), 1.0 / max(n, 1))
        else:
            weights = weighter.sample_weights(per_sample.detach())
            if not isinstance(weights, Tensor) or weights.shape != per_sample.shape:
                raise ValueError(
                    f"{type(weighter).__name__}.sample_weights must return a tensor of shape "
                    f"{tuple(per_sample.shape)}, got "
                    f"{getattr(weights, 'shape', type(weights).__name__)}"
                )
            weights = weights.detach().to(per_sample.dtype)
        return (weights * per_sample).sum(), weights

    def compute_loss(
        self,
        *args: Any,
        aux: Mapping[str, Tensor] | None = None,
        element_mask: Tensor | None = None,
        stage: str = "train",
        log: bool = True,
        **kwargs: Any,
    ) -> LossOutput:
        """Run the criterion on ``*args, **kwargs`` and reduce it through the callback protocol.

        Args:
            args: the criterion's positional inputs (e.g. ``logits, target``).
            aux: named auxiliary scalar objectives, added to ``loss`` (or handed to an attached
                aux-gradient handler) and logged as ``{stage}/{name}``.
            element_mask: for dense losses, which elements count (default: target ≠
                ``ignore_index`` when the criterion has one).
            stage: logging prefix (``train``, ``val``, ``test``).
            log: log ``{stage}/loss`` and every aux when attached to a Trainer.
            kwargs: the criterion's keyword inputs.
        """
        elements = self.criterion(*args, **kwargs)
        if element_mask is None and elements.ndim > 1:
            element_mask = _element_mask(self.criterion, elements, args)
        per_sample = self.per_sample_losses(elements, element_mask)
        main, weights = self.reduce_per_sample(per_sample)

        aux = dict(aux or {})
        for name, value in aux.items():
            if not isinstance(value, Tensor) or value.ndim != 0:
                raise ValueError(f"aux[{name!r}] must be a scalar tensor, got {value!r}")
        loss = main
        if aux:
            aux_total = torch.stack([v.to(main.dtype) for v in aux.values()]).sum()
            handler = getattr(self, AUX_GRADIENT_HANDLER_ATTR, None)
            if handler is not None and getattr(self, "training", True):
                handler.consume_aux(aux_total)
            else:
                loss = main + aux_total

        if log and getattr(self, "_trainer", None) is not None:
            on_step = stage == "train"
            batch_size = int(per_sample.shape[0])
            self.log(
                f"{stage}/loss",
                loss.detach(),
                on_step=on_step,
                on_epoch=True,
                prog_bar=True,
                batch_size=batch_size,
                sync_dist=not on_step,
            )
            for name, value in aux.items():
                self.log(
                    f"{stage}/{name}",
                    value.detach(),
                    on_step=on_step,
                    on_epoch=True,
                    batch_size=batch_size,
                    sync_dist=not on_step,
                )
        return LossOutput(loss=loss, per_sample=per_sample, aux=aux, weights=weights)
