"""PLD benchmark: uniform sampling vs PLD resampling, each at its own tuned regularisation.

*Personalized Denoising Implicit Feedback for Robust Recommender System* (Zhang et al., WWW 2025,
arXiv:2502.00348); guide: ``docs/guide/pld.md``. Setting: 500 users, 1000 items, rank-8 ground
truth, 40 true positives per user (28 train / 4 val / 8 clean test), injected random noisy
training positives (20 % by default, ``--noise``), MF (d=32) with BPR, Adam 1e-2, batch 1024,
30 epochs, pool k=5. Strong L2 and PLD partly substitute for each other (both keep random
items out of the low-rank fit), so a fair comparison tunes each method's own settings:

* **grid** — uniform sampling over a fine ``l2_reg`` grid (10 values), PLD over a coarser
  ``l2_reg`` grid × temperatures τ (6 × 2), about the same number of configurations for both
  (equal tuning budget); each configuration trained with every seed;
* **selection** — per noise rate and method, the configuration with the best *validation*
  Recall@20 (mean over seeds; the test split is never used to choose); reported: clean-test
  Recall@20 / NDCG@20 mean ± sd and min–max over seeds, and the per-seed paired difference
  (same seed = same data and initialisation);
* **recipe check** — the shipped recipes as a user runs them: each base recipe's defaults
  (``recipes/recsys/mf_bpr.yaml``, ``lightgcn_bpr.yaml``) with uniform sampling vs the same base
  plus the ``pld.yaml`` overlay (read from the YAML files, overlay's model overrides included);
* **overhead** — epoch time (median over epochs ≥ 2) of PLD vs uniform, side by side in the same
  process, for MF (option (a): callback scores the pool) and LightGCN (option (b): candidate
  losses from the step's own propagation; plus option (a) = a second propagation, for reference).

Run: ``python benchmarks/pld.py`` (72 training runs of 30 epochs and the timing runs, one thread:
about 10 minutes on a quiet machine, 50 under heavy load; 20 % noise by default; ``--append
--noise 0.1 0.3 --skip-recipe-check --skip-overhead`` adds other rates to the previous JSON, with
the same grid and seeds, and refuses a rate that is already there; the 10 / 20 / 30 % results
took 132 + 66 runs, about 10-25 s each single-thread).
Results:
``benchmarks/results/pld.{json,md}`` and ``docs/assets/pld.png`` (``--name`` changes the stem);
``--only-recipe-check`` / ``--only-overhead`` re-run that part and keep the rest of the previous
JSON; ``--smoke --out DIR``: small data, 2 epochs per run, everything in ``DIR`` (see
``benchmarks/_common.py``).
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
import yaml
from lightning.pytorch import Callback

from lightning_losses.callbacks import PLDResampling
from lightning_losses.data import InteractionDataModule
from lightning_losses.recipes.recsys import RecsysModule

# A smoke run's synthetic data: 60 users × 200 items instead of 500 × 1000.
SMOKE_DATA = {"num_users": 60, "num_items": 200}
RECIPES = _common.ROOT / "lightning_losses" / "recipes" / "configs" / "recsys"
BASES = {"mf": "mf_bpr.yaml", "lightgcn": "lightgcn_bpr.yaml"}
METHODS = ("uniform", "pld")
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
    lr: float = 1e-2,
    batch_size: int = 1024,
    inline: bool | None = None,
    evaluate: bool = True,
    data: dict | None = None,
) -> dict:
    L.seed_everything(seed, verbose=False)
    dm = InteractionDataModule(
        noise_rate=noise, seed=seed, pool_size=pool, batch_size=batch_size, **(data or {})
    )
    module = RecsysModule(
        model=model,
        embedding_dim=32,
        num_layers=3,
        lr=lr,
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
        "method": "pld" if pld else "uniform",
        "temperature": temperature if pld else None,
        "weight_decay": weight_decay,
        "l2_reg": l2_reg,
        "pool": pool,
        "epoch_time_median": statistics.median(timer.times[2:] or timer.times),
        "noisy_share_curve": timer.noisy,
        "noisy_share_last": timer.noisy[-1],
        "noisy_share_mean": sum(timer.noisy) / len(timer.noisy),
    }
    if evaluate:
        # Validation (the selection metric) once, after training: no early stopping, the
        # schedule is fixed, so the final model is the one both splits evaluate.
        trainer.limit_val_batches = 1.0
        val = trainer.validate(module, dm, verbose=False)[0]
        res = trainer.test(module, dm, verbose=False)[0]
        out["val_recall@20"] = val["val/recall@20"]
        out["recall@20"] = res["test/recall@20"]
        out["ndcg@20"] = res["test/ndcg@20"]
    return out


def label(method: str, l2_reg: float, temperature: float | None) -> str:
    """Short name of a configuration, e.g. ``pld τ=0.5 l2 0.01``."""
    tau = f" τ={temperature:g}" if method == "pld" else ""
    return f"{method}{tau} l2 {l2_reg:g}"


def grid(args, rows: list, dump) -> None:
    """Every configuration of both methods, every noise rate and seed (``dump`` saves progress)."""
    configs = [("uniform", l2, None) for l2 in args.uniform_l2] + [
        ("pld", l2, tau) for l2 in args.pld_l2 for tau in args.temperature
    ]
    for noise in args.noise:
        for seed in range(args.seeds):
            for method, l2, tau in configs:
                r = run(
                    model=args.model,
                    noise=noise,
                    seed=seed,
                    pld=method == "pld",
                    epochs=args.epochs,
                    temperature=tau or 1.0,
                    pool=args.pool,
                    l2_reg=l2,
                    inline=args.inline,
                    data=args.data,
                )
                rows.append(r)
                print(
                    f"noise={noise} seed={seed} {label(method, l2, tau):24s} "
                    f"val R@20={r['val_recall@20']:.4f} test R@20={r['recall@20']:.4f} "
                    f"N@20={r['ndcg@20']:.4f} noisy={r['noisy_share_last']:.3f}",
                    flush=True,
                )
        dump()


def _stats(values: list[float]) -> dict:
    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def summarise(rows: list) -> list:
    """Mean ± sd over seeds of every (noise, method, l2_reg, τ) configuration of the grid."""
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["noise"], r["method"], r["l2_reg"], r["temperature"]), []).append(r)
    table = []
    for (noise, method, l2, tau), sel in groups.items():
        sel = sorted(sel, key=lambda r: r["seed"])
        table.append(
            {
                "noise": noise,
                "method": method,
                "l2_reg": l2,
                "temperature": tau,
                "config": label(method, l2, tau),
                "seeds": [r["seed"] for r in sel],
                **{
                    key: _stats([r[key] for r in sel])
                    for key in ("val_recall@20", "recall@20", "ndcg@20", "noisy_share_last")
                },
            }
        )
    return table


def select(table: list) -> list:
    """Per noise rate: each method at its best validation Recall@20, and the paired differences."""
    out = []
    for noise in sorted({t["noise"] for t in table}):
        best = {}
        for method in METHODS:
            cands = [t for t in table if (t["noise"], t["method"]) == (noise, method)]
            best[method] = max(cands, key=lambda t: t["val_recall@20"]["mean"])
        uni, pld = best["uniform"], best["pld"]
        seeds = sorted(set(uni["seeds"]) & set(pld["seeds"]))
        paired = {}
        for key in ("recall@20", "ndcg@20"):
            u = dict(zip(uni["seeds"], uni[key]["values"], strict=True))
            p = dict(zip(pld["seeds"], pld[key]["values"], strict=True))
            paired[key] = _stats([p[s] - u[s] for s in seeds])
        out.append({"noise": noise, "uniform": uni, "pld": pld, "paired": paired})
    return out


def _init_args(config: dict, key: str) -> dict:
    return dict((config.get(key) or {}).get("init_args") or {})


def recipe_settings() -> dict:
    """The shipped recipes' settings: each base's model/data/trainer, and what ``pld.yaml`` adds.

    Returns:
        ``{"mf": {...}, "lightgcn": {...}}``; each entry has ``base`` and ``overlay`` dicts of
        the run arguments (``l2_reg``, ``lr``, ``weight_decay``, ``batch_size``, ``pool``,
        ``epochs``; ``overlay`` adds ``temperature``).
    """
    overlay = yaml.safe_load((RECIPES / "pld.yaml").read_text())
    (callback,) = overlay["trainer"]["callbacks"]
    overrides = _init_args(overlay, "model")
    settings = {}
    for model, name in BASES.items():
        base_cfg = yaml.safe_load((RECIPES / name).read_text())
        m, d = _init_args(base_cfg, "model"), _init_args(base_cfg, "data")
        assert m["model"] == model and m["criterion"] == "bpr", name
        base = {
            "l2_reg": float(m["l2_reg"]),
            "lr": float(m["lr"]),
            "weight_decay": float(m["weight_decay"]),
            "batch_size": int(d["batch_size"]),
            "pool": int(d["pool_size"]),
            "epochs": int(base_cfg["trainer"]["max_epochs"]),
        }
        over = {**base, **{k: float(v) for k, v in overrides.items() if k in base}}
        over["temperature"] = float(callback["init_args"]["temperature"])
        settings[model] = {"base": base, "overlay": over}
    return settings


def _grid_run(rows: list, args, model: str, noise: float, seed: int, arm: str, s: dict):
    """The grid's run with exactly these settings, if there is one (runs are deterministic)."""
    epochs = 2 if args.smoke else s["epochs"]
    fixed = (epochs, s["lr"], s["batch_size"], s["pool"], s["weight_decay"])
    if (
        model != args.model
        or args.inline is not None
        or fixed != (args.epochs, 1e-2, 1024, args.pool, 0.0)
    ):
        return None
    tau = s["temperature"] if arm == "overlay" else None
    key = (model, noise, seed, "pld" if arm == "overlay" else "uniform", s["l2_reg"], tau)
    for r in rows:
        if (r["model"], r["noise"], r["seed"], r["method"], r["l2_reg"], r["temperature"]) == key:
            return r
    return None


