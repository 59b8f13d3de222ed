"""Multi-task gradient aggregation: a conflicting two-task toy, two-digit overlays, cost vs torchjd.

Guide: ``docs/guide/multi_task.md``. Methods: ``sum`` (plain summed loss), ``uw`` (uncertainty
weighting, Kendall et al. arXiv:1705.07115, LibMTL form), and the Jacobian aggregators of
``lightning_losses.multitask``: ``upgrad`` (arXiv:2406.16232), ``config`` (arXiv:2408.11104),
``pcgrad`` (arXiv:2001.06782), ``mgda`` (arXiv:1810.04650), ``nash_mtl`` (arXiv:2202.01017,
default ``max_norm=1``).

1. **Toy** (2 parameters, conflicting gradients): ``L1 = ½(x−a)ᵀA1(x−a)``,
   ``L2 = 5·½(x−b)ᵀA2(x−b)`` with ``a = (−1, 0)``, ``b = (1, 0)``, ``A1 = diag(1, 4)``,
   ``A2 = diag(4, 1)`` (the second loss 5× larger), 3 starting points, gradient descent lr 0.02,
   400 steps. Recorded: the trajectory, the final (L1, L2), the distance to the Pareto set
   ``{x*(w) : w ∈ [0, 1]}`` and where on it the run ends (the ``w`` of the nearest Pareto point:
   1 = all L1, 0 = all L2).
2. **Two-digit overlays** (MultiMNIST-style, built offline from scikit-learn's 8×8 digits):
   two digits on an 8×12 canvas, the left at columns 0–7 and the right at 4–11, overlapping
   pixels take the maximum; task 1 = the left label, task 2 = the right label. Digit images are
   split 60/15/25 into train/val/test before pairing (3000/600/1000 pairs). Model: MLP
   96-128-128 (shared) + two linear heads; SGD momentum 0.9, batch 64, 6 epochs. Each method's
   lr is chosen from {0.01, 0.03, 0.1, 0.3} by the mean validation accuracy of both tasks over
   3 seeds; test accuracies of the chosen lr reported as mean ± std over the seeds. Aggregators
   act on all parameters as one vector (what ``GradientAggregation`` does); one UPGrad run goes
   through the Lightning callback as a check of the plain loop.
3. **Cost**: time per step (median of paired, interleaved repetitions) and peak extra memory
   (Linux ``VmHWM`` after a ``clear_refs`` reset, minus the RSS after building model and data,
   over 3 steps, each implementation in a fresh process; CPU) of one UPGrad step with our callback's
   hooks (called directly, no Trainer) vs torchjd 0.18 (``autojac.backward`` + ``jac_to_grad``
   with ``UPGrad()``), same model, data and tasks; plus the directions' max difference. Also the
   Gramian-only paths, which never store the ``[m, n]`` Jacobian: our callback with
   ``gramian_only=True`` (per-module Gramian blocks, then one weighted backward) vs torchjd's
   ``autogram.Engine(model, batch_dim=None)`` + ``UPGradWeighting`` + a weighted backward.

Run: ``OMP_NUM_THREADS=1 python benchmarks/multi_task.py`` (a few minutes on one core). Writes
``results/multi_task.{json,md}`` and ``docs/assets/multi_task.png``; ``--smoke --out DIR``: a few
seconds, everything in ``DIR``.
"""

from __future__ import annotations

import copy
import logging
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import _common
import torch
import torch.nn.functional as F
from torch import nn

from lightning_losses.callbacks import GradientAggregation
from lightning_losses.multitask import UncertaintyWeighting, aggregate

