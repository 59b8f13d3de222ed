"""The base class of every loss module: hyperparameters stored once, the math in the functional."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from lightning_losses.validation import check_bool, check_finite_tensor, check_reduction

__all__ = ["InputKind", "Loss"]


class InputKind:
    """What a loss consumes: declared on the class as `Loss.input_kind`.

    `LossMixin.configure_criterion` compares it with a module's `accepted_input_kinds`, so a
    ranking loss on an image classifier fails when the module is built, not deep in `forward`.
    """

    CLASSIFICATION = "classification"  # logits [N, C, *] + class indices [N, *] or soft targets
    MULTILABEL = "multilabel"  # logits [N, C, *] + binary / probability targets of the same shape
    RANKING = "ranking"  # positive scores [N] + negative scores [N, K]
    EMBEDDINGS = "embeddings"  # embeddings [N, D] + labels or paired embeddings (metric learning)
    SEQUENCES = "sequences"  # token logits / hidden states [N, V, T] + token ids [N, T]
    PREFERENCE = "preference"  # chosen / rejected sequence log-probabilities
    DENSE = "dense"  # per-pixel / per-voxel predictions (segmentation)
    REGRESSION = "regression"  # real-valued predictions and targets
    ROUTING = "routing"  # router probabilities [T, N] + selected experts [T, K] (MoE aux losses)
    ATTRIBUTION = "attribution"  # attribution maps [N, H, W] + region masks (explanation guidance)

    ALL: ClassVar[tuple[str, ...]] = (
        CLASSIFICATION,
        MULTILABEL,
        RANKING,
        EMBEDDINGS,
        SEQUENCES,
        PREFERENCE,
        DENSE,
        REGRESSION,
        ROUTING,
        ATTRIBUTION,
    )


class Loss(nn.Module):
    """Base of every `lightning_losses` loss module.

    A subclass sets `functional` (its functional form, where the math lives), `input_kind`, and
    `target_arg` (the `forward` argument that holds class indices, or `None`), writes an
    `__init__` with its explicit signature that validates the hyperparameters with *the same*
    checker its functional uses and hands them to `super().__init__(**hparams)`, and writes a
    `forward` with its explicit signature (the functional's call-time arguments, same names and
    defaults) whose body is one call, `return self._call_functional(input, target)`. So
    `help()`, IDEs and LightningCLI see the real arguments, while the math and the
    hyperparameter plumbing stay written once (a subclass without a `forward` falls back to a
    generic `forward(*args, **kwargs)`, which hides them). The base owns the rest:

    - hyperparameters stored once, in `hparams` (tensors such as a class `weight` become buffers,
      so they follow `.to(device)` and are saved in `state_dict`); non-finite tensors are rejected;
    - `_call_functional(*args, **kwargs)` calls `functional(*args, **kwargs, **hparams,
      reduction=..., validate_args=...)`;
    - `extra_repr` prints every hyperparameter (`FocalLoss(gamma=2.0, ...)`);
    - `element_mask(*args, **kwargs)`: which elements of a `reduction="none"` result count.

    Args:
        reduction: `"mean" | "sum" | "none"`. A plain attribute:
            [LossMixin][lightning_losses.mixins.LossMixin] sets `"none"` on its copy.
        validate_args: run the checks that need a host-device sync (label range, target values,
            finiteness of tensor arguments) on every call. Turn off in hot loops once the
            pipeline is known to be correct; shape and type checks always run.
        **hparams: the loss's validated hyperparameters.

    Example:
        >>> import torch
        >>> from torch import Tensor
        >>> from lightning_losses.losses import Loss
        >>> def scaled_l1_loss(input, target, *, scale=1.0, reduction="mean", validate_args=True):
        ...     return scale * (input - target).abs().mean()
        >>> class ScaledL1Loss(Loss):
        ...     functional = staticmethod(scaled_l1_loss)
        ...     def __init__(self, scale: float = 1.0, reduction: str = "mean") -> None:
        ...         super().__init__(reduction=reduction, scale=scale)
        ...     def forward(self, input: Tensor, target: Tensor) -> Tensor:
        ...         "Loss of `input [N, *]` against `target [N, *]`."
        ...         return self._call_functional(input, target)
        >>> ScaledL1Loss(scale=2.0)(torch.zeros(3), torch.ones(3))
        tensor(2.)
        >>> ScaledL1Loss(scale=2.0)
        ScaledL1Loss(scale=2.0, reduction='mean')
    """

    registry_name: ClassVar[str] = ""
    functional: ClassVar[Callable[..., Any] | None] = None
    input_kind: ClassVar[str] = InputKind.CLASSIFICATION
    target_arg: ClassVar[str | None] = "target"

    if TYPE_CHECKING:
        # Hyperparameters are set by name in `__init__`; to a type checker they are `Any`, not
        # the `Tensor | Module` that `nn.Module.__getattr__` declares.
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, *, reduction: str = "mean", validate_args: bool = True, **hparams: Any):
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.validate_args = check_bool("validate_args", validate_args)
        self._hparam_names: tuple[str, ...] = tuple(hparams)
        for name, value in hparams.items():
            if isinstance(value, Tensor):
                check_finite_tensor(name, value)
                self.register_buffer(name, value.detach().clone())
            else:
                setattr(self, name, value)

    @property
    def hparams(self) -> dict[str, Any]:
        """The hyperparameters passed to `functional` (buffers included), by name."""
        return {name: getattr(self, name) for name in self._hparam_names}

    def _functional_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the module adds to every call of `functional`.

        The stored hyperparameters, `reduction` and `validate_args`. A module whose functional
        also takes the module's own state (learnable parameters, running statistics, a random
        generator) adds it here, so `forward` passes only what its caller gives.
        """
        return {**self.hparams, "reduction": self.reduction, "validate_args": self.validate_args}

    def _call_functional(self, *args: Any, **kwargs: Any) -> Any:
        """`functional(*args, **kwargs, **self._functional_kwargs())`: the body of every `forward`.

        `args` and `kwargs` are `forward`'s own arguments. A keyword argument that names a
        stored hyperparameter overrides it for this call, unless it is `None` (then the stored
        value is used): `LogitAdjustedLoss.forward(input, target, class_priors=None)`.
        """
        fn = type(self).functional
        if fn is None:
            raise NotImplementedError(f"{type(self).__name__} must set `functional`")
        stored = self._functional_kwargs()
        for name, value in kwargs.items():
            if value is not None or name not in stored:
                stored[name] = value
        return fn(*args, **stored)

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """Fallback for a subclass that writes no `forward`: `self._call_functional(...)`.

        It hides the loss's arguments from `help()`, IDEs and LightningCLI, so every built-in
        loss writes its own `forward` (checked for every registered loss by
        `tests/losses/test_signatures.py`); `element_mask` then binds the functional's signature.
        """
        return self._call_functional(*args, **kwargs)

    def element_mask(self, *args: Any, **kwargs: Any) -> Tensor | None:
        """Boolean mask of the elements that count in a `reduction="none"` result, or `None`.

        Given the arguments of `forward`, it is `target != ignore_index` when the loss takes class
        indices through `target_arg` and has an `ignore_index`; `None` (all elements count)
        otherwise, e.g. for soft targets.
        """
        ignore_index = getattr(self, "ignore_index", None)
        if self.target_arg is None or ignore_index is None:
            return None
        bound = _forward_signature(type(self)).bind_partial(*args, **kwargs)
        target = bound.arguments.get(self.target_arg)
        if not isinstance(target, Tensor) or target.is_floating_point():
            return None
        return target != ignore_index

    def extra_repr(self) -> str:
        parts = [f"{name}={_short_repr(value)}" for name, value in self.hparams.items()]
        parts.append(f"reduction={self.reduction!r}")
        if not self.validate_args:
            parts.append("validate_args=False")
        return ", ".join(parts)


# A dict, not `functools.cache`: typeshed sees `type[Loss]` as unhashable (nn.Module's
# `__hash__` is instance-level), so the decorator would not type-check.
_FORWARD_SIGNATURES: dict[type[Loss], inspect.Signature] = {}


def _forward_signature(cls: type[Loss]) -> inspect.Signature:
    # The arguments `forward` takes, computed once per class: its own signature without `self`,
    # or, for a subclass that kept the generic fallback, the functional's.
    signature = _FORWARD_SIGNATURES.get(cls)
    if signature is None:
        if cls.forward is Loss.forward and cls.functional is not None:
            signature = inspect.signature(cls.functional)
        else:
            full = inspect.signature(cls.forward)
            signature = full.replace(parameters=list(full.parameters.values())[1:])
        _FORWARD_SIGNATURES[cls] = signature
    return signature


def _short_repr(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"Tensor{list(value.shape)}" if value.numel() > 8 else repr(value.tolist())
    return repr(value)
