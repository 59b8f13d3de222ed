"""Robust regression: MSE vs pseudo-Huber vs log-cosh vs L1 under heavy-tailed noise and outliers.

Synthetic data with a known ground truth: x ~ N(0, I_20), y = x·w + noise, where the noise is
Student-t (3 degrees of freedom, scale 0.5) and, with probability ε (the outlier rate), is
replaced by a Cauchy draw of scale 20 (symmetric, so the regression function stays x·w).
ε ∈ {0, 0.05, 0.1, 0.2, 0.3}; 1000 training, 500 validation (same contamination) and 2000 test
inputs. Model: a linear layer, full-batch Adam, 200 steps.

Losses: ``mse`` (``F.mse_loss``), ``l1`` (``F.l1_loss``), ``pseudo_huber``
(``PseudoHuberLoss(c)``) and ``log_cosh`` (``LogCoshLoss`` on r / s, times s², so that its
scale s plays the role of c). Every loss gets the same budget of 8 configurations, chosen on the
validation split by the mean absolute error (the validation labels are contaminated too, so the
selection never sees clean targets): MSE and L1 over 8 learning rates log-spaced in
[3e-3, 1]; pseudo-Huber and log-cosh over 2 learning rates {0.05, 0.2} × 4 scales
{0.1, 0.3, 1, 3}. 3 seeds (data and initialisation).

Measured: test error = mean squared distance between the fitted and the true regression function
on clean test inputs, ‖ŵ − w‖²-like, per outlier rate.

Run: ``python benchmarks/robust_regression.py`` (≈1 min of CPU time, one thread); writes
``benchmarks/results/robust_regression.{json,md}`` and ``docs/assets/robust_regression.png``;
``--smoke --out DIR``: every loss and rate for a few steps, everything in ``DIR``.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable

import _common
import torch
import torch.nn.functional as F

from lightning_losses.functional import log_cosh_loss, pseudo_huber_loss

D, N_TRAIN, N_VAL, N_TEST = 20, 1000, 500, 2000
RATES = (0.0, 0.05, 0.1, 0.2, 0.3)
LOSSES = ("mse", "l1", "pseudo_huber", "log_cosh")
SEEDS = (0, 1, 2)
STEPS = 200
LR_ONLY = tuple(10 ** (-2.5 + 2.5 * k / 7) for k in range(8))
LR_SCALE = tuple((lr, s) for lr in (0.05, 0.2) for s in (0.1, 0.3, 1.0, 3.0))
SMOKE = {"steps": 5, "seeds": (0,), "rates": (0.0, 0.2)}


def make_data(rate: float, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(D, generator=g)

    def split(n: int, noisy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, D, generator=g)
        f = x @ w
        if not noisy:
            return x, f
        # Student-t(3) = N / sqrt(χ²_3 / 3); Cauchy = N / |N'|.
        chi2 = torch.randn(n, 3, generator=g).square().sum(1)
        noise = 0.5 * torch.randn(n, generator=g) / (chi2 / 3).sqrt()
        cauchy = 20 * torch.randn(n, generator=g) / torch.randn(n, generator=g).abs()
        outlier = torch.rand(n, generator=g) < rate
        return x, f + torch.where(outlier, cauchy, noise)

    return {"train": split(N_TRAIN, True), "val": split(N_VAL, True), "test": split(N_TEST, False)}


def objective(
    name: str, scale: float | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "mse":
        return F.mse_loss
    if name == "l1":
        return F.l1_loss
    assert scale is not None
    if name == "pseudo_huber":
        return lambda p, y: pseudo_huber_loss(p, y, c=scale)
    return lambda p, y: scale**2 * log_cosh_loss(p / scale, y / scale)


def fit(name: str, lr: float, scale: float | None, data: dict, seed: int, steps: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(D, 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data["train"]
    loss_fn = objective(name, scale)
    for _ in range(steps):
        loss = loss_fn(model(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def configs(name: str) -> list[tuple[float, float | None]]:
    if name in ("mse", "l1"):
        return [(lr, None) for lr in LR_ONLY]
    return list(LR_SCALE)


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.make_parser(__doc__, "robust_regression", plot=True), argv)
    steps, seeds, rates = STEPS, SEEDS, RATES
    if args.smoke:
        steps, seeds, rates = SMOKE["steps"], SMOKE["seeds"], SMOKE["rates"]
    torch.set_num_threads(1)
    start = time.perf_counter()
    runs = []
    for rate in rates:
        for seed in seeds:
            data = make_data(rate, seed)
            for name in LOSSES:
                best = None
                for lr, scale in configs(name):
                    model = fit(name, lr, scale, data, seed, steps)
                    with torch.no_grad():
                        xv, yv = data["val"]
                        val_mae = float((model(xv)[:, 0] - yv).abs().mean())
                    if not math.isfinite(val_mae):
                        continue
                    if best is None or val_mae < best[0]:
                        best = (val_mae, lr, scale, model)
                assert best is not None
                val_mae, lr, scale, model = best
                with torch.no_grad():
                    xt, ft = data["test"]
                    test_err = float((model(xt)[:, 0] - ft).square().mean())
                runs.append(
                    {
                        "rate": rate,
                        "seed": seed,
                        "loss": name,
                        "lr": lr,
                        "scale": scale,
                        "val_mae": val_mae,
                        "test_error": test_err,
                    }
                )
    summary = []
    for rate in rates:
        for name in LOSSES:
            errs = [r["test_error"] for r in runs if r["rate"] == rate and r["loss"] == name]
            summary.append(
                {
                    "rate": rate,
                    "loss": name,
                    "mean": statistics.fmean(errs),
                    "sd": statistics.stdev(errs) if len(errs) > 1 else 0.0,
                    "min": min(errs),
                    "max": max(errs),
                }
            )
    elapsed = time.perf_counter() - start
    meta = {
        "d": D,
        "sizes": {"train": N_TRAIN, "val": N_VAL, "test": N_TEST},
        "rates": list(rates),
        "steps": steps,
        "seeds": list(seeds),
        "configs_per_loss": len(LR_ONLY),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "seconds": round(elapsed, 1),
        "smoke": args.smoke,
    }
    _common.write_json(
        _common.output(args, ".json"), {"meta": meta, "summary": summary, "runs": runs}
    )

    lines = [
        "# Robust regression under heavy-tailed noise and outliers",
        "",
        f"Linear model, d={D}, {N_TRAIN} training samples, Student-t(3) noise (scale 0.5) with a "
        f"share ε replaced by Cauchy outliers (scale 20); full-batch Adam, {steps} steps; each "
        "loss tuned over 8 configurations on the validation MAE; seeds "
        f"{list(seeds)}; {platform.machine()} CPU, torch {torch.__version__}, {elapsed:.0f} s. "
        "Test error = mean squared error against the true regression function on clean inputs; "
        "mean ± sd (min–max) over seeds. Generated by `benchmarks/robust_regression.py`.",
        "",
        "| outlier rate ε | " + " | ".join(LOSSES) + " |",
        "|---" * (len(LOSSES) + 1) + "|",
    ]
    for rate in rates:
        cells = []
        for name in LOSSES:
            s = next(r for r in summary if r["rate"] == rate and r["loss"] == name)
            cells.append(f"{s['mean']:.4f} ± {s['sd']:.4f} ({s['min']:.4f}–{s['max']:.4f})")
        lines.append(f"| {rate:g} | " + " | ".join(cells) + " |")
    lines += ["", "Chosen configurations (lr, scale) per seed:", ""]
    for rate in rates:
        for name in LOSSES:
            picks = [
                (f"{r['lr']:.3g}", r["scale"])
                for r in runs
                if r["rate"] == rate and r["loss"] == name
            ]
            lines.append(f"- ε={rate:g}, {name}: {picks}")
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, name in enumerate(LOSSES):
        rows = [s for s in summary if s["loss"] == name]
        xs = [r["rate"] + (i - 1.5) * 0.004 for r in rows]
        ax.errorbar(
            xs,
            [r["mean"] for r in rows],
            yerr=[r["sd"] for r in rows],
            marker="o",
            capsize=3,
            label=name,
        )
    ax.set_yscale("log")
    ax.set_xlabel("outlier rate ε")
    ax.set_ylabel("test error vs true function (MSE, log)")
    ax.set_title("Linear regression, t(3) noise + Cauchy outliers; tuned on val MAE")
    ax.legend()
    fig.tight_layout()
    _common.save_figure(fig, args.plot)


if __name__ == "__main__":
    main()