METHODS = ("sum", "uw", "upgrad", "config", "pcgrad", "mgda", "nash_mtl")
SEEDS = (0, 1, 2)
LRS = (0.01, 0.03, 0.1, 0.3)
TOY_STEPS, TOY_LR = 400, 0.02
TOY_STARTS = ((0.0, 2.0), (-2.0, -1.5), (2.0, 1.0))
DIG_EPOCHS, DIG_BATCH, DIG_HIDDEN = 6, 64, 128
PAIRS = (3000, 600, 1000)
COST_REPS, COST_HIDDEN, COST_BATCH = 9, 1024, 256
SMOKE = {"seeds": (0,), "lrs": (0.1,), "toy_steps": 20, "epochs": 1, "pairs": (128, 64, 64)}
SMOKE_COST = {"reps": 2, "hidden": 32, "batch": 16}

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")

A_POINT, B_POINT = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])
A1, A2, SCALE2 = torch.diag(torch.tensor([1.0, 4.0])), torch.diag(torch.tensor([4.0, 1.0])), 5.0


# ------------------------------------------------------------------------------------ toy
def toy_losses(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    da, db = x - A_POINT.to(x), x - B_POINT.to(x)
    return 0.5 * da @ A1.to(x) @ da, SCALE2 * 0.5 * db @ A2.to(x) @ db


def pareto_set(num: int = 2001) -> tuple[torch.Tensor, torch.Tensor]:
    """Points x*(w) minimising w L1 + (1 − w) L2, for w on a grid of [0, 1]."""
    ws = torch.linspace(0, 1, num, dtype=torch.float64)
    a1, a2 = A1.double(), SCALE2 * A2.double()
    pts = [
        torch.linalg.solve(
            w * a1 + (1 - w) * a2, w * a1 @ A_POINT.double() + (1 - w) * a2 @ B_POINT.double()
        )
        for w in ws
    ]
    return ws, torch.stack(pts)


def run_toy(method: str, start: tuple[float, float], steps: int) -> dict[str, Any]:
    x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    uw = UncertaintyWeighting(2).double() if method == "uw" else None
    path = [x.detach().clone()]
    for _ in range(steps):
        l1, l2 = toy_losses(x)
        if method in ("sum", "uw"):
            total = l1 + l2 if uw is None else uw(torch.stack([l1, l2]))
            params = [x] + ([] if uw is None else [uw.log_vars])
            grads = torch.autograd.grad(total, params)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p -= TOY_LR * g
        else:
            jac = torch.stack([torch.autograd.grad(t, x, retain_graph=True)[0] for t in (l1, l2)])
            d = aggregate(
                jac,
                method,
                **({"generator": torch.Generator().manual_seed(0)} if method == "pcgrad" else {}),
            )
            with torch.no_grad():
                x -= TOY_LR * d
        path.append(x.detach().clone())
    ws, front = pareto_set()
    final = x.detach()
    dist = (front - final).norm(dim=1)
    l1, l2 = toy_losses(final)
    return {
        "path": torch.stack(path).tolist(),
        "final": final.tolist(),
        "losses": [float(l1), float(l2)],
        "pareto_distance": float(dist.min()),
        "pareto_w": float(ws[dist.argmin()]),
    }


# --------------------------------------------------------------------------------- digits
def overlay_splits(
    pairs: tuple[int, int, int], seed: int = 0
) -> dict[str, tuple[torch.Tensor, ...]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=g)
    n_tr, n_va = int(0.6 * len(order)), int(0.15 * len(order))
    parts = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}
    out = {}
    for (name, idx), count in zip(parts.items(), pairs, strict=True):
        left = idx[torch.randint(len(idx), (count,), generator=g)]
        right = idx[torch.randint(len(idx), (count,), generator=g)]
        canvas = torch.zeros(count, 8, 12)
        canvas[:, :, :8] = images[left]
        canvas[:, :, 4:] = torch.maximum(canvas[:, :, 4:], images[right])
        out[name] = (canvas.reshape(count, -1), labels[left], labels[right])
    return out


class TwoHead(nn.Module):
    def __init__(self, hidden: int = DIG_HIDDEN, inputs: int = 96) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.left = nn.Linear(hidden, 10)
        self.right = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.left(h), self.right(h)


