"""`make docs` (mkdocs --strict) builds, and the built API reference reads as intended.

One build (module fixture) serves every check: the strict build itself (every page in the nav
exists, every API block resolves, every cross-reference lands), doctests rendered as code rather
than nested blockquotes, no docstring line turned into a heading, and no remote script or
stylesheet in any page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is part of the [docs] extra installed by `make test`"
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _api_pages(site: Path) -> list[Path]:
    pages = sorted((site / "api").rglob("index.html"))
    assert pages, "no API pages were built"
    return pages


class _DocstringStructure(HTMLParser):
    """Headings and blockquotes that appear inside a rendered docstring (`.doc-contents`)."""

    def __init__(self) -> None:
        super().__init__()
        self.div_stack: list[bool] = []  # per open <div>: is it a .doc-contents?
        self.stray_headings: list[str] = []
        self.blockquotes = 0
        self._in_heading: str | None = None

    def _inside(self) -> bool:
        return any(self.div_stack)

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div":
            self.div_stack.append("doc-contents" in classes)
        elif self._inside() and re.fullmatch(r"h[1-6]", tag) and "doc-heading" not in classes:
            self._in_heading = tag
            self.stray_headings.append(f"<{tag}>")
        elif self._inside() and tag == "blockquote":
            self.blockquotes += 1

    def handle_endtag(self, tag):
        if tag == "div" and self.div_stack:
            self.div_stack.pop()
        elif tag == self._in_heading:
            self._in_heading = None

    def handle_data(self, data):
        if self._in_heading and self.stray_headings:
            self.stray_headings[-1] += data.strip()


@pytest.mark.slow
def test_docs_build_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "where-things-go" / "index.html").is_file()
    assert not (site / "_ext").exists(), "build helpers must not be published"


@pytest.mark.slow
def test_api_docstrings_render_examples_as_code_and_add_no_headings(site):
    problems = []
    for page in _api_pages(site):
        parser = _DocstringStructure()
        parser.feed(page.read_text(encoding="utf-8"))
        name = page.parent.relative_to(site)
        if parser.blockquotes:
            problems.append(
                f"{name}: {parser.blockquotes} blockquote(s) in docstrings (a doctest?)"
            )
        if parser.stray_headings:
            problems.append(f"{name}: docstring lines rendered as headings {parser.stray_headings}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_api_examples_are_highlighted_code(site):
    html = (site / "api" / "distributed" / "index.html").read_text(encoding="utf-8")
    # Pygments marks the `>>>` prompt as a `gp` token inside a highlighted code block (pycon).
    assert re.search(
        r'<div class="[^"]*highlight[^"]*"><pre>.*?<span class="gp">&gt;&gt;&gt; ', html, re.S
    )


@pytest.mark.slow
def test_built_site_loads_nothing_remote(site):
    tags = re.compile(r"<(?:script|link)\b[^>]*>", re.I)
    remote = re.compile(r"""\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I)
    offenders = {}
    for page in sorted(site.rglob("*.html")):
        hits = [
            tag
            for tag in tags.findall(page.read_text(encoding="utf-8"))
            if remote.search(tag)
            # a <link> loads something only as a stylesheet / preload (not rel=canonical etc.)
            and (tag.lower().startswith("<script") or re.search(r"stylesheet|preload", tag, re.I))
        ]
        if hits:
            offenders[str(page.relative_to(site))] = hits
    assert not offenders, offenders


@pytest.mark.slow
def test_math_is_left_for_the_bundled_katex(site):
    html = (site / "guide" / "contract" / "index.html").read_text(encoding="utf-8")
    assert "assets/katex/katex.min.js" in html and "assets/katex/katex.min.css" in html
    api = (site / "api" / "losses" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in api, "no math found in the losses API page"


@pytest.mark.slow
def test_every_loss_class_names_its_registry_name(site):
    from lightning_losses.registry import registered_losses

    html = (site / "api" / "losses" / "index.html").read_text(encoding="utf-8")
    missing = [
        cls.__name__
        for name, cls in registered_losses().items()
        # documented on the page (test_docs_api.py checks that every public class is) ...
        if f'id="lightning_losses.losses.{cls.__name__}"' in html
        # ... and its entry says which name builds it (docs/_ext/registry_names.py)
        and f"registry name <code>{name}</code>" not in html
    ]
    assert not missing, f"no registry-name line for {missing}"


@pytest.mark.slow
def test_figures_are_links_to_the_full_size_image_and_the_layout_css_is_loaded(site):
    bare, pages = [], 0
    for page in sorted(site.rglob("index.html")):
        html = page.read_text(encoding="utf-8")
        bare += [f"{page.parent.relative_to(site)}" for _ in re.findall(r"<p>\s*<img\b", html)]
        pages += "assets/stylesheets/extra.css" in html
    assert not bare, f"figures without a link to the full-size image: {bare}"
    assert pages == len(list(site.rglob("index.html")))
    css = (site / "assets" / "stylesheets" / "extra.css").read_text(encoding="utf-8")
    assert re.search(r"\.md-grid\s*\{\s*max-width:\s*100rem", css), "content column not widened"
    assert "overflow-x: auto" in css, "long display math must scroll, not be clipped"


@pytest.mark.slow
def test_catalog_formulas_are_math_not_code(site):
    for family in ("classification", "contrastive", "metric", "language", "preference"):
        html = (site / "catalog" / family / "index.html").read_text(encoding="utf-8")
        assert 'class="arithmatex"' in html, f"catalog/{family}: no KaTeX math"
        # a formula in a code span: a Greek letter or a sum/minus sign inside <code>
        code_math = re.findall(r"<code>[^<]*[Σ∑−][^<]*</code>", html)
        assert not code_math, f"catalog/{family}: formulas rendered as code {code_math[:3]}"
