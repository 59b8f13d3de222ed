"""Run every benchmark script in this folder (``make bench``); results land in ``results/``.

Benchmarks are scripts, not timed tests: each measures ratios against peers / baselines side by
side in one run and writes JSON + a markdown table (+ plots) to ``benchmarks/results/``. A full
run starts one process per script, so that no script's thread or allocator settings, or memory
peak, leaks into the next one's measurements.

``--smoke`` runs every script's smoke mode instead (tiny sizes, the whole code path, a few
seconds each), all in this process (one import of torch and Lightning), writing into ``--out``
(a new temporary directory when not given), never into ``benchmarks/results/``.
``tests/test_benchmarks.py`` runs the same smoke modes.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
SCRIPTS = sorted(
    p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
)


def load(script: Path) -> ModuleType:
    """Import a benchmark script as a module; its entry point is ``main(argv)``.

    Args:
        script: path of the script.

    Returns:
        The module, registered in ``sys.modules`` as ``_benchmark_<name>`` (dataclasses look
        their module up there).
    """
    name = f"_benchmark_{script.stem}"
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    added = str(HERE) not in sys.path
    if added:  # the scripts import their shared `_common` module from this folder
        sys.path.insert(0, str(HERE))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        if added:
            sys.path.remove(str(HERE))
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every script's smoke mode")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: benchmarks/results/; with --smoke a new temporary one)",
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="script names to run (default: all)"
    )
    args = parser.parse_args(argv)
    scripts = SCRIPTS
    if args.only is not None:
        unknown = set(args.only) - {p.stem for p in SCRIPTS}
        if unknown:
            parser.error(f"--only: no such benchmark {sorted(unknown)}")
        scripts = [p for p in SCRIPTS if p.stem in args.only]
    if args.smoke and args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="benchmarks-smoke-"))
    failed, total = [], time.perf_counter()
    for script in scripts:
        start = time.perf_counter()
        print(f"== {script.name}", flush=True)
        if args.smoke:
            try:
                load(script).main(["--smoke", "--out", str(args.out)])
            except Exception:
                traceback.print_exc()
                failed.append(script.name)
        else:
            extra = [] if args.out is None else ["--out", str(args.out)]
            if subprocess.run([sys.executable, str(script), *extra], cwd=HERE.parent).returncode:
                failed.append(script.name)
        print(f"   {time.perf_counter() - start:.1f} s", flush=True)
    print(f"{len(scripts)} scripts in {time.perf_counter() - total:.0f} s", flush=True)
    if args.smoke:
        print(f"smoke outputs: {args.out}")
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