def _flat_grads(obj: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def accuracy(model: TwoHead, data: tuple[torch.Tensor, ...]) -> tuple[float, float]:
    x, y1, y2 = data
    with torch.no_grad():
        o1, o2 = model(x)
    return float((o1.argmax(1) == y1).float().mean()), float((o2.argmax(1) == y2).float().mean())


def train_digits(method: str, lr: float, seed: int, splits: dict, epochs: int) -> TwoHead:
    torch.manual_seed(seed)
    model = TwoHead()
    uw = UncertaintyWeighting(2) if method == "uw" else None
    params = list(model.parameters())
    opt = torch.optim.SGD(
        params + ([] if uw is None else list(uw.parameters())), lr=lr, momentum=0.9
    )
    x, y1, y2 = splits["train"]
    g = torch.Generator().manual_seed(100 + seed)
    pc = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y1), generator=g)
        for i in range(0, len(order), DIG_BATCH):
            idx = order[i : i + DIG_BATCH]
            o1, o2 = model(x[idx])
            l1, l2 = F.cross_entropy(o1, y1[idx]), F.cross_entropy(o2, y2[idx])
            opt.zero_grad()
            if method == "sum":
                (l1 + l2).backward()
            elif method == "uw":
                assert uw is not None
                uw(torch.stack([l1, l2])).backward()
            else:
                jac = torch.stack([_flat_grads(l1, params), _flat_grads(l2, params)])
                kw = {"generator": pc} if method == "pcgrad" else {}
                d = aggregate(jac, method, **kw)
                offset = 0
                for p in params:
                    p.grad = d[offset : offset + p.numel()].view_as(p).clone()
                    offset += p.numel()
            opt.step()
    return model


