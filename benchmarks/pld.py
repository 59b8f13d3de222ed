"""PLD benchmark: uniform sampling vs PLD resampling on synthetic data with injected noise.

*Personalized Denoising Implicit Feedback for Robust Recommender System* (Zhang et al., WWW 2025,
arXiv:2502.00348); guide: ``docs/guide/pld.md``. Setting: 500 users, 1000 items, rank-8 ground
truth, 40 true positives per user (28 train / 4 val / 8 clean test), injected random noisy
training positives at 10/20/30 %, MF (d=32) with BPR, Adam 1e-2, batch 1024, 30 epochs, pool
k=5. For each noise rate and seed it trains the same model with uniform sampling and with
``PLDResampling``, and reports

* clean-test Recall@20 / NDCG@20 (full ranking, training and validation items excluded);
* the share of known-noisy items among the positives actually trained on (last epoch and mean);
* epoch time (median over epochs ≥ 2) of PLD vs uniform, measured side by side in the same
  process, for MF (option (a): callback scores the pool) and LightGCN (option (b): candidate
  losses from the step's own propagation; plus option (a) = a second propagation, for reference).

Run: ``python benchmarks/pld.py`` (about 10 minutes on 2 CPU cores). Results:
``benchmarks/results/pld.{json,md}`` and ``docs/assets/pld.png`` (``--name`` changes the stem,
e.g. ``--name pld.lightgcn``); ``--smoke --out DIR``: small data, 2 epochs per run, everything in
``DIR`` (see ``benchmarks/_common.py``).
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import _common
import lightning as L
import torch
from lightning.pytorch import Callback

from lightning_losses.callbacks import PLDResampling
from lightning_losses.data import InteractionDataModule
from lightning_losses.recipes.recsys import RecsysModule

# A smoke run's synthetic data: 60 users × 200 items instead of 500 × 1000.
SMOKE_DATA = {"num_users": 60, "num_items": 200}
warnings.filterwarnings("ignore")


class EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self.noisy: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(time.perf_counter() - self._t)
        share = trainer.callback_metrics.get("train/noisy_share")
        if share is not None:
            self.noisy.append(float(share))


def run(
    *,
    model: str,
    noise: float,
    seed: int,
    pld: bool,
    epochs: int,
    temperature: float,
    pool: int,
    weight_decay: float = 0.0,
    l2_reg: float = 3e-2,
    inline: bool | None = None,
    evaluate: bool = True,
    data: dict | None = None,
) -> dict:
    L.seed_everything(seed, verbose=False)
    dm = InteractionDataModule(
        noise_rate=noise, seed=seed, pool_size=pool, batch_size=1024, **(data or {})
    )
    module = RecsysModule(
        model=model,
        embedding_dim=32,
        num_layers=3,
        lr=1e-2,
        weight_decay=weight_decay,
        l2_reg=l2_reg,
        **({} if inline is None else {"pld_inline": inline}),
    )
    timer = EpochTimer()
    callbacks = [timer] + ([PLDResampling(temperature=temperature, seed=seed)] if pld else [])
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        limit_val_batches=0,
    )
    trainer.fit(module, dm)
    out = {
        "model": model,
        "noise": noise,
        "seed": seed,
        "method": f"pld τ={temperature:g}" if pld else "uniform",
        "temperature": temperature if pld else None,
        "weight_decay": weight_decay,
        "l2_reg": l2_reg,
        "reg": _reg(weight_decay, l2_reg),
        "pool": pool,
        "epoch_time_median": statistics.median(timer.times[2:] or timer.times),
        "noisy_share_curve": timer.noisy,
        "noisy_share_last": timer.noisy[-1],
        "noisy_share_mean": sum(timer.noisy) / len(timer.noisy),
    }
    if evaluate:
        res = trainer.test(module, dm, verbose=False)[0]
        out["recall@20"] = res["test/recall@20"]
        out["ndcg@20"] = res["test/ndcg@20"]
    return out


def _reg(weight_decay: float, l2_reg: float) -> str:
    parts = [
        f"l2 {l2_reg:g}" if l2_reg else "",
        f"Adam wd {weight_decay:g}" if weight_decay else "",
    ]
    return " + ".join(p for p in parts if p) or "none"


def effect(args, rows: list, noises, weight_decay: float, l2_reg: float) -> None:
    for noise in noises:
        for seed in range(args.seeds):
            for tau in (None, *args.temperature):
                r = run(
                    model=args.model,
                    noise=noise,
                    seed=seed,
                    pld=tau is not None,
                    epochs=args.epochs,
                    temperature=tau or 1.0,
                    pool=args.pool,
                    weight_decay=weight_decay,
                    l2_reg=l2_reg,
                    inline=args.inline,
                    data=args.data,
                )
                rows.append(r)
                print(
                    f"{r['reg']} noise={noise} seed={seed} {r['method']:10s} "
                    f"R@20={r['recall@20']:.4f} "
                    f"N@20={r['ndcg@20']:.4f} noisy={r['noisy_share_last']:.3f} "
                    f"t={r['epoch_time_median']:.3f}s",
                    flush=True,
                )


def overhead(args) -> list:
    """Epoch time, PLD vs uniform, interleaved runs so both see the same machine state."""
    rows = []
    configs = [
        ("mf", False),  # option (a): the callback scores the pool in on_train_batch_start
        ("mf", True),  # option (b): the module scores the pool inside training_step
        ("lightgcn", True),  # option (b): reuse the step's propagation
        ("lightgcn", False),  # option (a) for LightGCN: a second propagation (reference)
    ]
    for model, inline in configs:
        times = {"uniform": [], "pld": []}
        for rep in range(args.repeats):
            for pld in (False, True):
                r = run(
                    model=model,
                    noise=0.2,
                    seed=rep,
                    pld=pld,
                    epochs=args.overhead_epochs,
                    temperature=args.temperature[0],
                    pool=args.pool,
                    inline=inline,
                    weight_decay=args.weight_decay,
                    l2_reg=args.l2_reg,
                    evaluate=False,
                    data=args.data,
                )
                times["pld" if pld else "uniform"].append(r["epoch_time_median"])
        u, p = statistics.median(times["uniform"]), statistics.median(times["pld"])
        name = model + (" (b) inline" if inline else " (a) callback")
        rows.append({"model": name, "uniform_s": u, "pld_s": p, "ratio": p / u})
        print(f"overhead {name}: uniform {u:.4f}s pld {p:.4f}s ratio {p / u:.2f}", flush=True)
    return rows


def summarise(rows: list) -> list:
    table = []
    keys = []
    for r in rows:
        key = (r["reg"], r["noise"], r["method"])
        if key not in keys:
            keys.append(key)
    for reg, noise, method in keys:
        sel = [r for r in rows if (r["reg"], r["noise"], r["method"]) == (reg, noise, method)]

        def ms(key, sel=sel):
            vals = [r[key] for r in sel]
            return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0

        table.append(
            {
                "reg": reg,
                "noise": noise,
                "method": method,
                "n": len(sel),
                "recall@20": ms("recall@20"),
                "ndcg@20": ms("ndcg@20"),
                "noisy_share_last": ms("noisy_share_last"),
                "noisy_share_mean": ms("noisy_share_mean"),
            }
        )
    return table


def plot(rows: list, reg: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["reg"] == reg]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    noises = sorted({r["noise"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = ["--", "-", ":", "-."]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for ni, noise in enumerate(noises):
        for mi, method in enumerate(methods):
            curves = [
                r["noisy_share_curve"] for r in rows if (r["noise"], r["method"]) == (noise, method)
            ]
            mean = torch.tensor(curves).mean(0)
            axes[0].plot(
                range(1, len(mean) + 1),
                mean,
                styles[mi % 4],
                color=colors[ni % 4],
                label=f"{int(noise * 100)}% {method}",
            )
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("noisy share of trained positives")
    axes[0].legend(fontsize=7, ncol=len(noises))
    table = [t for t in summarise(rows) if t["reg"] == reg]
    width = 1.6
    for mi, method in enumerate(methods):
        sel = [t for t in table if t["method"] == method]
        xs = [t["noise"] * 100 + (mi - (len(methods) - 1) / 2) * width for t in sel]
        axes[1].bar(
            xs,
            [t["recall@20"][0] for t in sel],
            width=width,
            yerr=[t["recall@20"][1] for t in sel],
            label=method,
            capsize=2,
        )
    axes[1].set_xticks([n * 100 for n in noises])
    axes[1].set_xlabel("injected noise (%)")
    axes[1].set_ylabel("clean-test Recall@20")
    axes[1].legend(fontsize=8)
    model = rows[0]["model"].upper() if rows else ""
    fig.suptitle(
        f"PLD vs uniform sampling — {model} + BPR (regularisation: {reg}), mean ± sd over seeds"
    )
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)


def markdown(table: list, over: list, args) -> str:
    lines = [
        f"{args.model.upper()} (d=32) + BPR, Adam lr 1e-2, batch 1024, {args.epochs} epochs, pool "
        f"k={args.pool}, {args.seeds} seeds (mean ± sd). Noisy share = share of known-noisy items "
        "among the positives actually trained on (last epoch / mean over epochs). Test positives "
        "are clean; full ranking over all items, training and validation items excluded.",
        "",
        "| regularisation | noise | method | Recall@20 | NDCG@20 | noisy share (last) "
        "| noisy share (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    f = lambda v: f"{v[0]:.4f} ± {v[1]:.4f}"  # noqa: E731
    for t in table:
        lines.append(
            f"| {t['reg']} | {round(t['noise'] * 100)}% | {t['method']} | "
            f"{f(t['recall@20'])} | {f(t['ndcg@20'])} | {f(t['noisy_share_last'])} | "
            f"{f(t['noisy_share_mean'])} |"
        )
    if over:
        lines += [
            "",
            f"Epoch time (median over epochs ≥ 2, median of {args.repeats} interleaved repeats of "
            f"{args.overhead_epochs} epochs, τ={args.temperature[0]:g}, 1 intra-op thread, shared "
            "2-core CPU):",
            "",
            "| model | uniform (s/epoch) | PLD (s/epoch) | ratio |",
            "|---|---|---|---|",
        ]
        for o in over:
            lines.append(
                f"| {o['model']} | {o['uniform_s']:.4f} | {o['pld_s']:.4f} | {o['ratio']:.2f}× |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "pld", plot=True)
    parser.add_argument("--model", default="mf", choices=["mf", "lightgcn"])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.2, 0.5])
    parser.add_argument("--pool", type=int, default=5)
    parser.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    parser.add_argument(
        "--l2-reg", type=float, default=3e-2, help="per-batch L2 (the recipes' default)"
    )
    parser.add_argument(
        "--ablation-weight-decay",
        type=float,
        nargs="*",
        default=[1e-4],
        help="Adam weight decays (without the per-batch L2) run at 20%% noise only",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--overhead-epochs", type=int, default=8)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--only-overhead", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--inline",
        type=int,
        choices=[0, 1],
        default=None,
        help="effect runs: 1 = PLD option (b) (the module default), 0 = option (a) callback",
    )
    args = _common.parse(parser, argv)
    args.data = None
    if args.smoke:  # one noise rate, seed and temperature, 2 epochs per run, small data
        args.noise, args.seeds, args.epochs, args.repeats, args.overhead_epochs = [0.2], 1, 2, 1, 2
        args.temperature, args.ablation_weight_decay, args.data = [0.5], [], SMOKE_DATA
    # One intra-op thread: on a shared 2-core machine, more threads spin against other jobs and
    # make small ops 50× slower, which would swamp the timing comparison.
    torch.set_num_threads(args.threads)
    json_path = _common.output(args, ".json")
    rows: list = []
    if args.only_overhead:  # re-measure timings, keep the effect runs of the previous run
        rows = json.loads(json_path.read_text())["runs"]
    else:
        effect(args, rows, args.noise, args.weight_decay, args.l2_reg)
        for wd in args.ablation_weight_decay:
            effect(args, rows, [0.2], wd, 0.0)
    over = [] if args.skip_overhead else overhead(args)
    table = summarise(rows)
    payload = {"config": vars(args), "runs": rows, "summary": table, "overhead": over}
    _common.write_json(json_path, payload)
    _common.output(args, ".md").write_text(markdown(table, over, args))
    plot(rows, _reg(args.weight_decay, args.l2_reg), args.plot)
    print(markdown(table, over, args))


if __name__ == "__main__":
    main()