def recipe_check(args, rows: list) -> list:
    """Each base recipe's defaults (uniform) vs base + ``pld.yaml``, every noise rate and seed.

    A configuration that the grid already trained (same settings, same seed) is taken from it.
    """
    out = []
    for model, cfg in recipe_settings().items():
        for noise in args.noise:
            runs: dict[str, list] = {"base": [], "overlay": []}
            for seed in range(args.seeds):
                for arm in ("base", "overlay"):
                    s = cfg[arm]
                    r = _grid_run(rows, args, model, noise, seed, arm, s) or run(
                        model=model,
                        noise=noise,
                        seed=seed,
                        pld=arm == "overlay",
                        epochs=2 if args.smoke else s["epochs"],
                        temperature=s.get("temperature", 1.0),
                        pool=s["pool"],
                        weight_decay=s["weight_decay"],
                        l2_reg=s["l2_reg"],
                        lr=s["lr"],
                        batch_size=s["batch_size"],
                        data=args.data,
                    )
                    runs[arm].append(r)
            row = {"model": model, "noise": noise, "settings": cfg}
            for key in ("recall@20", "ndcg@20"):
                b = [r[key] for r in runs["base"]]
                o = [r[key] for r in runs["overlay"]]
                row[key] = {
                    "base": _stats(b),
                    "overlay": _stats(o),
                    "paired": _stats([y - x for x, y in zip(b, o, strict=True)]),
                }
            out.append(row)
            rec = row["recall@20"]
            print(
                f"recipe {model} noise={noise}: base {rec['base']['mean']:.4f} "
                f"+pld.yaml {rec['overlay']['mean']:.4f} (paired min "
                f"{rec['paired']['min']:+.4f})",
                flush=True,
            )
    return out


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