def callback_gap(splits: dict, lr: float, steps: int) -> float:
    """Max parameter gap: the Lightning callback vs the plain loop (UPGrad, same batches)."""
    from lightning.pytorch import LightningModule, Trainer
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_losses.mixins import LossMixin

    x, y1, y2 = (t[: steps * DIG_BATCH] for t in splits["train"])

    class Module(LossMixin, LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = TwoHead()
            self.configure_criterion("cross_entropy")

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            xb, a, b = batch
            o1, o2 = self.net(xb)
            return self.compute_loss(
                o1, a, aux={"right": F.cross_entropy(o2, b)}, log=False
            ).to_dict()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

    module = Module()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=steps,
        callbacks=[GradientAggregation("upgrad", log_stats=False)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y1, y2), batch_size=DIG_BATCH))
    torch.manual_seed(0)
    plain = TwoHead()
    params = list(plain.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    batches = -(-len(y1) // DIG_BATCH)  # the loader restarts when a smoke split is short
    for i in range(steps):
        sl = slice((i % batches) * DIG_BATCH, (i % batches + 1) * DIG_BATCH)
        o1, o2 = plain(x[sl])
        jac = torch.stack(
            [
                _flat_grads(F.cross_entropy(o1, y1[sl]), params),
                _flat_grads(F.cross_entropy(o2, y2[sl]), params),
            ]
        )
        d = aggregate(jac, "upgrad")
        offset = 0
        for p in params:
            p.grad = d[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        opt.step()
    return max(
        float((a.detach() - b.detach()).abs().max())
        for a, b in zip(module.net.parameters(), plain.parameters(), strict=True)
    )


# ----------------------------------------------------------------------------------- cost
def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def step_functions(hidden: int, batch: int) -> dict[str, Any]:
    """One UPGrad training step (forward, per-task gradients, aggregation into `.grad`) each way."""
    from torchjd.aggregation import UPGrad
    from torchjd.autojac import backward as jd_backward
    from torchjd.autojac import jac_to_grad

    torch.manual_seed(0)
    model = TwoHead(hidden=hidden)
    holder = nn.Module()
    holder.net = model  # the callback reads module.parameters()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.0)
    x = torch.randn(batch, 96)
    y1, y2 = torch.randint(10, (batch,)), torch.randint(10, (batch,))

    class FakeTrainer:
        global_step = 0
        log_every_n_steps = 1

    cb = GradientAggregation("upgrad", log_stats=False)

    def ours() -> torch.Tensor:
        opt.zero_grad()
        o1, o2 = model(x)
        main, right = F.cross_entropy(o1, y1), F.cross_entropy(o2, y2)
        cb.backward(holder, main, {"right": right}, accumulation_factor=1.0, scaler=None)  # type: ignore[arg-type]
        cb.on_before_optimizer_step(FakeTrainer(), holder, opt)  # type: ignore[arg-type]
        return torch.cat([p.grad.reshape(-1) for p in params])

    aggregator = UPGrad()

    def theirs() -> torch.Tensor:
        opt.zero_grad()
        o1, o2 = model(x)
        jd_backward([F.cross_entropy(o1, y1), F.cross_entropy(o2, y2)])
        jac_to_grad(params, aggregator)
        return torch.cat([p.grad.reshape(-1) for p in params])

    gram_cb = GradientAggregation("upgrad", log_stats=False, gramian_only=True)
    gram_cb._hook_modules(holder)  # what setup() does inside a Trainer

    def ours_gramian() -> torch.Tensor:
        opt.zero_grad()
        gram_cb._recording = True  # what on_train_batch_start does
        o1, o2 = model(x)
        main, right = F.cross_entropy(o1, y1), F.cross_entropy(o2, y2)
        gram_cb.backward(holder, main, {"right": right}, accumulation_factor=1.0, scaler=None)  # type: ignore[arg-type]
        gram_cb.on_before_optimizer_step(FakeTrainer(), holder, opt)  # type: ignore[arg-type]
        return torch.cat([p.grad.reshape(-1) for p in params])

    from torchjd.aggregation import UPGradWeighting
    from torchjd.autogram import Engine

    # A copy: the engine's hooks act on every forward of the model they are attached to.
    ag_model = copy.deepcopy(model)
    ag_params = list(ag_model.parameters())
    engine = Engine(ag_model, batch_dim=None)
    weighting = UPGradWeighting()

    def theirs_autogram() -> torch.Tensor:
        for p in ag_params:
            p.grad = None
        o1, o2 = ag_model(x)
        losses = torch.stack([F.cross_entropy(o1, y1), F.cross_entropy(o2, y2)])
        losses.backward(weighting(engine.compute_gramian(losses)))
        return torch.cat([p.grad.reshape(-1) for p in ag_params])

    return {
        "ours": ours,
        "torchjd": theirs,
        "gramian": ours_gramian,
        "autogram": theirs_autogram,
        "params": sum(p.numel() for p in params),
    }


def peak_extra_mib(impl: str, hidden: int, batch: int, steps: int = 3) -> float | None:
    """Peak RSS above the level after building model and data, over `steps` steps (this process)."""
    fns = step_functions(hidden, batch)
    base = _rss_kib("VmRSS")
    if not _reset_peak() or base is None:
        return None
    for _ in range(steps):
        fns[impl]()
    peak = _rss_kib("VmHWM")
    return None if peak is None else (peak - base) / 1024


def _peak_in_subprocess(impl: str, hidden: int, batch: int) -> float | None:
    # A fresh process per implementation: the allocator of a shared one reuses freed memory.
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, torch; torch.set_num_threads(1); "
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        "import multi_task as mt; "
        f"print(json.dumps(mt.peak_extra_mib({impl!r}, {hidden}, {batch})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_cost(hidden: int, batch: int, reps: int, *, fresh_process: bool) -> dict[str, Any]:
    fns = step_functions(hidden, batch)
    reference = fns["ours"]()
    gap = float((reference - fns["torchjd"]()).abs().max())
    gramian_gap = max(float((reference - fns[k]()).abs().max()) for k in ("gramian", "autogram"))
    names = ("ours", "torchjd", "gramian", "autogram")
    times: dict[str, list[float]] = {k: [] for k in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    row: dict[str, Any] = {
        "params": fns["params"],
        "batch": batch,
        "direction_gap": gap,
        "gramian_direction_gap": gramian_gap,
    }
    for name in names:
        row[f"{name}_ms"] = 1e3 * statistics.median(times[name])
        row[f"{name}_peak_mib"] = (
            _peak_in_subprocess(name, hidden, batch)
            if fresh_process
            else peak_extra_mib(name, hidden, batch)
        )
    row["time_ratio"] = row["ours_ms"] / row["torchjd_ms"]
    row["gramian_time_ratio"] = row["gramian_ms"] / row["autogram_ms"]
    return row


# ------------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    lines = ["# Multi-task gradient aggregation", "", "## Toy (final position, 3 starts)", ""]
    lines += [
        "| method | L1 | L2 | distance to Pareto set | Pareto w (1 = all L1) |",
        "|---|---|---|---|---|",
    ]
    for m, runs in result["toy"].items():
        l1 = statistics.mean(r["losses"][0] for r in runs)
        l2 = statistics.mean(r["losses"][1] for r in runs)
        dist = max(r["pareto_distance"] for r in runs)
        ws = ", ".join(f"{r['pareto_w']:.2f}" for r in runs)
        lines.append(f"| {m} | {l1:.3f} | {l2:.3f} | {dist:.2e} | {ws} |")
    lines += [
        "",
        "## Two-digit overlays (test accuracy, mean ± std over seeds, lr tuned on val)",
        "",
    ]
    lines += ["| method | lr | left | right | mean | val mean |", "|---|---|---|---|---|---|"]
    for m, row in result["digits"].items():
        lines.append(
            f"| {m} | {row['lr']} | {row['left_mean']:.3f} ± {row['left_std']:.3f} | "
            f"{row['right_mean']:.3f} ± {row['right_std']:.3f} | {row['mean']:.3f} | "
            f"{row['val_mean']:.3f} |"
        )
    lines += [
        "",
        f"Callback vs plain loop (UPGrad, max parameter gap): {result['callback_gap']:.2e}",
        "",
    ]
    c = result["cost"]
    lines += ["## Cost of one UPGrad step vs torchjd 0.18 (CPU, paired)", ""]
    lines += [
        "| params | batch | ours ms | torchjd ms | ratio | ours peak MiB | torchjd peak MiB "
        "| direction gap |"
    ]
    lines += ["|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
    lines.append(
        f"| {c['params']} | {c['batch']} | {c['ours_ms']:.1f} | {c['torchjd_ms']:.1f} | "
        f"{c['time_ratio']:.2f} | "
        f"{fmt(c['ours_peak_mib'])} | {fmt(c['torchjd_peak_mib'])} | {c['direction_gap']:.1e} |"
    )
    lines += [
        "",
        "Gramian-only paths (never store the Jacobian): ours (`gramian_only=True`) vs torchjd "
        "`autogram.Engine(batch_dim=None)`",
        "",
        "| ours ms | autogram ms | ratio | ours peak MiB | autogram peak MiB | direction gap "
        "(vs the Jacobian path) |",
        "|---|---|---|---|---|---|",
        f"| {c['gramian_ms']:.1f} | {c['autogram_ms']:.1f} | {c['gramian_time_ratio']:.2f} | "
        f"{fmt(c['gramian_peak_mib'])} | {fmt(c['autogram_peak_mib'])} | "
        f"{c['gramian_direction_gap']:.1e} |",
    ]
    lines += [
        "",
        f"Machine: {result['meta']['machine']}; torch {result['meta']['torch']}; "
        f"{result['meta']['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    _, front = pareto_set(201)
    ax1.plot(front[:, 0], front[:, 1], "k-", lw=3, alpha=0.3, label="Pareto set")
    colors = dict(zip(METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for m, runs in result["toy"].items():
        for i, r in enumerate(runs):
            p = torch.tensor(r["path"])
            ax1.plot(p[:, 0], p[:, 1], "-", color=colors[m], lw=1, label=m if i == 0 else None)
            ax1.plot(p[-1, 0], p[-1, 1], "o", color=colors[m], ms=4)
    ax1.plot(*A_POINT.tolist(), "k*", ms=10)
    ax1.plot(*B_POINT.tolist(), "k*", ms=10)
    ax1.set_title("toy: trajectories (stars: minimisers of L1, L2)")
    ax1.legend(fontsize=7)
    names = list(result["digits"])
    xs = range(len(names))
    for off, key in ((-0.18, "left"), (0.18, "right")):
        ax2.bar(
            [i + off for i in xs],
            [result["digits"][m][f"{key}_mean"] for m in names],
            0.36,
            yerr=[result["digits"][m][f"{key}_std"] for m in names],
            label=f"{key} digit",
        )
    ax2.set_xticks(list(xs), names)
    lo = min(result["digits"][m][f"{k}_mean"] for m in names for k in ("left", "right"))
    ax2.set_ylim(max(0.0, lo - 0.05), 1.0)
    ax2.set_title("two-digit overlays: test accuracy (3 seeds)")
    ax2.legend()
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "multi_task", plot=True)
    args = _common.parse(parser, argv)
    torch.set_num_threads(1)
    smoke = args.smoke
    seeds = SMOKE["seeds"] if smoke else SEEDS
    lrs = SMOKE["lrs"] if smoke else LRS
    toy_steps = SMOKE["toy_steps"] if smoke else TOY_STEPS
    epochs = SMOKE["epochs"] if smoke else DIG_EPOCHS
    pairs = SMOKE["pairs"] if smoke else PAIRS
    cost_cfg = (
        SMOKE_COST if smoke else {"reps": COST_REPS, "hidden": COST_HIDDEN, "batch": COST_BATCH}
    )
    start = time.perf_counter()
    toy = {m: [run_toy(m, s, toy_steps) for s in TOY_STARTS] for m in METHODS}
    splits = overlay_splits(pairs)
    digits: dict[str, Any] = {}
    for m in METHODS:
        per_lr = {}
        for lr in lrs:
            runs = []
            for seed in seeds:
                model = train_digits(m, lr, seed, splits, epochs)
                runs.append(
                    {"val": accuracy(model, splits["val"]), "test": accuracy(model, splits["test"])}
                )
            per_lr[lr] = runs
        best = max(lrs, key=lambda lr: statistics.mean(sum(r["val"]) / 2 for r in per_lr[lr]))
        runs = per_lr[best]
        left = [r["test"][0] for r in runs]
        right = [r["test"][1] for r in runs]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        digits[m] = {
            "lr": best,
            "left_mean": statistics.mean(left),
            "left_std": sd(left),
            "right_mean": statistics.mean(right),
            "right_std": sd(right),
            "mean": statistics.mean((a + b) / 2 for a, b in zip(left, right, strict=True)),
            "val_mean": statistics.mean(sum(r["val"]) / 2 for r in runs),
            "val_by_lr": {
                str(lr): statistics.mean(sum(r["val"]) / 2 for r in v) for lr, v in per_lr.items()
            },
            "runs": runs,
        }
    gap = callback_gap(splits, lr=0.1, steps=3 if smoke else 20)
    cost = measure_cost(
        cost_cfg["hidden"], cost_cfg["batch"], cost_cfg["reps"], fresh_process=not smoke
    )
    result = {
        "meta": {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
            "smoke": smoke,
            "seconds": time.perf_counter() - start,
            "seeds": list(seeds),
            "lrs": list(lrs),
        },
        "toy": toy,
        "digits": digits,
        "callback_gap": gap,
        "cost": cost,
    }
    _common.write_json(_common.output(args, ".json"), result)
    _common.output(args, ".md").write_text(markdown(result))
    plot(result, args.plot)
    print(markdown(result))


if __name__ == "__main__":
    main()
