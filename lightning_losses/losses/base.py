"""The base class of every loss module: hyperparameters stored once, the math in the functional."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar

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

    ALL: ClassVar[tuple[str, ...]] = (
        CLASSIFICATION,
        MULTILABEL,
        RANKING,
        EMBEDDINGS,
        SEQUENCES,
        PREFERENCE,
        DENSE,
        REGRESSION,
    )


class Loss(nn.Module):
    """Base of every `lightning_losses` loss module.

    A subclass sets `functional` (its functional form, where the math lives), `input_kind`, and
    `target_arg` (the `forward` argument that holds class indices, or `None`), and writes an
    `__init__` with its explicit signature that validates the hyperparameters with *the same*
    checker its functional uses and hands them to `super().__init__(**hparams)`. The base then
    owns the rest:

    - hyperparameters stored once, in `hparams` (tensors such as a class `weight` become buffers,
      so they follow `.to(device)` and are saved in `state_dict`); non-finite tensors are rejected;
    - `forward(*args, **kwargs)` calls `functional(*args, **kwargs, **hparams, reduction=...,
      validate_args=...)`;
    - `extra_repr` prints every hyperparameter (`FocalLoss(gamma=2.0, ...)`);
    - `element_mask(*args, **kwargs)`: which elements of a `reduction="none"` result count.

    Args:
        reduction: `"mean" | "sum" | "none"`. A plain attribute:
            [LossMixin][lightning_losses.mixins.LossMixin] sets `"none"` on its copy.
        validate_args: run the checks that need a host-device sync (label range, target values,
            finiteness of tensor arguments) on every call. Turn off in hot loops once the
            pipeline is known to be correct; shape and type checks always run.
        **hparams: the loss's validated hyperparameters.
    """

    registry_name: ClassVar[str] = ""
    functional: ClassVar[Callable[..., Tensor] | None] = None
    input_kind: ClassVar[str] = InputKind.CLASSIFICATION
    target_arg: ClassVar[str | None] = "target"

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

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        fn = type(self).functional
        if fn is None:
            raise NotImplementedError(
                f"{type(self).__name__} must set `functional` or override forward"
            )
        return fn(
            *args,
            **kwargs,
            **self.hparams,
            reduction=self.reduction,
            validate_args=self.validate_args,
        )

    def element_mask(self, *args: Any, **kwargs: Any) -> Tensor | None:
        """Boolean mask of the elements that count in a `reduction="none"` result, or `None`.

        Given the arguments of `forward`, it is `target != ignore_index` when the loss takes class
        indices through `target_arg` and has an `ignore_index`; `None` (all elements count)
        otherwise, e.g. for soft targets.
        """
        ignore_index = getattr(self, "ignore_index", None)
        if self.target_arg is None or ignore_index is None:
            return None
        target = _bind(type(self))(*args, **kwargs).arguments.get(self.target_arg)
        if not isinstance(target, Tensor) or target.is_floating_point():
            return None
        return target != ignore_index

    def extra_repr(self) -> str:
        parts = [f"{name}={_short_repr(value)}" for name, value in self.hparams.items()]
        parts.append(f"reduction={self.reduction!r}")
        if not self.validate_args:
            parts.append("validate_args=False")
        return ", ".join(parts)


@cache
def _bind(cls: type[Loss]) -> Callable[..., inspect.BoundArguments]:
    # The functional's signature names the forward arguments (forward itself is `*args`).
    target = cls.functional if cls.forward is Loss.forward else cls.forward
    signature = inspect.signature(target)
    if cls.forward is not Loss.forward:
        params = list(signature.parameters.values())[1:]  # drop `self`
        signature = signature.replace(parameters=params)
    return signature.bind_partial


def _short_repr(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"Tensor{list(value.shape)}" if value.numel() > 8 else repr(value.tolist())
    return repr(value)
