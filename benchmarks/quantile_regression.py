"""Quantile regression on the Mauna Loa CO2 series: coverage, pinball loss and quantile crossing.

Data: the weekly CO2 series shipped inside statsmodels (``statsmodels.datasets.co2``, 1958–2001,
nothing downloaded), gaps filled by linear interpolation. Task: from the last 52 weekly values,
forecast the change over the next 4 weeks (windows normalised by their last value), split in
time: first 60 % train, next 20 % validation, last 20 % test. Model: an MLP (52 → 64 → 64 → 9)
predicting the quantiles τ = 0.1, 0.2, ..., 0.9 with ``PinballLoss``, full-batch Adam, 600
steps.

Variants: ``raw`` (plain pinball loss), ``sort`` (``non_crossing="sort"``), ``increments``
(``non_crossing="increments"``, a monotone parametrisation) and ``penalty`` (raw outputs plus
``QuantileCrossingPenaltyLoss(lam=1)``). Every variant gets the same tuning budget: its learning
rate from {1e-3, 3e-3, 1e-2}, chosen on the validation pinball loss; 3 seeds.

Measured on the test split: pinball loss, empirical coverage of the 80 % interval [q0.1, q0.9]
(target 0.80), and the crossing rate (share of test windows whose predicted quantiles are not
non-decreasing) of the quantiles each variant predicts.

Run: ``python benchmarks/quantile_regression.py`` (≈1 min of CPU time, one thread); writes
``benchmarks/results/quantile_regression.{json,md}`` and ``docs/assets/quantile_regression.png``;
``--smoke --out DIR``: every variant for a few steps, everything in ``DIR``.
"""

from __future__ import annotations

import platform
import statistics
import time

import _common
import torch
from torch import nn

from lightning_losses.functional import (
    monotone_quantiles,
    pinball_loss,
    quantile_crossing_penalty_loss,
)

TAUS = tuple(round(0.1 * k, 1) for k in range(1, 10))
LAGS, HORIZON = 52, 4
VARIANTS = ("raw", "sort", "increments", "penalty")
LRS = (1e-3, 3e-3, 1e-2)
SEEDS = (0, 1, 2)
STEPS = 600
SMOKE = {"steps": 5, "seeds": (0,), "lrs": (1e-3,)}


