"""The package layering is enforced: no module imports from a layer above its own.

The layers, bottom to top (see `docs/design/layers.md`):

    validation, distributed, registry  ->  losses, functional  ->  nn, multitask  ->  mixins
        ->  data  ->  callbacks  ->  recipes

A module may import from its own layer or any lower one, never from a higher one; the recipe
modules never import each other (shared pieces live in `nn/`, `data/` or `mixins/`). Every import
statement counts, including those inside functions and under `TYPE_CHECKING`: a lazy import that
runs upward is still a dependency that runs upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_losses"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("validation", "distributed", "registry"),
    ("losses", "functional"),
    ("nn", "multitask"),
    ("mixins",),
    ("data",),
    ("callbacks",),
    ("recipes",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# `make demo`'s runner is a script over the image-classification recipe, not a recipe itself.
RECIPE_IMPORTS_ALLOWED = {("demo", "image_classification")}


def _modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def _top(path: Path) -> str:
    """The first-level name under `lightning_losses` a file belongs to (`losses`, `nn`, ...)."""
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """`(line, module)` of every `lightning_losses` import in the file, relative ones resolved."""
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    package = ("lightning_losses", *rel[:-1])  # the package a relative import starts from
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name) for a in node.names if a.name.startswith("lightning_losses")
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join((*base, node.module) if node.module else base)
            else:
                module = node.module or ""
            if module == "lightning_losses":  # `from lightning_losses import nn, ...`
                found += [(node.lineno, f"lightning_losses.{a.name}") for a in node.names]
            elif module.startswith("lightning_losses."):
                found.append((node.lineno, module))
    return found


def test_every_top_level_module_has_a_layer():
    tops = {_top(p) for p in _modules()}
    assert tops - set(RANK) == set(), "add the new module or package to LAYERS (and the docs)"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_run_downward(path):
    here = _top(path)
    upward = []
    for line, module in _imports(path):
        parts = module.split(".")
        target = parts[1]
        if target not in RANK:
            continue  # `lightning_losses.__version__` and the like
        if RANK[target] > RANK[here]:
            upward.append(f"line {line}: {module} ({target} is above {here})")
        elif here == target == "recipes" and len(parts) > 2:
            mine = path.relative_to(PACKAGE / "recipes").with_suffix("").parts[0]
            if parts[2] != mine and (mine, parts[2]) not in RECIPE_IMPORTS_ALLOWED:
                upward.append(f"line {line}: {module} (recipes never import each other)")
    assert not upward, "\n".join(upward)


def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch):
    # The test above must be able to fail: a loss importing a callback is reported.
    fake = PACKAGE / "losses" / "classification" / "ce.py"
    source = "from lightning_losses.callbacks.base import BehaviourCallback\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    with pytest.raises(AssertionError, match=r"callbacks is above losses"):
        test_imports_only_run_downward(fake)
