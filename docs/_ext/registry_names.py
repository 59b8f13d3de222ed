"""Griffe extension for the API reference: each loss says which registry name builds it.

A loss class's rendered docstring gains a line after its summary naming its registry name
(what `get_loss`, `configure_criterion` and the recipes' YAML take), its aliases and its
function in `lightning_losses.functional`; a loss function's docstring names the class(es) and
registry name(s) built on it. The names come from the live registry, so a new loss gets the line
without anyone writing it. Wired in `mkdocs.yml` next to `example_sections.py`; docs only (the
runtime `__doc__` is untouched).
"""

from __future__ import annotations

import importlib
from typing import Any

import griffe

_MARK = "registry name"  # tests/test_docs.py looks for it in the built page


def _registry() -> tuple[dict[type, str], dict[str, list[str]]]:
    from lightning_losses import get_loss_class, list_losses
    from lightning_losses.registry import registered_losses

    names = {cls: name for name, cls in registered_losses().items()}
    aliases: dict[str, list[str]] = {}
    for alias in list_losses(include_aliases=True):
        name = names[get_loss_class(alias)]
        if alias != name:
            aliases.setdefault(name, []).append(alias)
    return names, aliases


def _code(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


class RegistryNames(griffe.Extension):
    """Insert the registry name (loss classes) or the classes (loss functions) into docstrings."""

    def __init__(self) -> None:
        self._names, self._aliases = _registry()
        # function -> the classes computing with it (cross_entropy serves two classes)
        self._classes_of: dict[Any, list[type]] = {}
        for cls in self._names:
            fn = getattr(cls, "functional", None)
            if fn is not None:
                self._classes_of.setdefault(fn, []).append(cls)

    def _runtime(self, obj: griffe.Object) -> Any:
        parent = obj.parent
        if parent is None or not parent.is_module or not obj.path.startswith("lightning_losses."):
            return None
        try:
            return getattr(importlib.import_module(parent.path), obj.name, None)
        except ImportError:
            return None

    def _line(self, runtime: Any) -> str | None:
        if isinstance(runtime, type) and runtime in self._names:
            name = self._names[runtime]
            others = [a for a in self._aliases.get(name, []) if a != runtime.__name__]
            also = f" (aliases {_code(others)})" if others else ""
            fn = getattr(runtime, "functional", None)
            func = f" Function: `lightning_losses.functional.{fn.__name__}`." if fn else ""
            return f'Built by `get_loss("{name}")`: {_MARK} `{name}`{also}.{func}'
        classes = self._classes_of.get(runtime) if callable(runtime) else None
        if classes:
            built = "; ".join(f"`{c.__name__}`, {_MARK} `{self._names[c]}`" for c in classes)
            return f"Class: {built}."
        return None

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None or not (obj.is_class or obj.is_function):
            return
        line = self._line(self._runtime(obj))
        if line is None or line in obj.docstring.value:  # an object can be visited twice
            return
        # After the summary paragraph, so it reads first and never lands inside a section.
        summary, sep, rest = obj.docstring.value.partition("\n\n")
        obj.docstring.value = f"{summary}\n\n{line}{sep}{rest}"
