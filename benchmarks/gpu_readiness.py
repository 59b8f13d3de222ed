"""GPU readiness: every loss in bf16 on the device, the recipes in bf16-mixed, LM-head memory.

One prepared run for a machine with CUDA (`make bench-gpu`), in three parts, written with the
device name to `benchmarks/results/gpu_readiness.{json,md}`:

1. **losses**: every registered loss (its contract-test example, a batch of 256) on the device,
   float32 and bf16 inputs, value and input gradient finite, and the float32 value within 1e-4
   (relative) of a float64 reference on the CPU: device kernels and upcasts, not only the CPU's;
2. **recipes**: every base recipe through the `lightning-losses` command with
   `--trainer.accelerator gpu --trainer.precision bf16-mixed` for a few steps (one process each;
   exit code and the last lines of output recorded);
3. **memory**: `lm_memory.py` at the Liger anchor (V = 128k, H = 4096, B·T 4k–32k,
   `torch.cuda.max_memory_allocated`) and `losses_speed.py` (every row, CPU and CUDA), each in
   its own process, writing its own results files.

Without CUDA, or with `--dry-run`, the same plan runs on the CPU at toy sizes: the losses part
on a few losses, the recipes part only lists the commands (their configs must exist), the memory
part runs `lm_memory.py --smoke`. `--smoke` is the dry run into a temporary folder (the tests run
it), so the script cannot rot between the days a GPU is lent.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common
import run_all
import torch

from lightning_losses.recipes.cli import list_recipes, overlay_bases, resolve_recipe

ROOT = _common.ROOT
if str(ROOT) not in sys.path:  # the loss examples live in the test-suite's spec modules
    sys.path.insert(0, str(ROOT))


def base_recipes() -> list[str]:
    """The base recipe configs (an overlay only adds to one of them), as the CLI lists them."""
    return [name for name in list_recipes() if not overlay_bases(resolve_recipe(name) or name)]


DRY_RUN_LOSSES = ("cross_entropy", "focal", "supcon", "bpr", "dpo")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU (dry run)"


def _finite(t: torch.Tensor | None) -> bool:
    return t is None or bool(torch.isfinite(t).all())


def check_losses(device: torch.device, names: list[str], batch: int) -> list[dict[str, Any]]:
    """Each loss on `device` in float32 and bf16 against a float64 CPU reference."""
    from lightning_losses import get_loss_class
    from tests.losses.specs import all_specs

    specs = all_specs()
    rows = []
    for name in names:
        spec = specs[name]
        example = spec.example(batch, max(8, spec.min_size), torch.Generator().manual_seed(0))
        row: dict[str, Any] = {"loss": name}
        try:
            loss = get_loss_class(name)()
            ref_loss = get_loss_class(name)()
            ref_loss.load_state_dict(loss.state_dict())
            ref = ref_loss.double()(
                *(x.double() for x in example.inputs), *example.targets, **example.kwargs
            )
            loss = loss.to(device)
            targets = [t.to(device) for t in example.targets]
            for dtype in (torch.float32, torch.bfloat16):
                xs = [x.detach().to(device, dtype).clone().requires_grad_() for x in example.inputs]
                out = loss(*xs, *targets, **example.kwargs)
                out.float().sum().backward()
                key = "fp32" if dtype == torch.float32 else "bf16"
                row[f"{key}_finite"] = _finite(out) and all(_finite(x.grad) for x in xs)
                if dtype == torch.float32:
                    err = (out.detach().double().cpu() - ref).abs().max()
                    row["fp32_rel_err"] = float(err / ref.abs().max().clamp_min(1e-12))
            row["ok"] = row["fp32_finite"] and row["bf16_finite"] and row["fp32_rel_err"] < 1e-4
        except Exception as error:  # recorded, the run goes on to the next loss
            row.update(ok=False, error=f"{type(error).__name__}: {error}"[:300])
        rows.append(row)
    return rows


def recipe_command(config: str, device: torch.device, steps: int) -> list[str]:
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    return [
        sys.executable,
        "-m",
        "lightning_losses.recipes.cli",
        "fit",
        "--config",
        str(resolve_recipe(config)),
        f"--trainer.accelerator={accelerator}",
        "--trainer.devices=1",
        "--trainer.precision=bf16-mixed",
        f"--trainer.max_steps={steps}",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
    ]


def run_recipes(device: torch.device, execute: bool, steps: int) -> list[dict[str, Any]]:
    rows = []
    for config in base_recipes():
        command = recipe_command(config, device, steps)
        row: dict[str, Any] = {"recipe": config, "command": " ".join(command[1:])}
        if resolve_recipe(config) is None:
            row.update(ok=False, error="config not found")
        elif execute:
            start = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            row.update(
                ok=done.returncode == 0,
                seconds=round(time.perf_counter() - start, 1),
                tail=tail,
            )
        else:
            row["ok"] = True  # listed only: the dry run checks that the config exists
        rows.append(row)
    return rows


def run_memory(device: torch.device, out: Path, smoke: bool) -> list[dict[str, Any]]:
    here = Path(__file__).resolve().parent
    if device.type != "cuda":  # the dry run: the same script's smoke path, in this process
        start = time.perf_counter()
        run_all.load(here / "lm_memory.py").main(["--smoke", "--out", str(out), "--no-plot"])
        return [{"script": "lm_memory.py --smoke", "ok": True, "seconds": _since(start)}]
    commands = [
        [
            "lm_memory.py",
            "--vocab",
            "131072",
            "--tokens",
            "4096",
            "8192",
            "16384",
            "32768",
            "--hidden",
            "4096",
            "--max-chunked-tokens-128k",
            "32768",
            "--max-naive-gib",
            "60",
            "--out",
            str(out),
        ],
        ["losses_speed.py", "--out", str(out)],
    ]
    rows = []
    for cmd in commands:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(here / cmd[0]), *cmd[1:]], cwd=ROOT)
        rows.append({"script": " ".join(cmd), "ok": done.returncode == 0, "seconds": _since(start)})
    return rows


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def to_markdown(payload: dict[str, Any]) -> str:
    meta = payload["meta"]
    lines = [
        f"# GPU readiness — {meta['device']}",
        "",
        f"torch {meta['torch']}, dry run: {meta['dry_run']}.",
        "",
        "| loss | fp32 finite | bf16 finite | fp32 rel. err vs float64 | ok |",
        "|---|---|---|---|---|",
    ]
    for r in payload["losses"]:
        err = r.get("fp32_rel_err")
        err_text = "—" if err is None else f"{err:.1e}"
        lines.append(
            f"| {r['loss']} | {r.get('fp32_finite', '—')} | {r.get('bf16_finite', '—')} "
            f"| {err_text} | {r['ok']} |"
        )
    lines += ["", "| recipe | ok | seconds |", "|---|---|---|"]
    for r in payload["recipes"]:
        lines.append(f"| {r['recipe']} | {r['ok']} | {r.get('seconds', 'listed')} |")
    lines += ["", "| memory/speed script | ok | seconds |", "|---|---|---|"]
    for r in payload["memory"]:
        lines.append(f"| `{r['script']}` | {r['ok']} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "gpu_readiness")
    parser.add_argument(
        "--dry-run", action="store_true", help="the CPU plan at toy sizes, even with CUDA"
    )
    parser.add_argument("--steps", type=int, default=20, help="training steps per recipe")
    args = _common.parse(parser, argv)
    if not (args.dry_run or args.smoke or torch.cuda.is_available()):
        # `make bench` on a CPU machine: a dry run's table is not a measurement to keep.
        print("gpu_readiness: no CUDA device, nothing measured (--dry-run runs the CPU plan)")
        return
    dry_run = args.dry_run or args.smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if dry_run else "cuda")
    from lightning_losses import list_losses

    names = list(DRY_RUN_LOSSES) if dry_run else list_losses()
    payload = {
        "meta": {
            "device": device_name(device),
            "torch": torch.__version__,
            "dry_run": dry_run,
            "smoke": args.smoke,
        },
        "losses": check_losses(device, names, batch=8 if dry_run else 256),
        "recipes": run_recipes(device, execute=not dry_run, steps=args.steps),
        "memory": run_memory(device, args.out, args.smoke),
    }
    _common.write_json(_common.output(args, ".json"), payload)
    _common.output(args, ".md").write_text(to_markdown(payload))
    failed = [r for part in ("losses", "recipes", "memory") for r in payload[part] if not r["ok"]]
    print(to_markdown(payload))
    if failed:
        raise SystemExit(f"{len(failed)} checks failed: {json.dumps(failed)[:2000]}")


if __name__ == "__main__":
    main()
