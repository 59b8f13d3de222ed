"""How the contract tests drive every registered loss: one `LossSpec` per registry name.

Test fixtures live here, not in the package: the registry only maps names to classes. Each
family module (`classification.py`, `robust.py`, ...) defines `SPECS: list[LossSpec]`;
`tests/losses/test_contract.py` checks that every registered name has exactly one spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tests.losses.specs.examples import LossExample

ExampleFn = Callable[[int, int, torch.Generator], LossExample]


@dataclass(frozen=True)
class LossSpec:
    """How to drive one registered loss in the family-agnostic contract tests.

    Attributes:
        name: the registry name.
        example: `example(batch_size, size, generator) -> LossExample`; `size` is the family's
            second dimension (number of classes, embedding size, negatives, ...).
        invalid_kwargs: constructor keyword sets that must raise `ValueError`/`TypeError` naming
            one of their keys.
        ignore_index: the loss takes `ignore_index` on `example.class_target`.
        per_element: `reduction="none"` returns one value per element (`[N, *]`).
        gradcheck: run float64 `gradcheck` (off only for a gradient piecewise by design; say why
            in `notes`).
        min_size: the smallest `size` the example accepts.
        bool_flags: constructor arguments that are bool flags (the string "False" must be rejected).
        notes: free text.
    """

    name: str
    example: ExampleFn
    invalid_kwargs: tuple[dict[str, Any], ...] = ()
    ignore_index: bool = False
    per_element: bool = False
    gradcheck: bool = True
    min_size: int = 2
    bool_flags: tuple[str, ...] = ()
    notes: str = ""


def all_specs() -> dict[str, LossSpec]:
    """Every family's specs by name (a duplicate name is an error).

    Every module of this package that defines `SPECS` is a family's spec module, so a new
    family only adds its file here.
    """
    import importlib
    import pkgutil

    out: dict[str, LossSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for spec in getattr(module, "SPECS", ()):
            if spec.name in out:
                raise ValueError(f"duplicate loss spec {spec.name!r}")
            out[spec.name] = spec
    return out
