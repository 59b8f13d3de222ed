"""One convention for recipe and DataModule hyperparameters: typed attributes, read everywhere.

`self.save_hyperparameters()` records the constructor's arguments (checkpoints, the logger,
`load_from_checkpoint`); the code reads the typed attributes set in `__init__`, which mypy
checks, never `hparams[...]` / `hparams.x` (a misspelt key there fails only at run time).
Writing into `hparams` to record a resolved value for checkpoints stays allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "lightning_losses"
# Segmentation's recipe and DataModule are new and follow in their own change.
PENDING = {"recipes/segmentation.py", "data/segmentation.py"}
MODULES = sorted(
    p
    for p in [
        *(PACKAGE / "recipes").glob("*.py"),
        *(PACKAGE / "data").glob("*.py"),
        *(PACKAGE / "data" / "interactions").glob("*.py"),
    ]
    if p.relative_to(PACKAGE).as_posix() not in PENDING
)


def hparams_reads(source: str) -> list[int]:
    """Line numbers where `<x>.hparams` is read (not the target of an item assignment)."""
    tree = ast.parse(source)
    stored = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "hparams" and id(node) not in stored
    ]


def test_the_check_finds_reads_and_allows_recording_writes():
    source = "a = self.hparams['lr']\nb = dm.hparams.get('x')\nself.hparams['n'] = 3\n"
    assert hparams_reads(source) == [1, 2]


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(PACKAGE).as_posix() for p in MODULES])
def test_recipes_and_datamodules_read_typed_attributes_not_hparams(path):
    lines = hparams_reads(path.read_text())
    assert not lines, f"{path.name} reads hparams at lines {lines}; read a typed attribute"
