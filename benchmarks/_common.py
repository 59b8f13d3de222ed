"""Command line shared by the benchmark scripts: ``--smoke``, ``--out``, ``--name``, ``--plot``.

A full run writes ``<out>/<name>.json`` and ``<out>/<name>.md`` (``out`` defaults to
``benchmarks/results/``) and, where the script plots, ``docs/assets/<name>.png``. A *smoke* run
(``--smoke``) goes through the whole code path of the script on tiny sizes in a few seconds, to
check that it still runs; it writes everything, plot included, to ``--out`` (a new temporary
directory when not given) and refuses to write into ``benchmarks/results/`` or ``docs/assets/``,
whose files are measurements.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ASSETS = ROOT / "docs" / "assets"


def make_parser(doc: str | None, name: str, *, plot: bool = False) -> argparse.ArgumentParser:
    """The parser of a benchmark script, with the shared output options.

    Args:
        doc: the script's docstring; its first line describes the parser.
        name: the default stem of the output files (the script's name).
        plot: whether the script draws a figure (adds ``--plot``).

    Returns:
        The parser; add the script's own options, then call :func:`parse`.
    """
    parser = argparse.ArgumentParser(description=(doc or name).strip().splitlines()[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, the whole code path in a few seconds; outputs go to --out only",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: benchmarks/results/; with --smoke a new temporary one)",
    )
    parser.add_argument("--name", default=name, help=f"stem of the output files (default {name})")
    if plot:
        parser.add_argument(
            "--plot",
            type=Path,
            default=None,
            help="figure path (default: docs/assets/<name>.png; with --smoke <out>/<name>.png)",
        )
    return parser


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv`` and resolve the output paths; creates the output directory.

    Args:
        parser: a parser from :func:`make_parser`.
        argv: the arguments (``None``: ``sys.argv[1:]``).

    Returns:
        The namespace, with ``out`` (and ``plot`` where the script plots) set to paths.
    """
    args = parser.parse_args(argv)
    if args.smoke:
        for option, path in (("--out", args.out), ("--plot", getattr(args, "plot", None))):
            if path is not None and (_inside(path, RESULTS) or _inside(path, ASSETS)):
                parser.error(
                    f"{option} {path}: a smoke run never writes into benchmarks/results/ or "
                    "docs/assets/ (their files are measurements); give a temporary directory"
                )
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix=f"{args.name}-smoke-")) if args.smoke else RESULTS
    if "plot" in args and args.plot is None:
        args.plot = (args.out if args.smoke else ASSETS) / f"{args.name}.png"
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def output(args: argparse.Namespace, suffix: str) -> Path:
    """``<out>/<name><suffix>``, e.g. ``output(args, ".json")``."""
    return args.out / f"{args.name}{suffix}"


def write_json(path: Path, payload: Any, indent: int = 1) -> None:
    """Write ``payload`` as JSON; paths (e.g. in ``vars(args)``) are written as strings."""
    path.write_text(json.dumps(payload, indent=indent, default=str))


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> None:
    """Save a matplotlib figure (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
