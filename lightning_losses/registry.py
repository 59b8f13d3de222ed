"""Loss registry: ``register_loss`` / ``get_loss`` / ``list_losses``.

Every loss registers a short name together with a *spec* that tells family-agnostic tests how to
drive it (how to build a small valid input, which hyperparameters are invalid, whether it takes
``ignore_index``). This is what lets the contract tests in ``tests/losses/test_contract.py``
cover every loss added later without a line of new test code.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

__all__ = [
    "LossExample",
    "LossSpec",
    "get_loss",
    "get_loss_spec",
    "list_losses",
    "register_loss",
]


@dataclass
class LossExample:
    """A small valid call of a loss, built by a spec's ``example`` function.

    The loss is called as ``loss(*inputs, *targets, **kwargs)``.

    Attributes:
        inputs: differentiable floating-point inputs (logits, scores, embeddings). Contract tests
            scale them to ±1e4, cast them to bf16 and run ``gradcheck`` on them.
        targets: non-differentiable inputs (labels, masks, soft targets).
        kwargs: extra keyword arguments for ``forward``.
        class_target: index into ``targets`` of an integer class-index tensor whose entries may be
            set to ``ignore_index`` or pushed out of range (``None`` when there is none).
        num_classes: the valid label range of ``targets[class_target]`` is ``[0, num_classes)``.
    """

    inputs: tuple[Tensor, ...]
    targets: tuple[Tensor, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    class_target: int | None = None
    num_classes: int | None = None

    def args(self) -> tuple[Tensor, ...]:
        return (*self.inputs, *self.targets)


ExampleFn = Callable[[int, int, torch.Generator], LossExample]


@dataclass(frozen=True)
class LossSpec:
    """What the registry knows about one loss.

    Attributes:
        name: the short registry name (``get_loss(name)``).
        cls: the ``nn.Module`` class.
        functional: the functional form (same math, the class calls it).
        example: ``example(batch_size, size, generator) -> LossExample``; ``size`` is the
            family's second dimension (number of classes, embedding size, negatives, ...).
        invalid_kwargs: constructor keyword sets that must raise ``ValueError``/``TypeError``.
        ignore_index: whether the loss takes ``ignore_index`` on ``example.class_target``.
        per_element: ``reduction="none"`` returns one value per element of a dense target
            (``[N, *]``) rather than one per sample.
        gradcheck: run float64 ``gradcheck`` (off only for losses whose gradient is
            piecewise by design, with the reason in ``notes``).
        min_size: the smallest ``size`` the example accepts.
        family: the CATALOG.md family letter and name, for docs.
        notes: free text for the docs table.
    """

    name: str
    cls: type[nn.Module]
    functional: Callable[..., Tensor] | None
    example: ExampleFn
    invalid_kwargs: tuple[dict[str, Any], ...] = ()
    ignore_index: bool = False
    per_element: bool = False
    gradcheck: bool = True
    min_size: int = 2
    family: str = ""
    notes: str = ""


_REGISTRY: dict[str, LossSpec] = {}
_ALIASES: dict[str, str] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_loss(
    name: str,
    *,
    functional: Callable[..., Tensor] | None,
    example: ExampleFn,
    aliases: tuple[str, ...] = (),
    invalid_kwargs: tuple[dict[str, Any], ...] = (),
    ignore_index: bool = False,
    per_element: bool = False,
    gradcheck: bool = True,
    min_size: int = 2,
    family: str = "",
    notes: str = "",
) -> Callable[[M], M]:
    """Class decorator that registers a loss module under ``name`` (and ``aliases``).

    Example:
        >>> from torch import nn
        >>> from lightning_losses.registry import register_loss, get_loss
        >>> from lightning_losses.losses.examples import classification_example
        >>> @register_loss("my_ce_doc", functional=None, example=classification_example)
        ... class MyCE(nn.CrossEntropyLoss):
        ...     pass
        >>> type(get_loss("my_ce_doc")).__name__
        'MyCE'
    """

    def decorator(cls: M) -> M:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                existing = get_loss_spec(key).cls
                if existing is not cls and existing.__qualname__ != cls.__qualname__:
                    raise ValueError(f"loss name {key!r} is already registered to {existing}")
        spec = LossSpec(
            name=name,
            cls=cls,
            functional=functional,
            example=example,
            invalid_kwargs=tuple(invalid_kwargs),
            ignore_index=ignore_index,
            per_element=per_element,
            gradcheck=gradcheck,
            min_size=min_size,
            family=family,
            notes=notes,
        )
        _REGISTRY[name] = spec
        for alias in aliases:
            _ALIASES[alias] = name
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def _ensure_builtin_losses_loaded() -> None:
    # Importing the package registers every built-in loss; done lazily so that
    # `registry` itself has no import-time dependency on the loss modules.
    import lightning_losses.losses  # noqa: F401


def get_loss_spec(name: str) -> LossSpec:
    """Return the :class:`LossSpec` registered under ``name`` (or an alias)."""
    _ensure_builtin_losses_loaded()
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        candidates = sorted(set(_REGISTRY) | set(_ALIASES))
        close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
        hint = f" Closest registered names: {close}." if close else ""
        raise KeyError(
            f"No loss registered under {name!r}.{hint} Use list_losses() to see all names."
        )
    return _REGISTRY[key]


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered under ``name`` with ``kwargs``.

    Raises:
        KeyError: unknown name; the message lists the closest registered names.

    Example:
        >>> import torch
        >>> from lightning_losses import get_loss
        >>> loss = get_loss("poly", epsilon=1.0)
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2]))
        tensor(1.7653)
    """
    return get_loss_spec(name).cls(**kwargs)


def list_losses(pattern: str = "*", *, include_aliases: bool = False) -> list[str]:
    """Sorted registered names matching a shell-style ``pattern`` (``list_losses("*focal*")``)."""
    _ensure_builtin_losses_loaded()
    names = set(_REGISTRY) | (set(_ALIASES) if include_aliases else set())
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))
