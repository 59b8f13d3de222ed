"""What a new user reads first agrees with the code: versions, flags, data options, the home
page's example, and the figure links of the site (checks that need no build)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from packaging.version import Version

import lightning_losses
from lightning_losses.data import InteractionDataModule
from lightning_losses.data.interactions.files import SPLITS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHANGELOG = ROOT / "CHANGELOG.md"


def _pages() -> list[Path]:
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [p for p in pages if p.name != "changelog.md"]


def _releases() -> list[Version]:
    text = CHANGELOG.read_text(encoding="utf-8")
    return [Version(v) for v in re.findall(r"^## \[(\d+\.\d+\.\d+)\]", text, re.M)]


def test_versions_named_in_the_docs_are_released_and_not_newer_than_the_package():
    current = Version(lightning_losses.__version__)
    assert current == max(_releases()), "__version__ is the newest release in CHANGELOG.md"
    released = set(_releases())
    wrong = {}
    for page in _pages():
        for match in re.findall(r"(?<![\w.=<>~])(\d+\.\d+\.\d+)(?![\w.])", page.read_text("utf-8")):
            version = Version(match)
            if version.major == 0 and (version not in released or version > current):
                wrong.setdefault(str(page.relative_to(ROOT)), []).append(match)
    assert not wrong, f"versions of this package that do not exist (yet): {wrong}"


# Phrases that once drifted from the code: a flag that is not the documented one, internal
# milestone names, and the demo's runtime (measured ~2.5 min on 2 shared CPU cores).
STALE = {
    r"--data\.init_args\.": "LightningCLI takes `--data.<arg>` for the chosen class",
    r"(?i)\bstage [0-9]\b": "internal milestone names mean nothing to a user",
    r"contract v\d": "there is one loss contract, unversioned",
    r"about a minute|≈ ?25 s": "the demo takes ~2.5 min on 2 CPU cores",
    r"non-negative integers": "recsys ids may be integers or strings",
}


@pytest.mark.parametrize("pattern", sorted(STALE))
def test_no_stale_phrase(pattern):
    hits = [
        f"{page.relative_to(ROOT)}:{n}"
        for page in [*_pages(), ROOT / "lightning_losses" / "recipes" / "demo.py"]
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not hits, f"{STALE[pattern]}: {hits}"


def test_recsys_page_documents_the_file_options():
    page = (DOCS / "recipes" / "recsys.md").read_text(encoding="utf-8")
    for split in SPLITS:
        assert f"`split: {split}`" in page, split
    for option in ("user_col", "item_col", "train_path", "val_path", "test_path"):
        assert f"`{option}" in page, option
    assert "integers or strings" in page
    # the page names no option the DataModule does not take
    import inspect

    params = set(inspect.signature(InteractionDataModule).parameters)
    for option in re.findall(r"^\| `(\w+): ", page, re.M):
        assert option in params, f"recsys.md documents an unknown option {option!r}"


def test_home_page_has_install_an_example_that_runs_and_one_figure(capsys):
    page = (DOCS / "index.md").read_text(encoding="utf-8")
    assert "https://download.pytorch.org/whl/cpu" in page and "-c constraints.txt" in page
    (block,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert len(block.strip().splitlines()) <= 10
    exec(compile(block, "docs/index.md", "exec"), {"__name__": "__docs__"})
    assert "focal" in capsys.readouterr().out
    assert len(re.findall(r"!\[[^\]]*\]\(assets/[^)]+\.png\)", page)) == 1


def _figures_hook():
    spec = importlib.util.spec_from_file_location("figures", DOCS / "_ext" / "figures.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_link_to_their_full_size_image():
    hook = _figures_hook()
    html = '<p><img alt="a" src="../../assets/x.png" /></p><p>text <img src="i.svg"> inline</p>'
    out = hook.wrap_figures(html)
    assert out.startswith(
        '<p><a class="ll-figure" href="../../assets/x.png" title="open the full-size image">'
        '<img alt="a" src="../../assets/x.png" /></a></p>'
    )
    assert out.endswith('<p>text <img src="i.svg"> inline</p>'), "inline images are left alone"
    assert hook.wrap_figures(out) == out, "wrapping twice changes nothing"


def _getting_started_blocks() -> list[str]:
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", page, flags=re.S)


def test_getting_started_doctest_block_holds():
    import doctest

    (block,) = [b for b in _getting_started_blocks() if b.startswith(">>>")]
    test = doctest.DocTestParser().get_doctest(block, {}, "getting-started", "getting-started", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.slow
def test_getting_started_module_trains_and_validates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (block,) = [b for b in _getting_started_blocks() if "Trainer(" in b]
    assert "Trainer(max_epochs=5).fit(" in block
    block = block.replace("Trainer(max_epochs=5)", "trainer = Trainer(max_epochs=2)\ntrainer")
    namespace: dict = {"__name__": "__docs__"}
    exec(compile(block, "docs/getting-started.md", "exec"), namespace)
    assert 0.3 < float(namespace["trainer"].callback_metrics["val/acc"]) <= 1.0
