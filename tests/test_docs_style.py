"""The docs render offline and every docstring is Markdown that mkdocstrings renders as written.

* No Sphinx / reStructuredText in docstrings: roles (`:math:`, `:func:`, ...) show up as literal
  text in the API reference, `.. math::` is not math, a `===` table ruler turns the row above into
  a TOC heading, and a `::` literal block loses its code formatting. Use `$...$` / `$$ ... $$`,
  autorefs `[Name][lightning_losses.x.Name]` or backticks, Markdown tables and fenced code.
* No CDN: every script and stylesheet the site loads is bundled under `docs/` (KaTeX included),
  and the theme does not fetch Google Fonts.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lightning_losses"
DOCS = ROOT / "docs"
VENDORED = DOCS / "assets" / "katex"  # third-party minified files, checked by their own source

# Each pattern with what to write instead.
RST = {
    r":(math|func|class|meth|attr|mod|data|obj|exc|ref|doc):`": "a Sphinx role: use $...$, "
    "[Name][lightning_losses.x.Name] or backticks",
    r"^\s*\.\. (math|code-block|code|note|warning|seealso)::": "an rst directive: use $$ ... $$, "
    "a fenced code block or an admonition",
    r"^\s*={3,}(\s+={3,})*\s*$": "an rst table ruler (becomes a TOC heading): use a Markdown table",
    r"^(?!\s*\.\. ).*\S::\s*$": "an rst literal block (`text::`): use an `Example:` section or "
    "a fenced block",
}


def _docstrings(path: Path):
    """(line, text) of every docstring: module, class, function, and attribute docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            yield node.lineno, node.value.value


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docstrings_have_no_sphinx_or_rst(path):
    problems = []
    for lineno, text in _docstrings(path):
        for offset, line in enumerate(text.splitlines()):
            for pattern, advice in RST.items():
                if re.search(pattern, line):
                    problems.append(f"{path.name}:{lineno + offset}: {line.strip()!r} — {advice}")
                    break
    assert not problems, "\n".join(problems)


_EXTERNAL = re.compile(
    r"""(<script[^>]*\bsrc\s*=\s*["']?(https?:)?//)"""
    r"""|(<link[^>]*\bhref\s*=\s*["']?(https?:)?//)"""
    r"""|(@import\s+(url\()?["']?(https?:)?//)"""
    r"""|(url\(\s*["']?(https?:)?//)""",
    re.IGNORECASE,
)


def _mkdocs_config() -> dict:
    class _Loader(yaml.SafeLoader):  # mkdocs.yml may use `!!python/name:` tags
        pass

    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)


def test_mkdocs_loads_no_remote_script_or_stylesheet():
    config = _mkdocs_config()
    assets = [*config.get("extra_javascript", []), *config.get("extra_css", [])]
    for asset in assets:
        path = asset if isinstance(asset, str) else asset.get("path", "")
        assert not re.match(r"(https?:)?//", path), f"remote asset in mkdocs.yml: {path}"
        assert (DOCS / path).is_file(), f"mkdocs.yml names {path}, which is not under docs/"
    assert config["theme"].get("font") is False, (
        "theme.font must be false: Material otherwise loads Google Fonts from a CDN"
    )


def test_katex_is_bundled():
    for name in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "LICENSE"):
        assert (VENDORED / name).is_file(), name
    css = (VENDORED / "katex.min.css").read_text(encoding="utf-8")
    fonts = set(re.findall(r"url\(([^)]+)\)", css))
    assert fonts, "katex.min.css references no fonts"
    missing = [f for f in fonts if not (VENDORED / f.strip("'\"")).is_file()]
    assert not missing, f"fonts referenced by katex.min.css but not bundled: {missing}"


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in sorted(DOCS.rglob("*"))
        if p.suffix in {".md", ".html", ".js", ".css"} and VENDORED not in p.parents
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_docs_pages_load_nothing_remote(path):
    hits = [m.group(0) for m in _EXTERNAL.finditer(path.read_text(encoding="utf-8"))]
    assert not hits, f"{path.relative_to(ROOT)} loads a remote script/stylesheet/font: {hits}"
