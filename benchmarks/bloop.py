"""Bloop (EMA gradient projection) through the public callback: effect and cost.

*Careful with that Scalpel: Improving Gradient Surgery with an EMA* (Hsieh, Thornton, Dupont,
Ablin; ICML 2024, arXiv:2402.02998); guide: ``docs/guide/bloop.md``.

1. **Least squares**: over-parameterised `min ‖Ax − b‖²` with `A` 50×200 (`N(0, 1/50)` entries),
   `b ~ N(0, 1)`, `x₀ ~ N(0, 1)`, SGD lr 0.05 on mini-batches of 10 rows drawn with replacement,
   3000 steps, aux `‖x‖²` (its minimiser among interpolators is the min-norm solution `A⁺b`),
   3 seeds. Runs: main only, mixed `g + λh`, projection on the instantaneous gradient (`ema=1`),
   Bloop (`ema=0.1`), all with `λ = 0.1`. Each run goes through a `LossMixin` LightningModule and
   `EMAGradientProjection`; a plain-PyTorch loop written from the formulas runs on the same
   mini-batches as a cross-check.
2. **Digits** (a small real task): MLP 64-128-10 on scikit-learn's bundled digits, cross-entropy
   main loss, aux = the squared parameter norm `‖θ‖²` (weight decay as the aux objective, as in
   the paper's ImageNet runs), SGD lr 0.1, batch 64, 600 steps, `λ = 5e-3`, 3 seeds: main only,
   summed (main + λ aux in one backward), Bloop.
3. **Cost**: wall time per training step of Bloop vs the summed objective (one backward) on the
   digits MLP and on a wider MLP (the callback's hooks called directly, without the Trainer).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bloop.py`` (≈6 min single-thread on an idle core; 17
min measured on the shared 2-core box; ``--cost-only`` re-measures the cost table alone). Writes
``results/bloop.{json,md}`` and ``docs/assets/bloop.png``; ``--smoke --out DIR``: a few seconds,
everything in ``DIR`` (see ``benchmarks/_common.py``).
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import _common
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import EMAGradientProjection
from lightning_losses.mixins import LossMixin

SEEDS = (0, 1, 2)
LBDA, ALPHA = 0.1, 0.1
LS_STEPS, LS_LR, LS_BATCH, LS_EVERY = 3000, 0.05, 10, 50
DIG_STEPS, DIG_LR, DIG_BATCH, DIG_LBDA = 600, 0.1, 64, 5e-3
COST_STEPS, COST_REPS = 50, 7
# Sizes of a smoke run: the whole code path in a few seconds, numbers meaningless.
SMOKE = {"seeds": (0,), "ls_steps": 10, "ls_every": 5, "dig_steps": 4, "cost": (3, 2)}
# Final full-data main loss of an independent reference run of the same experiment.
REFERENCE = {"mixed": 0.558, "instantaneous": 0.446, "bloop": 0.053}

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


def trainer(max_steps: int, callbacks: list[Callback]) -> Trainer:
    return Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


# ------------------------------------------------------------------------------ least squares
def ls_problem(seed: int, steps: int = LS_STEPS):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(50, 200, generator=g) / 50**0.5
    b = torch.randn(50, generator=g)
    x0 = torch.randn(200, generator=g)
    rows = torch.randint(50, (steps, LS_BATCH), generator=g)
    return a, b, x0, rows


class LeastSquares(LossMixin, LightningModule):
    def __init__(self, a, b, x0, aux_weight: float | None):
        super().__init__()
        self.x = nn.Parameter(x0.clone())
        self.register_buffer("a", a)
        self.register_buffer("b", b)
        self.aux_weight = aux_weight
        self.configure_criterion(nn.MSELoss())

    def training_step(self, rows, batch_idx):
        pred = self.a[rows] @ self.x
        aux = (
            {} if self.aux_weight is None else {"sq_norm": self.aux_weight * self.x.square().sum()}
        )
        return self.compute_loss(pred, self.b[rows], aux=aux, log=False).loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LS_LR)

    @torch.no_grad()
    def full_loss(self) -> float:
        return float(((self.a @ self.x - self.b) ** 2).mean())


class Trace(Callback):
    def __init__(self, every: int):
        self.every, self.loss, self.norm = every, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every == 0:
            with torch.no_grad():
                self.loss.append(pl_module.full_loss())
                self.norm.append(float(pl_module.x.norm()))


LS_METHODS = {
    # name: (aux weight in the module, callback kwargs or None)
    "main": (None, None),
    "mixed": (LBDA, None),
    "instantaneous": (1.0, {"ema": 1.0, "lbda": LBDA, "log_stats": False}),
    "bloop": (1.0, {"ema": ALPHA, "lbda": LBDA, "log_stats": False}),
}


def ls_callback(method: str, seed: int, steps: int = LS_STEPS, every: int = LS_EVERY) -> dict:
    a, b, x0, rows = ls_problem(seed, steps)
    aux_weight, kwargs = LS_METHODS[method]
    model = LeastSquares(a, b, x0, aux_weight)
    trace = Trace(every)
    callbacks = [trace] + ([EMAGradientProjection(**kwargs)] if kwargs else [])
    loader = DataLoader(rows, batch_size=None, shuffle=False)
    trainer(steps, callbacks).fit(model, loader)
    return {
        "loss": model.full_loss(),
        "norm": float(model.x.detach().norm()),
        "trace_loss": trace.loss,
        "trace_norm": trace.norm,
    }


def ls_problem_min_norm(seed: int) -> float:
    a, b, _, _ = ls_problem(seed)
    return float((torch.linalg.pinv(a) @ b).norm())


def ls_plain(method: str, seed: int, steps: int = LS_STEPS, every: int = LS_EVERY) -> dict:
    """The same runs in plain PyTorch from the formulas (no Lightning, no library code)."""
    a, b, x, rows = ls_problem(seed, steps)
    m = None
    trace_loss, trace_norm = [], []
    for step, idx in enumerate(rows, start=1):
        g = 2 * a[idx].T @ (a[idx] @ x - b[idx]) / LS_BATCH
        h = 2 * x
        if method == "main":
            d = g
        elif method == "mixed":
            d = g + LBDA * h
        else:
            alpha = 1.0 if method == "instantaneous" else ALPHA
            m = g.clone() if m is None else (1 - alpha) * m + alpha * g
            c = (h @ m) / (m @ m + 1e-7)
            d = g + LBDA * (h - c * m)
        x = x - LS_LR * d
        if step % every == 0:
            trace_loss.append(float(((a @ x - b) ** 2).mean()))
            trace_norm.append(float(x.norm()))
    return {
        "loss": float(((a @ x - b) ** 2).mean()),
        "norm": float(x.norm()),
        "trace_loss": trace_loss,
        "trace_norm": trace_norm,
    }


# ------------------------------------------------------------------------------------ digits
def sq_norm(module: nn.Module) -> torch.Tensor:
    return sum(p.square().sum() for p in module.parameters())


class Digits(LossMixin, LightningModule):
    def __init__(self, seed: int, aux_weight: float | None, width: int = 128, depth: int = 1):
        super().__init__()
        torch.manual_seed(seed)
        layers, d_in = [], 64
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), nn.ReLU()]
            d_in = width
        self.net = nn.Sequential(*layers, nn.Linear(d_in, 10))
        self.aux_weight = aux_weight
        self.configure_criterion("cross_entropy")

    def training_step(self, batch, batch_idx):
        x, y = batch
        aux = {} if self.aux_weight is None else {"sq_norm": self.aux_weight * sq_norm(self.net)}
        return self.compute_loss(self.net(x), y, aux=aux, log=False).loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=DIG_LR)


DIG_METHODS = {
    "main": (None, None),
    "summed": (DIG_LBDA, None),
    "bloop": (1.0, {"ema": ALPHA, "lbda": DIG_LBDA, "log_stats": False}),
}


def digits_run(method: str, seed: int, splits, steps: int = DIG_STEPS) -> dict:
    aux_weight, kwargs = DIG_METHODS[method]
    model = Digits(seed, aux_weight)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(splits.x_train, splits.y_train),
        batch_size=DIG_BATCH,
        shuffle=True,
        generator=gen,
    )
    callbacks = [EMAGradientProjection(**kwargs)] if kwargs else []
    trainer(steps, callbacks).fit(model, loader)
    with torch.no_grad():
        train_ce = float(F.cross_entropy(model.net(splits.x_train), splits.y_train))
        test_ce = float(F.cross_entropy(model.net(splits.x_test), splits.y_test))
        acc = float((model.net(splits.x_test).argmax(1) == splits.y_test).float().mean())
        norm2 = float(sq_norm(model.net))
    return {"train_ce": train_ce, "test_ce": test_ce, "test_acc": acc, "sq_norm": norm2}


def cost(splits, width: int, depth: int, steps: int = COST_STEPS, reps: int = COST_REPS) -> dict:
    """Median wall time per training step, summed objective vs Bloop, interleaved repeats.

    The step is timed without the Trainer (whose per-step Python overhead on a loaded 2-core box
    varies more than the quantity measured): forward, `compute_loss`, backward (one
    `loss.backward()` for the summed objective; the callback's `backward` — aux `autograd.grad`
    plus the main backward — then its `on_before_optimizer_step` for Bloop), SGD step.
    """
    x, y = splits.x_train[:DIG_BATCH], splits.y_train[:DIG_BATCH]
    no_trainer = SimpleNamespace(precision_plugin=None)
    runs = {}
    for method in ("summed", "bloop"):
        aux_weight, kwargs = DIG_METHODS[method]
        model = Digits(0, aux_weight, width=width, depth=depth)
        runs[method] = (
            model,
            torch.optim.SGD(model.parameters(), lr=DIG_LR),
            EMAGradientProjection(**kwargs) if kwargs else None,
        )

    def step(model, opt, cb):
        opt.zero_grad()
        aux = {"sq_norm": model.aux_weight * sq_norm(model.net)}
        out = model.compute_loss(model.net(x), y, aux=aux, log=False)
        if cb is None:
            out.loss.backward()
        else:
            cb.backward(model, out.main, out.aux, accumulation_factor=1.0, scaler=None)
            cb.on_before_optimizer_step(no_trainer, model, opt)
        opt.step()

    times = {m: [] for m in runs}
    for method in runs:  # warm-up
        for _ in range(10):
            step(*runs[method])
    for _ in range(reps):
        for method, run in runs.items():
            start = time.perf_counter()
            for _ in range(steps):
                step(*run)
            times[method].append((time.perf_counter() - start) / steps * 1e3)
    med = {m: statistics.median(t) for m, t in times.items()}
    ratios = [b / a for a, b in zip(times["summed"], times["bloop"], strict=True)]
    n_params = sum(p.numel() for p in runs["summed"][0].parameters())
    return {
        "params": n_params,
        "summed_ms": med["summed"],
        "bloop_ms": med["bloop"],
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
    }


# -------------------------------------------------------------------------------------- main
def measure_costs(splits, steps: int = COST_STEPS, reps: int = COST_REPS) -> dict:
    return {
        "digits MLP 64-128-10": cost(splits, 128, 1, steps, reps),
        "wide MLP 64-512-512-10": cost(splits, 512, 2, steps, reps),
    }


def mean(xs):
    return sum(xs) / len(xs)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "bloop", plot=True)
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="re-measure the cost table, keep the effect results of <out>/<name>.json",
    )
    args = _common.parse(parser, argv)
    if args.smoke and args.cost_only:
        parser.error("--cost-only reuses a full run's results; it has no smoke mode")
    torch.set_num_threads(1)
    json_path, md_path = _common.output(args, ".json"), _common.output(args, ".md")
    from lightning_losses.data import load_digits_splits

    if args.cost_only:
        result = json.loads(json_path.read_text())
        result["cost"] = measure_costs(load_digits_splits(0.0, seed=0))
        _common.write_json(json_path, result, indent=2)
        md_path.write_text(markdown(result))
        print(markdown(result))
        return
    seeds = SMOKE["seeds"] if args.smoke else SEEDS
    ls_steps, every = (SMOKE["ls_steps"], SMOKE["ls_every"]) if args.smoke else (LS_STEPS, LS_EVERY)
    dig_steps = SMOKE["dig_steps"] if args.smoke else DIG_STEPS
    cost_steps, cost_reps = SMOKE["cost"] if args.smoke else (COST_STEPS, COST_REPS)
    start = time.perf_counter()
    # Lightning costs ~20 ms a step on the shared 2-core box: the two runs that need the callback
    # go through it on every seed, the two that do not (main, mixed = LossMixin's default summed
    # backward) through it on the first seed only, as a check of the plain loop used for the rest.
    plain = {m: [ls_plain(m, s, ls_steps, every) for s in seeds] for m in LS_METHODS}
    ls = {
        m: [ls_callback(m, s, ls_steps, every) if kw or s == seeds[0] else None for s in seeds]
        for m, (_, kw) in LS_METHODS.items()
    }
    splits = load_digits_splits(0.0, seed=0)
    digits = {m: [digits_run(m, s, splits, dig_steps) for s in seeds] for m in DIG_METHODS}
    costs = measure_costs(splits, cost_steps, cost_reps)
    elapsed = time.perf_counter() - start

    min_norm = mean([ls_problem_min_norm(s) for s in seeds])
    ls_rows = {}
    for m, (_, kw) in LS_METHODS.items():
        runs = [c if c is not None else p for c, p in zip(ls[m], plain[m], strict=True)]
        ls_rows[m] = {
            "via": f"callback, {len(seeds)} seeds" if kw else "plain loop (callback on seed 0)",
            "loss": mean([r["loss"] for r in runs]),
            "loss_plain_loop": mean([r["loss"] for r in plain[m]]),
            "norm": mean([r["norm"] for r in runs]),
            "min_norm": min_norm,
            "reference_loss": REFERENCE.get(m),
            "per_seed_loss": [r["loss"] for r in runs],
        }
    dig_rows = {m: {k: mean([r[k] for r in digits[m]]) for k in digits[m][0]} for m in DIG_METHODS}
    result = {
        "least_squares": ls_rows,
        "digits": dig_rows,
        "cost": costs,
        "config": {
            "seeds": seeds,
            "lbda": LBDA,
            "ema": ALPHA,
            "ls": {"steps": ls_steps, "lr": LS_LR, "batch": LS_BATCH},
            "digits": {"steps": dig_steps, "lr": DIG_LR, "batch": DIG_BATCH, "lbda": DIG_LBDA},
            "cost": {"steps": cost_steps, "reps": cost_reps},
            "smoke": args.smoke,
        },
        "max_plain_loop_gap": max(
            abs(c["loss"] - p["loss"])
            for m in LS_METHODS
            for c, p in zip(ls[m], plain[m], strict=True)
            if c is not None
        ),
        "elapsed_s": elapsed,
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        "1 thread",
    }
    _common.write_json(json_path, result, indent=2)
    md_path.write_text(markdown(result))
    plot(plain, seeds, every, args.plot)
    print(markdown(result))


def markdown(r: dict) -> str:
    n_seeds = len(r["config"]["seeds"])
    reps = r["config"].get("cost", {"steps": COST_STEPS, "reps": COST_REPS})
    lines = [
        f"### Least squares, aux ‖x‖² ({n_seeds} seeds, mean)",
        "",
        "| method | run through | final main loss | plain loop | reference run | ‖x‖ "
        "| min-norm ‖A⁺b‖ |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, row in r["least_squares"].items():
        ref = "—" if row["reference_loss"] is None else f"{row['reference_loss']:.3f}"
        lines.append(
            f"| {m} | {row['via']} | {row['loss']:.3f} | {row['loss_plain_loop']:.3f} | {ref} | "
            f"{row['norm']:.2f} | {row['min_norm']:.2f} |"
        )
    lines += [
        "",
        "Callback vs plain loop, largest per-seed gap in final loss: "
        f"{r['max_plain_loop_gap']:.1e}.",
        "",
        f"### Digits MLP, aux λ‖θ‖² ({n_seeds} seeds, mean)",
        "",
        "| method | train CE | test CE | test accuracy | ‖θ‖² |",
        "|---|---|---|---|---|",
    ]
    for m, row in r["digits"].items():
        lines.append(
            f"| {m} | {row['train_ce']:.4f} | {row['test_ce']:.4f} | {row['test_acc']:.4f} | "
            f"{row['sq_norm']:.1f} |"
        )
    lines += [
        "",
        "### Cost per training step (CPU, 1 thread; median of "
        f"{reps['reps']} interleaved repeats of {reps['steps']} steps)",
        "",
        "| model | parameters | summed (one backward) ms | Bloop ms | ratio (range) |",
        "|---|---|---|---|---|",
    ]
    for name, row in r["cost"].items():
        lines.append(
            f"| {name} | {row['params']} | {row['summed_ms']:.2f} | {row['bloop_ms']:.2f} | "
            f"{row['ratio']:.2f}× ({row['ratio_range'][0]:.2f}–{row['ratio_range'][1]:.2f}) |"
        )
    lines += ["", f"Total {r['elapsed_s']:.0f} s on {r['machine']}.", ""]
    return "\n".join(lines)


def plot(ls: dict, seeds: tuple[int, ...], every: int, path: Path) -> None:
    """Curves from the plain loop, which the callback matches to float precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = [(i + 1) * every for i in range(len(ls["main"][0]["trace_loss"]))]
    for m, runs in ls.items():
        loss = [mean(v) for v in zip(*[r["trace_loss"] for r in runs], strict=True)]
        norm = [mean(v) for v in zip(*[r["trace_norm"] for r in runs], strict=True)]
        axes[0].plot(steps, loss, label=m)
        axes[1].plot(steps, norm, label=m)
    min_norm = mean([ls_problem_min_norm(s) for s in seeds])
    axes[1].axhline(min_norm, color="k", ls=":", label="min-norm")
    axes[0].set(yscale="log", xlabel="SGD step", ylabel="full-data main loss", title="main loss")
    axes[1].set(xlabel="SGD step", ylabel="‖x‖", title="‖x‖ (aux: ‖x‖²)")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        f"Over-parameterised least squares, λ = {LBDA} ({len(seeds)} seeds, mean; plain loop)"
    )
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    main()
