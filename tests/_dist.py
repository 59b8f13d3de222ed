"""Launch multi-process (gloo, CPU) test scripts in a clean subprocess.

Never use ``strategy="ddp"`` inside the pytest process: Lightning re-executes ``sys.argv``.
A script is run with ``subprocess.run`` in a clean environment (no inherited RANK/LOCAL_RANK/
WORLD_SIZE/NODE_RANK) and a fresh ``MASTER_PORT``; it writes its results (``torch.save``) to the
path given as its first argument, which the test then compares with a single-process run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

_DROP = (
    "LOCAL_RANK",
    "RANK",
    "WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "PL_GLOBAL_SEED",
    "PL_TRAINER_GPUS",
    "CUDA_VISIBLE_DEVICES",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP and not k.startswith("PYTEST_")}
    env.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
        PYTHONHASHSEED="0",
        **extra,
    )
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_python(args: list[str], *, cwd: str | Path | None = None, timeout: int = 300, **env: str):
    """Run ``python *args`` in a clean env; fail the test with stdout/stderr on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"subprocess {' '.join(args)} failed ({proc.returncode})\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return proc


def run_torchrun(
    script: str | Path, *args: str, cwd: str | Path, nproc: int = 2, timeout: int = 300
):
    """Run ``script *args`` on ``nproc`` local ranks (``torch.distributed.run``), clean env."""
    return run_python(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(nproc),
            str(script),
            *args,
        ],
        cwd=cwd,
        timeout=timeout,
    )
