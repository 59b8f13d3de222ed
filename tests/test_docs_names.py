"""Loss names follow the rule documented in docs/guide/extending.md ("Names"), and the API
reference's registry-name line (docs/_ext/registry_names.py) is built from the live registry."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import griffe
import pytest

import lightning_losses.functional as LF
from lightning_losses import get_loss_class, list_losses
from lightning_losses.registry import registered_losses

ROOT = Path(__file__).resolve().parents[1]

# Names that break the rule. Listed, not renamed: renaming a public function is a breaking
# change the maintainers decide on. A new loss must not add to this list.
KNOWN_EXCEPTIONS = {
    # shares the plain cross-entropy function (`label_smoothing=` argument)
    "LabelSmoothingCrossEntropyLoss": "cross_entropy",
    # abbreviated: the rule gives `binary_cross_entropy_rec_loss`
    "BinaryCrossEntropyRecLoss": "bce_rec_loss",
}


def expected_letters(class_name: str) -> str:
    """The function name's letters (lower case, no underscores) that the rule gives."""
    if class_name.endswith("CrossEntropyLoss"):
        return class_name[: -len("Loss")].lower()
    return class_name.lower()


def test_the_rule_on_examples():
    assert expected_letters("FocalLoss") == "focal_loss".replace("_", "")
    assert expected_letters("GeneralizedCrossEntropyLoss") == "generalizedcrossentropy"
    assert expected_letters("CrossEntropyWithZLoss") == "crossentropywithzloss"


def test_functional_names_follow_one_rule():
    broken = {}
    for cls in registered_losses().values():
        fn = getattr(cls, "functional", None)
        if fn is None or cls.__name__ in KNOWN_EXCEPTIONS:
            continue
        if fn.__name__.replace("_", "") != expected_letters(cls.__name__):
            broken[cls.__name__] = fn.__name__
        assert getattr(LF, fn.__name__, None) is fn, f"{fn.__name__} is not public in functional"
    assert not broken, (
        f"function names off the rule in docs/guide/extending.md (class -> function): {broken}"
    )
    for cls_name, fn_name in KNOWN_EXCEPTIONS.items():
        assert get_loss_class(cls_name).functional.__name__ == fn_name, "exception list is stale"


def test_every_class_name_is_an_alias():
    aliases = set(list_losses(include_aliases=True))
    assert {cls.__name__ for cls in registered_losses().values()} <= aliases


def _extension():
    spec = importlib.util.spec_from_file_location(
        "registry_names", ROOT / "docs" / "_ext" / "registry_names.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RegistryNames()


def _docstring_after(extension, path: str) -> str:
    # Parse the one file (not the whole package) and fire the event the loader fires per object.
    *packages, module_name, name = path.split(".")
    parent = None
    for package in packages:
        parent = griffe.Module(package, parent=parent)
    file = ROOT.joinpath(*packages, f"{module_name}.py")
    code = file.read_text(encoding="utf-8")
    module = griffe.visit(module_name, filepath=file, code=code, parent=parent)
    obj = module[name]
    extension.on_object(obj=obj)
    return obj.docstring.value


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "lightning_losses.losses.robust.generalized_ce.GeneralizedCrossEntropyLoss",
            'Built by `get_loss("gce")`: registry name `gce` (aliases '
            "`generalized_cross_entropy`). "
            "Function: `lightning_losses.functional.generalized_cross_entropy`.",
        ),
        (
            "lightning_losses.losses.robust.generalized_ce.generalized_cross_entropy",
            "Class: `GeneralizedCrossEntropyLoss`, registry name `gce`.",
        ),
    ],
)
def test_registry_name_line_is_inserted_after_the_summary(path, expected):
    doc = _docstring_after(_extension(), path)
    paragraphs = doc.split("\n\n")
    assert paragraphs[1] == expected, paragraphs[:3]
    assert doc.count(expected) == 1  # added once, after the summary (which stays first)
