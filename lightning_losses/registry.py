"""Loss registry: `register_loss` / `get_loss` / `get_loss_class` / `list_losses`.

The registry maps short names (and aliases, and class names) to loss classes. It is a leaf
module: it imports no loss, the loss modules import it to register themselves, and the package
`lightning_losses` imports every built-in loss, so any `lightning_losses.*` import fills it.
What the classes declare about themselves (`input_kind`, `functional`, `target_arg`) stays on
the class.

The four entry points are public at the top level (`lightning_losses.get_loss`, ...), which is
their one documented import path; this module's own public name is `registered_losses`.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, TypeVar

from torch import nn

# `register_loss`, `get_loss`, `get_loss_class` and `list_losses` are exported by the package
# `lightning_losses` (one public path per name).
__all__ = ["registered_losses"]

_REGISTRY: dict[str, type[nn.Module]] = {}
_ALIASES: dict[str, str] = {}
# Registry names retired because they were ambiguous: `nce` also means noise-contrastive
# estimation, `mae` the regression mean absolute error. Asking for one gives an error naming the
# new name instead of a guess.
_RENAMED: dict[str, str] = {"nce": "normalized_ce", "mae": "prob_mae"}

M = TypeVar("M", bound=type[nn.Module])


def register_loss(name: str, *, aliases: tuple[str, ...] = ()):
    """Class decorator registering a loss class under `name`, its `aliases` and its class name.

    Example:
        >>> from torch import Tensor
        >>> from lightning_losses import get_loss, register_loss
        >>> from lightning_losses.losses import Loss
        >>> def my_loss(input, target, *, reduction="mean", validate_args=True):
        ...     return (input - target).abs().mean()
        >>> @register_loss("my_l1_doc")
        ... class MyL1Loss(Loss):
        ...     functional = staticmethod(my_loss)
        ...     def forward(self, input: Tensor, target: Tensor) -> Tensor:
        ...         "Loss of `input [N, *]` against `target [N, *]`."
        ...         return self._call_functional(input, target)
        >>> type(get_loss("my_l1_doc")).__name__, type(get_loss("MyL1Loss")).__name__
        ('MyL1Loss', 'MyL1Loss')
    """

    def decorator(cls: M) -> M:
        for key in (name, *aliases, cls.__name__):
            existing = _lookup(key)
            if (
                existing is not None
                and existing is not cls
                and existing.__qualname__ != cls.__qualname__
            ):
                raise ValueError(f"loss name {key!r} is already registered to {existing}")
        _REGISTRY[name] = cls
        for alias in (*aliases, cls.__name__):
            if alias != name:
                _ALIASES[alias] = name
        cls.registry_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def _lookup(key: str) -> type[nn.Module] | None:
    return _REGISTRY.get(_ALIASES.get(key, key))


def get_loss_class(name: str) -> type[nn.Module]:
    """The loss class registered under `name` (a short name, an alias or the class name).

    Raises:
        TypeError: `name` is not a string.
        KeyError: unknown name; the message lists the closest registered names, or the new name
            of a renamed loss.
    """
    if not isinstance(name, str):
        raise TypeError(f"loss name must be a str, got {type(name).__name__}")
    cls = _lookup(name)
    if cls is not None:
        return cls
    if name in _RENAMED:
        raise KeyError(f"the loss {name!r} was renamed to {_RENAMED[name]!r}")
    candidates = sorted(set(_REGISTRY) | set(_ALIASES))
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f" Closest registered names: {close}." if close else ""
    raise KeyError(f"No loss registered under {name!r}.{hint} Use list_losses() to see all names.")


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered under `name` (short name, alias or class name) with `kwargs`.

    Raises:
        KeyError: unknown name; the message lists the closest registered names.

    Example:
        >>> import torch
        >>> from lightning_losses import get_loss
        >>> loss = get_loss("poly", epsilon=1.0)
        >>> loss(torch.zeros(2, 3), torch.tensor([0, 2]))
        tensor(1.7653)
        >>> get_loss("FocalLoss", gamma=2.0)
        FocalLoss(gamma=2.0, alpha=None, weight=None, ignore_index=-100, reduction='mean')
    """
    return get_loss_class(name)(**kwargs)


def registered_losses() -> dict[str, type[nn.Module]]:
    """Every registered loss class by its short name (no aliases), sorted by name."""
    return dict(sorted(_REGISTRY.items()))


def list_losses(pattern: str = "*", *, include_aliases: bool = False) -> list[str]:
    """Sorted registered names matching a shell-style `pattern` (`list_losses("*focal*")`).

    With `include_aliases`, aliases and class names are listed too.
    """
    names = set(_REGISTRY) | (set(_ALIASES) if include_aliases else set())
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))