def plot(table: list, selection: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    noise = 0.2 if any(t["noise"] == 0.2 for t in table) else table[0]["noise"]
    curves: dict[str, list] = {}
    for t in table:
        if t["noise"] == noise:
            name = "uniform" if t["method"] == "uniform" else f"pld τ={t['temperature']:g}"
            curves.setdefault(name, []).append(t)
    for name, ts in curves.items():
        ts = sorted(ts, key=lambda t: t["l2_reg"])
        axes[0].errorbar(
            [t["l2_reg"] for t in ts],
            [t["recall@20"]["mean"] for t in ts],
            yerr=[t["recall@20"]["sd"] for t in ts],
            marker="o" if name == "uniform" else "s",
            linestyle="--" if name == "uniform" else "-",
            capsize=2,
            label=name,
        )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("l2_reg")
    axes[0].set_ylabel("clean-test Recall@20")
    axes[0].set_title(f"{round(noise * 100)}% noise: test Recall@20 over the grid")
    axes[0].legend(fontsize=8)
    width = 2.0
    for mi, method in enumerate(METHODS):
        xs = [s["noise"] * 100 + (mi - 0.5) * width for s in selection]
        axes[1].bar(
            xs,
            [s[method]["recall@20"]["mean"] for s in selection],
            width=width,
            yerr=[s[method]["recall@20"]["sd"] for s in selection],
            capsize=2,
            label=f"{method} (own best, chosen on val)",
        )
        for x, s in zip(xs, selection, strict=True):
            axes[1].plot(
                [x] * len(s[method]["recall@20"]["values"]),
                s[method]["recall@20"]["values"],
                "k.",
                ms=3,
            )
    axes[1].set_xticks([s["noise"] * 100 for s in selection])
    axes[1].set_xlabel("injected noise (%)")
    axes[1].set_ylabel("clean-test Recall@20")
    axes[1].set_title("each method at its own best settings")
    axes[1].legend(fontsize=8)
    fig.suptitle("PLD vs uniform sampling — MF + BPR, mean ± sd over seeds (dots: seeds)")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)


