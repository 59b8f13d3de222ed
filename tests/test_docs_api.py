"""Every public name (each public subpackage's `__all__`) appears in the API reference.

A name counts as documented when some `::: identifier` block in `docs/api/*.md` renders the very
same object: `::: lightning_losses.losses.FocalLoss` documents `lightning_losses.losses.FocalLoss`;
a whole-module
`::: lightning_losses.data.digits` documents every name in that module's `__all__` (minus any its
`filters` / `members` options leave out).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
API_DOCS = sorted((ROOT / "docs" / "api").glob("*.md"))

# The public subpackages and modules whose `__all__` is the public API. The loss families'
# own files are layout, not API: their names are public in `losses` / `functional` only (the
# family packages' `__all__` are empty).
PUBLIC_PACKAGES = (
    "lightning_losses.losses",
    "lightning_losses.functional",
    "lightning_losses.mixins",
    "lightning_losses.callbacks",
    "lightning_losses.registry",
    "lightning_losses.distributed",
    "lightning_losses.data",
    "lightning_losses.nn",
    "lightning_losses.recipes",
)


def _public_modules() -> list[str]:
    names = []
    for name in PUBLIC_PACKAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # a subpackage that does not exist (yet)
                continue
            names.append(name)  # broken import: fail in the test, not at collection
            continue
        except ImportError:
            names.append(name)
            continue
        names.append(name)
        if name == "lightning_losses.losses" or not hasattr(module, "__path__"):
            if name == "lightning_losses.losses":  # the family packages, not their files
                names += [
                    f"{name}.{info.name}"
                    for info in pkgutil.iter_modules(module.__path__)
                    if info.ispkg and not info.name.startswith("_")
                ]
            continue
        names += [
            f"{name}.{info.name}"
            for info in pkgutil.iter_modules(module.__path__)
            if not info.name.startswith("_")
        ]
    return names


def _resolve(path: str):
    """Import `a.b.c.Name` as Python would (longest importable module prefix, then getattr)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(path)


_DIRECTIVE = re.compile(
    r"^::: *(?P<ident>[\w.]+)[ \t]*\n(?P<opts>(?:[ \t]+.*\n|[ \t]*\n(?=[ \t]+\S))*)", re.M
)


def _directives(pages: list[Path] = API_DOCS) -> list[tuple[str, str, dict]]:
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8") + "\n"
        for match in _DIRECTIVE.finditer(text):
            opts = yaml.safe_load(match["opts"]) if match["opts"].strip() else None
            found.append((page.name, match["ident"], (opts or {}).get("options", {})))
    return found


def _shown(name: str, options: dict) -> bool:
    """Would mkdocstrings render member `name` of a module with these options?"""
    members = options.get("members")
    if members is False:
        return False
    if isinstance(members, list) and name not in members:
        return False
    for rule in options.get("filters", ["!^_"]):
        negate = rule.startswith("!")
        matched = re.search(rule[1:] if negate else rule, name) is not None
        if negate and matched:
            return False
    return True


def _documented_objects(pages: list[Path] = API_DOCS) -> tuple[dict[int, str], list[str]]:
    documented, unresolved = {}, []
    for page, ident, options in _directives(pages):
        try:
            obj = _resolve(ident)
        except (ImportError, AttributeError):
            unresolved.append(f"{page}: ::: {ident}")
            continue
        documented[id(obj)] = ident
        if isinstance(obj, types.ModuleType):
            for name in getattr(obj, "__all__", ()):
                if _shown(name, options):
                    documented[id(getattr(obj, name))] = f"{ident}.{name}"
    return documented, unresolved


def test_every_api_directive_resolves():
    _, unresolved = _documented_objects()
    assert not unresolved, "API blocks naming objects that do not exist:\n" + "\n".join(unresolved)


@pytest.mark.parametrize("module_name", _public_modules())
def test_every_public_name_is_in_the_api_reference(module_name):
    module = importlib.import_module(module_name)
    public = getattr(module, "__all__", None)
    assert public is not None, f"{module_name} has no __all__: declare its public names"
    documented, _ = _documented_objects()
    missing = [
        name
        for name in public
        if not isinstance(getattr(module, name), types.ModuleType)
        and id(getattr(module, name)) not in documented
    ]
    assert not missing, (
        f"public names of {module_name} missing from docs/api/*.md (add a `::: ...` block): "
        f"{missing}"
    )


def test_callbacks_page_lists_the_behaviours():
    from lightning_losses.callbacks import BehaviourCallback, LossReweighting, PLDResampling

    documented, _ = _documented_objects([ROOT / "docs" / "api" / "callbacks.md"])
    for cls in (LossReweighting, PLDResampling, BehaviourCallback):
        assert id(cls) in documented, f"docs/api/callbacks.md does not render {cls.__name__}"


def test_griffe_sees_each_api_block_as_python_does():
    """mkdocstrings (griffe, static analysis) must render the object Python imports.

    Griffe cannot store a submodule and a package member of the same name and keeps the
    submodule: with `classification/cross_entropy.py` exporting `cross_entropy`,
    `::: lightning_losses.functional.cross_entropy` renders the *module*. Such a block must name
    the defining module instead (and keep the public path as a Markdown anchor).
    """
    griffe = pytest.importorskip("griffe")
    package = griffe.load("lightning_losses", search_paths=[str(ROOT)], resolve_aliases=True)
    wrong = []
    for page, ident, _ in _directives():
        try:
            obj = _resolve(ident)
            static = package[ident.removeprefix("lightning_losses.")]
        except (ImportError, AttributeError, KeyError):
            continue  # reported by test_every_api_directive_resolves / the strict build
        if isinstance(obj, types.ModuleType) != static.is_module:
            wrong.append(f"{page}: ::: {ident} is a {type(obj).__name__} but griffe sees a module")
    assert not wrong, "\n".join(wrong)