def load_windows() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Normalised lag windows `[M, 52]` and 4-week-ahead changes `[M]`, split in time."""
    from statsmodels.datasets import co2

    series = co2.load_pandas().data["co2"].interpolate().bfill()
    y = torch.tensor(series.to_numpy(), dtype=torch.float32)
    idx = torch.arange(LAGS, len(y) - HORIZON + 1)
    windows = torch.stack([y[i - LAGS : i] for i in idx.tolist()])
    last = windows[:, -1:]
    x = windows - last
    target = y[idx + HORIZON - 1] - last[:, 0]
    n = len(x)
    cut1, cut2 = int(0.6 * n), int(0.8 * n)
    scale = x[:cut1].std()  # one scale for inputs and targets, from the training split only
    x, target = x / scale, target / scale
    return {
        "train": (x[:cut1], target[:cut1]),
        "val": (x[cut1:cut2], target[cut1:cut2]),
        "test": (x[cut2:], target[cut2:]),
    }


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(LAGS, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, len(TAUS))
    )


def quantiles_of(variant: str, out: torch.Tensor) -> torch.Tensor:
    """The quantiles a variant predicts from its raw outputs."""
    mode = variant if variant in ("sort", "increments") else "none"
    return monotone_quantiles(out, mode)


def train(variant: str, seed: int, lr: float, data: dict, steps: int) -> nn.Module:
    model = mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data["train"]
    mode = variant if variant in ("sort", "increments") else "none"
    for _ in range(steps):
        out = model(x)
        loss = pinball_loss(out, y, quantiles=TAUS, non_crossing=mode)
        if variant == "penalty":
            loss = loss + quantile_crossing_penalty_loss(out, lam=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def evaluate(variant: str, model: nn.Module, split: tuple[torch.Tensor, torch.Tensor]) -> dict:
    x, y = split
    q = quantiles_of(variant, model(x))
    lo, hi = q[:, 0], q[:, -1]
    return {
        "pinball": float(pinball_loss(q, y, quantiles=TAUS)),
        "coverage_80": float(((y >= lo) & (y <= hi)).float().mean()),
        "crossing_rate": float((q.diff(dim=-1) < 0).any(dim=-1).float().mean()),
        "interval_width": float((hi - lo).mean()),
    }


def summarise(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.make_parser(__doc__, "quantile_regression", plot=True), argv)
    steps, seeds, lrs = STEPS, SEEDS, LRS
    if args.smoke:
        steps, seeds, lrs = SMOKE["steps"], SMOKE["seeds"], SMOKE["lrs"]
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load_windows()
    runs = []
    for variant in VARIANTS:
        for seed in seeds:
            best = None
            for lr in lrs:
                model = train(variant, seed, lr, data, steps)
                val = evaluate(variant, model, data["val"])
                if best is None or val["pinball"] < best[1]["pinball"]:
                    best = (lr, val, model)
            assert best is not None
            lr, val, model = best
            test = evaluate(variant, model, data["test"])
            runs.append({"variant": variant, "seed": seed, "lr": lr, "val": val, "test": test})
    summary = []
    for variant in VARIANTS:
        rows = [r for r in runs if r["variant"] == variant]
        summary.append(
            {
                "variant": variant,
                **{k: summarise([r["test"][k] for r in rows]) for k in rows[0]["test"]},
                "chosen_lrs": [r["lr"] for r in rows],
            }
        )
    elapsed = time.perf_counter() - start
    meta = {
        "taus": list(TAUS),
        "lags": LAGS,
        "horizon": HORIZON,
        "sizes": {k: len(v[1]) for k, v in data.items()},
        "steps": steps,
        "lrs": list(lrs),
        "seeds": list(seeds),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "seconds": round(elapsed, 1),
        "smoke": args.smoke,
    }
    _common.write_json(
        _common.output(args, ".json"), {"meta": meta, "summary": summary, "runs": runs}
    )

    def fmt(s: dict, d: int = 3) -> str:
        return f"{s['mean']:.{d}f} ± {s['sd']:.{d}f} ({s['min']:.{d}f}–{s['max']:.{d}f})"

    lines = [
        "# Quantile regression on the statsmodels CO2 series",
        "",
        f"Weekly Mauna Loa CO2 (statsmodels), 4-week-ahead change from {LAGS} lags; splits in "
        f"time: {meta['sizes']}. MLP, 9 quantiles τ = 0.1…0.9, full-batch Adam, {steps} steps, "
        f"lr per variant from {list(lrs)} on the validation pinball loss; seeds {list(seeds)}; "
        f"{platform.machine()} CPU, torch {torch.__version__}, {elapsed:.0f} s. Test split; "
        "mean ± sd (min–max) over seeds. Generated by `benchmarks/quantile_regression.py`.",
        "",
        "| variant | pinball loss | coverage of the 80 % interval | crossing rate | "
        "mean 80 % width |",
        "|---|---|---|---|---|",
    ]
    for row in summary:
        lines.append(
            f"| {row['variant']} | {fmt(row['pinball'], 4)} | {fmt(row['coverage_80'])} | "
            f"{fmt(row['crossing_rate'])} | {fmt(row['interval_width'])} |"
        )
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    names = [r["variant"] for r in summary]
    for ax, key, title in zip(
        axes,
        ("pinball", "coverage_80", "crossing_rate"),
        ("test pinball loss", "coverage of the 80 % interval", "crossing rate (test)"),
        strict=True,
    ):
        means = [r[key]["mean"] for r in summary]
        errs = [r[key]["sd"] for r in summary]
        ax.bar(names, means, yerr=errs, color="C0", capsize=4)
        for i, name in enumerate(names):
            per_seed = [r["test"][key] for r in runs if r["variant"] == name]
            ax.scatter([i] * len(per_seed), per_seed, color="k", s=10, zorder=3)
        ax.set_title(title)
        if key == "coverage_80":
            ax.axhline(0.8, color="C3", ls="--", lw=1)
            ax.set_ylim(0.0, 1.0)
    fig.suptitle("CO2 (statsmodels), 9-quantile MLP: mean ± sd over 3 seeds, dots = seeds")
    fig.tight_layout()
    _common.save_figure(fig, args.plot)


if __name__ == "__main__":
    main()
