"""The habits of a maintained project, checked: one version, a dated changelog, self-documenting
make targets, CI running lint and tests, lint tools installed by the extra CI uses, every docs page
reachable, and code and docs that stand on their own (no citation of internal working notes).
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import lightning_losses

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CHANGELOG = ROOT / "CHANGELOG.md"
MAKEFILE = ROOT / "Makefile"

# `## [1.2.3] - 2026-01-31` (Keep a Changelog); `## [Unreleased]` holds the work in progress.
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$")


def _changelog_headings() -> list[str]:
    return [
        line for line in CHANGELOG.read_text(encoding="utf-8").splitlines() if line[:3] == "## "
    ]


def _releases() -> list[tuple[Version, str]]:
    return [
        (Version(m[1]), m[2]) for m in map(RELEASE.match, _changelog_headings()) if m is not None
    ]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------- version
def test_version_is_the_newest_changelog_release_and_the_installed_metadata():
    newest = str(_releases()[0][0])
    assert lightning_losses.__version__ == newest, (
        f"lightning_losses.__version__ is {lightning_losses.__version__}, the newest release in "
        f"CHANGELOG.md is {newest}: release the Unreleased section or fix the version"
    )
    assert version("lightning-losses") == lightning_losses.__version__, (
        "the installed metadata is stale: reinstall (`make install`) after changing __version__"
    )


def test_version_is_written_once():
    dynamic = _pyproject()["project"].get("dynamic", [])
    assert "version" in dynamic and "version" not in _pyproject()["project"]
    attr = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "lightning_losses.__version__"


def test_changelog_is_dated_ordered_and_has_an_unreleased_section():
    headings = _changelog_headings()
    assert headings[0] == "## [Unreleased]", "the first section collects the unreleased changes"
    malformed = [h for h in headings[1:] if not RELEASE.match(h)]
    assert not malformed, f"release headings must read `## [X.Y.Z] - YYYY-MM-DD`: {malformed}"
    releases = _releases()
    assert [v for v, _ in releases] == sorted((v for v, _ in releases), reverse=True)
    assert len({v for v, _ in releases}) == len(releases), "a version is listed twice"
    dates = [d for _, d in releases]
    assert dates == sorted(dates, reverse=True), "newest release first"


def test_docs_changelog_is_the_repository_changelog():
    # A link, not a copy that drifts.
    page = ROOT / "docs" / "changelog.md"
    assert page.is_symlink() and page.resolve() == CHANGELOG.resolve()


# ------------------------------------------------------------------------------ make and CI
def _make_targets() -> dict[str, str]:
    """`{target: the rest of its rule line}` for every named target of the Makefile."""
    targets = {}
    for line in MAKEFILE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)(.*)$", line)  # not `VAR := value`
        if m:
            targets[m[1]] = m[2]
    return targets


def _recipe(target: str) -> list[str]:
    lines = MAKEFILE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{target}\s*:", line))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return body


def test_every_make_target_has_a_help_line():
    targets = _make_targets()
    assert {"help", "install", "test", "test-fast", "lint", "docs", "demo", "bench"} <= set(targets)
    undocumented = [t for t, rest in targets.items() if "## " not in rest]
    assert not undocumented, f"give each target a `## help` comment: {undocumented}"


def test_test_runs_everything_and_test_fast_skips_only_slow_tests():
    test, fast = _recipe("test"), _recipe("test-fast")
    assert len(test) == 1 and "pytest" in test[0] and "slow" not in test[0], test
    assert len(fast) == 1 and fast[0] == f'{test[0]} -m "not slow"', fast


def test_lint_runs_ruff_mypy_and_codespell_from_the_lint_extra():
    lint = _recipe("lint")
    assert any("ruff format --check" in c for c in lint) and any("ruff check" in c for c in lint)
    tools = {re.sub(r"^\$\(BIN\)/", "", c).split()[0] for c in lint}
    assert tools == {"ruff", "mypy", "codespell"}, lint
    extra = {
        re.split(r"[<>=!~\[ ;]", req)[0]
        for req in _pyproject()["project"]["optional-dependencies"]["lint"]
    }
    assert tools <= extra, (
        f"`make lint` runs tools the lint extra does not install: {tools - extra}"
    )
    installed = re.search(r"^EXTRAS\s*:=\s*(\S+)", MAKEFILE.read_text(encoding="utf-8"), re.M)
    assert installed and "lint" in installed[1].split(","), "`make install` must install [lint]"


def test_ci_runs_lint_then_the_full_suite():
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "make lint" in commands and "make test" in commands
    assert commands.index("make lint") < commands.index("make test")


def test_pre_commit_hooks_match_the_pinned_lint_tools():
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    revs = {repo["repo"].rsplit("/", 1)[-1]: repo["rev"] for repo in config["repos"]}
    pins = {
        re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0]: req
        for req in _pyproject()["project"]["optional-dependencies"]["lint"]
    }
    for repo, tool in (("ruff-pre-commit", "ruff"), ("codespell", "codespell")):
        spec = SpecifierSet(pins[tool][len(tool) :])
        assert Version(revs[repo].lstrip("v")) in spec, f"{repo} {revs[repo]} vs {pins[tool]}"


# ------------------------------------------------------------------------------------- docs
def _nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    if isinstance(node, list):
        return [p for value in node for p in _nav_pages(value)]
    return []


def test_every_docs_page_is_in_the_nav():
    class _Loader(yaml.SafeLoader):  # mkdocs.yml may use `!!python/name:` tags
        pass

    _Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)
    nav = set(_nav_pages(config["nav"]))
    docs = ROOT / "docs"
    pages = {
        p.relative_to(docs).as_posix()
        for p in docs.rglob("*.md")
        if not {"_ext", "assets"} & set(p.relative_to(docs).parts)
    }
    assert not pages - nav, f"pages no menu reaches: {sorted(pages - nav)}"
    assert not nav - pages, f"menu entries without a page: {sorted(nav - pages)}"


# --------------------------------------------------------------------- no internal citations
# The working notes the project was planned with are not shipped: code, tests and docs cite the
# paper, the peer library or the project's own docs pages (`docs/design/...`) instead.
# The note names are split so that this file does not itself read as a citation to a plain grep.
_NOTES = ("CATA" + "LOG", "DYNA" + "MICS", "DESI" + r"GN\.md", r"papers\.md")
INTERNAL = re.compile("|".join(_NOTES) + r"|\b(?i:stage)[- ][0-9]|\b(?i:issues?) [0-9]|\bSpec:")
SCANNED = ("lightning_losses", "tests", "docs", "benchmarks", "recipes")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".toml", ".cfg"}


def _scanned_files() -> list[Path]:
    files = [ROOT / "README.md", CHANGELOG]
    for top in SCANNED:
        files += [
            p
            for p in sorted((ROOT / top).rglob("*"))
            if p.is_file()
            and p.suffix in TEXT_SUFFIXES
            and "assets" not in p.relative_to(ROOT).parts
            and "results" not in p.relative_to(ROOT).parts  # measured outputs, not prose
            and "__pycache__" not in p.parts
            and p != Path(__file__).resolve()  # the patterns above are not citations
        ]
    return files


@pytest.mark.parametrize("top", ["README.md", "CHANGELOG.md", *SCANNED])
def test_no_file_cites_the_internal_working_notes(top):
    hits = []
    for path in _scanned_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel != top and not rel.startswith(f"{top}/"):
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNAL.search(line):
                hits.append(f"{rel}:{lineno}: {line.strip()[:100]}")
    assert not hits, (
        "cite the paper (title, venue, arXiv id), the peer library or a docs page instead:\n"
        + "\n".join(hits)
    )
