"""Effect benchmark: robust and calibration losses under label noise on the digits images.

sklearn digits (8×8, 10 classes; ``lightning_losses.data.digits``), 0/20/40/60 % symmetric and
40 % asymmetric (class ``c → c+1`` flip) noise on the *training* labels only, a small MLP trained
with plain PyTorch mini-batch Adam for a fixed number of epochs (no early stopping: the last
epoch is reported, as in the GCE / SCE / APL papers, so memorisation of noisy labels shows), 3
seeds. Metrics on the clean test split: accuracy and expected calibration error (torchmetrics
``MulticlassCalibrationError``, 15 bins, L1).

Run: ``python benchmarks/noisy_labels.py`` (≈ 3 min on an idle CPU core). Writes
``benchmarks/results/noisy_labels.{json,md}``, ``docs/assets/noisy_labels.png`` (a row per loss
family) and ``docs/assets/noisy_labels_asymmetric.png``; ``--replot`` only redraws the figures
from the stored JSON; ``--smoke --out DIR``: every loss and noise setting for one epoch,
everything in ``DIR`` (see ``benchmarks/_common.py``). Guide: ``docs/guide/noisy_labels.md``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import _common
import torch
from torch import nn

from lightning_losses import get_loss
from lightning_losses.data import load_digits_splits

# (label, registry name, kwargs): CE, every robust classification loss, and the calibration-minded
# ones for the ECE column. Hyperparameters are the papers' CIFAR-10 settings (10 classes).
LOSSES: list[tuple[str, str, dict]] = [
    ("CE", "cross_entropy", {}),
    ("LabelSmoothing(0.1)", "label_smoothing_ce", {"smoothing": 0.1}),
    ("GCE(q=0.7)", "gce", {"q": 0.7}),
    ("CompSum(τ=1.5)", "comp_sum", {"tau": 1.5}),
    ("SCE(0.1,1)", "sce", {"alpha": 0.1, "beta": 1.0}),
    ("MAE", "prob_mae", {}),
    ("RCE", "rce", {}),
    ("NCE", "normalized_ce", {}),
    ("NFL(γ=0.5)", "nfl", {"gamma": 0.5}),
    ("NCE+RCE", "apl", {"active": "nce", "passive": "rce"}),
    ("NCE+MAE", "apl", {"active": "nce", "passive": "mae"}),
    ("NFL+RCE", "apl", {"active": "nfl", "passive": "rce"}),
    ("Poly-1(ε=1)", "poly", {"epsilon": 1.0}),
    ("Focal(γ=2)", "focal", {"gamma": 2.0}),
    ("DualFocal(γ=5)", "dual_focal", {"gamma": 5.0}),
    ("Encouraging(0.75)", "encouraging", {"log_end": 0.75}),
    ("Squentropy", "squentropy", {}),
]

SETTINGS: list[tuple[str, float]] = [
    ("symmetric", 0.0),
    ("symmetric", 0.2),
    ("symmetric", 0.4),
    ("symmetric", 0.6),
    ("asymmetric", 0.4),
]


def make_model(seed: int, hidden: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def train_and_eval(splits, name: str, kwargs: dict, seed: int, args) -> dict[str, float]:
    from torchmetrics.classification import MulticlassCalibrationError

    model = make_model(seed, args.hidden)
    criterion = get_loss(name, **kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    x, y = splits.x_train, splits.y_train
    n = len(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, args.batch_size):
            idx = perm[i : i + args.batch_size]
            loss = criterion(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(splits.x_test)
        train_logits = model(x)
    probs = logits.softmax(-1)
    ece = MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(probs, splits.y_test)
    noisy = splits.noise_mask
    fit_noisy = (
        (train_logits.argmax(-1)[noisy] == y[noisy]).float().mean().item() if noisy.any() else 0.0
    )
    return {
        "test_acc": (logits.argmax(-1) == splits.y_test).float().mean().item(),
        "test_ece": float(ece),
        "memorised_noisy": fit_noisy,  # fraction of corrupted train labels the model reproduces
    }


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def markdown(results: dict, meta: dict) -> str:
    cols = [f"{k} {int(r * 100)}%" for k, r in SETTINGS]
    lines = [
        "# Noisy-label benchmark (digits, MLP)",
        "",
        f"Clean-test accuracy (%) and ECE (%), mean ± std over seeds {meta['seeds']}; "
        f"{meta['epochs']} epochs, batch {meta['batch_size']}, Adam lr {meta['lr']}, "
        f"MLP 64-{meta['hidden']}-{meta['hidden']}-10, last epoch (no early stopping). "
        f"Run time {meta['seconds']:.0f} s on {meta['machine']}.",
        "",
        "## Test accuracy (%)",
        "",
        "| loss | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    best = {c: max(results[lbl][c]["test_acc"]["mean"] for lbl in results) for c in cols}
    for label in results:
        cells = []
        for c in cols:
            m = results[label][c]["test_acc"]
            cell = f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}"
            cells.append(f"**{cell}**" if m["mean"] == best[c] else cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Expected calibration error (%, lower is better)", ""]
    lines += ["| loss | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for label in results:
        eces = [results[label][c]["test_ece"] for c in cols]
        cells = [f"{100 * e['mean']:.1f} ± {100 * e['std']:.1f}" for e in eces]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Corrupted training labels reproduced (%, memorisation; lower is better)", ""]
    noisy_cols = cols[1:]
    lines += ["| loss | " + " | ".join(noisy_cols) + " |", "|---|" + "---|" * len(noisy_cols)]
    for label in results:
        cells = [f"{100 * results[label][c]['memorised_noisy']['mean']:.0f}" for c in noisy_cols]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Families for the figure: one row of panels per family (CE drawn in each as the reference), so no
# panel holds more than 5 series. A loss in no family goes to a last "other" panel.
PLOT_GROUPS: dict[str, list[str]] = {
    "CE variants": ["LabelSmoothing(0.1)", "Poly-1(ε=1)", "Squentropy"],
    "Calibration-minded": ["Focal(γ=2)", "DualFocal(γ=5)", "Encouraging(0.75)"],
    "Bounded / symmetric": ["GCE(q=0.7)", "CompSum(τ=1.5)", "SCE(0.1,1)", "MAE", "RCE"],
    "Normalised, active-passive": ["NCE", "NFL(γ=0.5)", "NCE+RCE", "NCE+MAE", "NFL+RCE"],
}


def asymmetric_path(path: Path) -> Path:
    """Where `plot` puts the asymmetric-noise bar chart, next to the main figure."""
    return path.with_name(f"{path.stem}_asymmetric{path.suffix}")


def plot(results: dict, path: Path, n_seeds: int) -> None:
    """Accuracy and ECE against symmetric noise, a row per loss family (`path`), and the
    40 % asymmetric accuracies as bars (`asymmetric_path(path)`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {g: [lbl for lbl in labels if lbl in results] for g, labels in PLOT_GROUPS.items()}
    grouped = {lbl for labels in groups.values() for lbl in labels}
    other = [lbl for lbl in results if lbl != "CE" and lbl not in grouped]
    if other:
        groups["Other"] = other
    groups = {g: labels for g, labels in groups.items() if labels}
    sym = [(k, r) for k, r in SETTINGS if k == "symmetric"]
    rates = [100 * r for _, r in sym]

    def curve(label: str, metric: str) -> list[float]:
        return [100 * results[label][f"{k} {int(r * 100)}%"][metric]["mean"] for k, r in sym]

    # A row per family (accuracy left, ECE right): panels stay legible at the docs' column width.
    fig, axes = plt.subplots(
        len(groups), 2, figsize=(10, 3.1 * len(groups) + 0.6), sharex=True, squeeze=False
    )
    colors = plt.get_cmap("tab10")
    for row, (group, labels) in enumerate(groups.items()):
        for col, metric in enumerate(("test_acc", "test_ece")):
            ax = axes[row][col]
            if "CE" in results:
                ax.plot(rates, curve("CE", metric), color="0.35", ls="--", lw=2, label="CE")
            for i, label in enumerate(labels):
                ax.plot(rates, curve(label, metric), color=colors(i), marker="o", label=label)
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel(f"{group}\nclean test accuracy (%)")
        axes[row][1].set_ylabel("ECE (%, lower is better)")
        axes[row][0].legend(fontsize=8, loc="lower left")
    for col in range(2):
        axes[-1][col].set_xlabel("symmetric label noise (%)")
    axes[0][0].set_title("Accuracy")
    axes[0][1].set_title("Calibration error")
    fig.suptitle(f"Digits MLP under symmetric label noise (mean of {n_seeds} seeds)")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)

    asym = {lbl: 100 * results[lbl]["asymmetric 40%"]["test_acc"]["mean"] for lbl in results}
    order = sorted(asym, key=asym.get)
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(order) + 1.2))
    ax.barh(order, [asym[o] for o in order], color=["0.35" if o == "CE" else "C0" for o in order])
    ax.set_xlim(min(asym.values()) - 5, 100)
    ax.set(xlabel="clean test accuracy (%)", title="40 % asymmetric noise (c → c+1)")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    _common.save_figure(fig, asymmetric_path(path), dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "noisy_labels", plot=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--losses", nargs="*", default=None, help="subset of loss labels")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the figures from the results JSON"
    )
    args = _common.parse(parser, argv)
    if args.replot:  # the figures from the stored numbers, without the minutes of training
        stored = json.loads(_common.output(args, ".json").read_text(encoding="utf-8"))
        plot(stored["results"], args.plot, len(stored["meta"]["seeds"]))
        return
    if args.smoke:  # every loss and noise setting, one epoch of a narrow MLP
        args.seeds, args.epochs, args.hidden, args.batch_size = [0], 1, 16, 256
    # One thread: a 64-256-256-10 MLP gains nothing from intra-op threads, and on a loaded
    # 2-core machine OpenMP spin-waiting made the 2-thread run several times slower.
    torch.set_num_threads(1)
    # Flush subnormals: saturated softmax probabilities of robust losses otherwise hit the very
    # slow denormal path on x86 CPUs late in training.
    torch.set_flush_denormal(True)

    losses = [entry for entry in LOSSES if args.losses is None or entry[0] in args.losses]
    start = time.perf_counter()
    results: dict[str, dict] = {label: {} for label, _, _ in losses}
    for kind, rate in SETTINGS:
        col = f"{kind} {int(rate * 100)}%"
        runs: dict[str, list[dict]] = {label: [] for label, _, _ in losses}
        for seed in args.seeds:
            splits = load_digits_splits(rate, kind, seed=seed)
            for label, name, kwargs in losses:
                runs[label].append(train_and_eval(splits, name, kwargs, seed, args))
        for label in runs:
            results[label][col] = {
                metric: summarise([r[metric] for r in runs[label]]) for metric in runs[label][0]
            }
        print(
            f"{col:16s} "
            + " ".join(f"{lbl}={results[lbl][col]['test_acc']['mean']:.3f}" for lbl in results),
            flush=True,
        )
    meta = {
        "seeds": args.seeds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "lr": args.lr,
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "smoke": args.smoke,
        "losses": {label: {"name": name, "kwargs": kwargs} for label, name, kwargs in losses},
    }
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "results": results})
    _common.output(args, ".md").write_text(markdown(results, meta))
    plot(results, args.plot, len(args.seeds))
    print(f"done in {meta['seconds']:.0f} s -> {_common.output(args, '.md')}")


if __name__ == "__main__":
    main()