def _ms(s: dict, digits: int = 4) -> str:
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _range(s: dict, digits: int = 4) -> str:
    return f"{s['min']:.{digits}f} – {s['max']:.{digits}f}"


def _signed(s: dict) -> str:
    values = ", ".join(f"{v:+.4f}" for v in s["values"])
    return f"{s['mean']:+.4f} ({values})"


def markdown(table: list, selection: list, recipes: list, over: list, args) -> str:
    def values(method: str, key: str) -> list:
        return sorted({t[key] for t in table if t["method"] == method})

    n_uni = len({t["config"] for t in table if t["method"] == "uniform"})
    n_pld = len({t["config"] for t in table if t["method"] == "pld"})
    lines = [
        f"{args.model.upper()} (d=32) + BPR, Adam lr 1e-2, batch 1024, {args.epochs} epochs, pool "
        f"k={args.pool}, {args.seeds} seeds. Uniform tuned over l2_reg ∈ "
        f"{{{', '.join(f'{v:g}' for v in values('uniform', 'l2_reg'))}}}, PLD over l2_reg ∈ "
        f"{{{', '.join(f'{v:g}' for v in values('pld', 'l2_reg'))}}} × τ ∈ "
        f"{{{', '.join(f'{v:g}' for v in values('pld', 'temperature'))}}} "
        f"({n_uni} vs {n_pld} configurations). "
        "Selection: best mean validation Recall@20 over seeds (clean validation positives); "
        "test positives are clean; full ranking, training and validation items excluded.",
        "",
        "## Each method at its own best settings (chosen on validation)",
        "",
        "| noise | method | chosen | val Recall@20 | test Recall@20 (mean ± sd) | min – max "
        "| test NDCG@20 | noisy share (last) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in selection:
        for method in METHODS:
            t = s[method]
            lines.append(
                f"| {round(s['noise'] * 100)}% | {method} | {t['config']} | "
                f"{_ms(t['val_recall@20'])} | {_ms(t['recall@20'])} | {_range(t['recall@20'])} "
                f"| {_ms(t['ndcg@20'])} | {_ms(t['noisy_share_last'], 3)} |"
            )
    lines += [
        "",
        "Paired difference PLD − uniform on test (same seed = same data and initialisation; "
        "mean, then per seed):",
        "",
        "| noise | ΔRecall@20 | ΔNDCG@20 |",
        "|---|---|---|",
    ]
    for s in selection:
        lines.append(
            f"| {round(s['noise'] * 100)}% | {_signed(s['paired']['recall@20'])} | "
            f"{_signed(s['paired']['ndcg@20'])} |"
        )
    if recipes:
        lines += [
            "",
            "## Recipe check: base recipe defaults vs base + `pld.yaml`",
            "",
            "| base recipe | noise | base: l2_reg | + pld.yaml: l2_reg, τ | base Recall@20 | "
            "+ pld.yaml Recall@20 | paired Δ (per seed) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in recipes:
            b, o = r["settings"]["base"], r["settings"]["overlay"]
            rec = r["recall@20"]
            lines.append(
                f"| {BASES[r['model']]} | {round(r['noise'] * 100)}% | {b['l2_reg']:g} | "
                f"{o['l2_reg']:g}, {o['temperature']:g} | {_ms(rec['base'])} | "
                f"{_ms(rec['overlay'])} | {_signed(rec['paired'])} |"
            )
    lines += [
        "",
        "## Full grid (mean ± sd over seeds)",
        "",
        "| noise | configuration | val Recall@20 | test Recall@20 | test NDCG@20 | "
        "noisy share (last) |",
        "|---|---|---|---|---|---|",
    ]
    for t in sorted(
        table,
        key=lambda t: (t["noise"], t["method"] != "uniform", t["temperature"] or 0, t["l2_reg"]),
    ):
        lines.append(
            f"| {round(t['noise'] * 100)}% | {t['config']} | {_ms(t['val_recall@20'])} | "
            f"{_ms(t['recall@20'])} | {_ms(t['ndcg@20'])} | {_ms(t['noisy_share_last'], 3)} |"
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


# Settings that must match for appended grid runs to share one table with the earlier ones.
APPEND_KEYS = ("model", "epochs", "pool", "inline", "seeds", "uniform_l2", "pld_l2", "temperature")


def _check_append(parser, args, previous: dict) -> None:
    """Refuse an ``--append`` that would mix settings or train a noise rate a second time."""
    old = previous["config"]
    differ = [k for k in APPEND_KEYS if k in old and old[k] != getattr(args, k)]
    if differ:
        options = ", ".join("--" + k.replace("_", "-") for k in differ)
        parser.error(
            f"--append: {options} differ "
            "from the previous run's; the grid of every noise rate must be the same (both "
            "methods' tuning budgets included), use another --name"
        )
    done = sorted({r["noise"] for r in previous["runs"]} & set(args.noise))
    if done:
        parser.error(f"--append: noise rate(s) {done} are already in the previous results")


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "pld", plot=True)
    parser.add_argument("--model", default="mf", choices=["mf", "lightgcn"])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.2])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--uniform-l2",
        type=float,
        nargs="*",
        default=[1e-4, 1e-3, 3e-3, 5e-3, 1e-2, 1.5e-2, 2e-2, 3e-2, 5e-2, 1e-1],
        help="uniform sampling's l2_reg grid (as many configurations as PLD's grid)",
    )
    parser.add_argument(
        "--pld-l2", type=float, nargs="*", default=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 5e-2]
    )
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.5, 0.2])
    parser.add_argument("--pool", type=int, default=5)
    parser.add_argument(
        "--weight-decay", type=float, default=0.0, help="Adam weight decay (overhead runs)"
    )
    parser.add_argument("--l2-reg", type=float, default=3e-2, help="per-batch L2 (overhead runs)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--overhead-epochs", type=int, default=8)
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-recipe-check", action="store_true")
    parser.add_argument("--only-overhead", action="store_true")
    parser.add_argument("--only-recipe-check", action="store_true")
    parser.add_argument(
        "--append",
        action="store_true",
        help="add grid runs (e.g. other --noise rates) to the previous JSON, keep the rest",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--inline",
        type=int,
        choices=[0, 1],
        default=None,
        help="grid runs: 1 = PLD option (b) (the module default), 0 = option (a) callback",
    )
    args = _common.parse(parser, argv)
    args.data = None
    if args.smoke:  # one noise rate, 2 seeds, a 2 × 2 grid, 2 epochs per run, small data
        args.noise, args.seeds, args.epochs, args.repeats, args.overhead_epochs = [0.2], 2, 2, 1, 2
        args.uniform_l2, args.pld_l2, args.temperature = [1e-3, 3e-2], [3e-2], [0.5]
        args.data = SMOKE_DATA
    # One intra-op thread: on a shared 2-core machine, more threads spin against other jobs and
    # make small ops 50× slower, which would swamp the timing comparison.
    torch.set_num_threads(args.threads)
    json_path = _common.output(args, ".json")
    payload: dict = {"config": vars(args), "runs": [], "recipe_check": [], "overhead": []}
    if args.only_overhead or args.only_recipe_check or args.append:  # keep the last run's parts
        if not json_path.exists():
            parser.error(f"--append/--only-*: no previous results at {json_path}")
        previous = json.loads(json_path.read_text())
        if args.append:
            _check_append(parser, args, previous)
        payload.update({k: previous[k] for k in ("runs", "recipe_check", "overhead")})
        payload["earlier_configs"] = [*previous.get("earlier_configs", []), previous["config"]]

    def dump() -> None:
        _common.write_json(json_path, payload)

    if not (args.only_overhead or args.only_recipe_check):
        grid(args, payload["runs"], dump)
    if args.only_recipe_check or not (args.skip_recipe_check or args.only_overhead):
        payload["recipe_check"] = recipe_check(args, payload["runs"])
        dump()
    if args.only_overhead or not (args.skip_overhead or args.only_recipe_check):
        payload["overhead"] = overhead(args)
    payload["summary"] = summarise(payload["runs"])
    payload["selection"] = select(payload["summary"])
    dump()
    text = markdown(
        payload["summary"], payload["selection"], payload["recipe_check"], payload["overhead"], args
    )
    _common.output(args, ".md").write_text(text)
    plot(payload["summary"], payload["selection"], args.plot)
    print(text)


if __name__ == "__main__":
    main()
