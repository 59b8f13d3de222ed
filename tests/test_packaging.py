"""The wheel and the sdist build, and the installed wheel works without the source tree.

`python -m build` makes both from a copy of the source (so this checkout's `build/` folder and
editable install play no part). The wheel is then installed with `--no-deps` into a fresh venv
whose dependencies come from the test environment through a `.pth` line (installing torch again
would cost gigabytes and minutes); Python processes the `.pth` files of site directories only,
so the test environment's editable install of this project is not seen there. In that venv,
from a folder outside the checkout, the package imports from the venv, ships its typing marker,
the `lightning-losses` command answers `--help`, and a shipped recipe config is found by its
short name. About a minute on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import lightning_losses

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _copy_source(dest: Path) -> Path:
    """The files git tracks or would track (no venv, no build outputs), copied to `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the packaging test needs the git checkout (it copies the tracked files)")
    src = _copy_source(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation", "--outdir", out],
        cwd=src,
        env=env,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_wheel_and_sdist_carry_the_package(dists):
    version = lightning_losses.__version__
    assert dists["wheel"].name.startswith(f"lightning_losses-{version}-py3-none-any")
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    assert "lightning_losses/py.typed" in names
    assert "lightning_losses/recipes/cli.py" in names
    assert "lightning_losses/multitask/__init__.py" in names  # every subpackage is found
    shipped = {n for n in names if n.startswith("lightning_losses/recipes/configs/")}
    in_repo = {
        f"lightning_losses/recipes/configs/{p.relative_to(ROOT / 'recipes').as_posix()}"
        for p in (ROOT / "recipes").rglob("*.yaml")
    }
    assert shipped == in_repo, "the wheel must carry every recipe config"
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(dists["wheel"]).read(entry_points).decode()
    assert "lightning-losses = lightning_losses.recipes.cli:main" in text
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = zipfile.ZipFile(dists["wheel"]).read(metadata).decode()
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    # The declared Python versions are the one this suite runs on (CI's), no more.
    assert f"Requires-Python: >={tested}" in meta
    declared = {
        line.rsplit("::", 1)[1].strip()
        for line in meta.splitlines()
        if line.startswith("Classifier: Programming Language :: Python :: 3.")
    }
    assert declared == {tested}
    with tarfile.open(dists["sdist"]) as tar:
        members = {Path(m.name).relative_to(Path(m.name).parts[0]).as_posix() for m in tar}
    assert {"pyproject.toml", "README.md", "lightning_losses/__init__.py"} <= members


def test_installed_wheel_imports_and_runs_the_command(dists, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", dists["wheel"]],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies (torch, lightning, ...) from this test environment, after the venv's own.
    (Path(site) / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    probe = (
        "import lightning_losses as L, pathlib; "
        "p = pathlib.Path(L.__file__).parent; "
        "print(p); print(L.__version__); print((p / 'py.typed').exists()); "
        "print(len(L.list_losses()))"
    )
    out = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, env=clean, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    location, version, typed, count = out.stdout.split()
    assert Path(location).is_relative_to(env_dir), f"imported from {location}, not the wheel"
    assert version == lightning_losses.__version__
    assert typed == "True"
    assert int(count) == len(lightning_losses.list_losses())
    command = subprocess.run(
        [env_dir / "bin" / "lightning-losses", "--help"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
    )
    assert command.returncode == 0, command.stderr[-2000:]
    assert "fit" in command.stdout
    assert "vision/digits_noisy.yaml" in command.stdout  # the recipes, without a clone
    # A pip user names a shipped recipe by its short name, from any folder.
    command_line = ["fit", "--config", "vision/digits_noisy", "--print_config"]
    printed = subprocess.run(
        [env_dir / "bin" / "lightning-losses", *command_line],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
    )
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert "lightning_losses.recipes.image_classification.ImageClassifier" in printed.stdout
