"""Effect benchmark: macro-AUC losses vs binary cross-entropy on an imbalanced multi-label task.

Data, built offline: sklearn ``make_multilabel_classification`` (6000 documents, 40 word-count
features, 24 labels, about two labels per document), ``log1p`` features standardised on the
training split; labels kept only if every split holds at least 5 positives, which leaves 22–24
labels with training positive rates from about 0.6 % to 19 %. Split 60/20/20 into train /
validation / test, one split per seed. Model: an MLP (40 → 64 → labels, ReLU), Adam,
mini-batches of 256, a fixed number of epochs.

Losses: BCE (``F.binary_cross_entropy_with_logits``, mean over all entries), the pairwise
macro-AUC loss (squared hinge, margin 1) and the reweighted univariate (BCE) macro-AUC loss of
Wu, Li & Yin (ICML 2023, arXiv:2305.05248). Each loss gets the same tuning budget: a grid of
learning rate × weight decay, the configuration chosen by the validation macro AUROC of each
seed (never the test split). Metric: macro AUROC (torchmetrics ``multilabel_auroc``) on the
test split, and its mean over the 6 rarest labels; 3 seeds, mean ± standard deviation.

Run: ``python benchmarks/macro_auc.py`` (81 trainings, about 5 CPU-minutes on one thread).
Writes ``benchmarks/results/macro_auc.{json,md}`` and ``docs/assets/macro_auc.png``; ``--smoke
--out DIR``: tiny data, one epoch, one grid point, one seed, everything in ``DIR`` (see
``benchmarks/_common.py``).
"""

from __future__ import annotations

import itertools
import platform
import statistics
import time
from collections.abc import Callable

import _common
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import make_multilabel_classification
from torch import Tensor, nn
from torchmetrics.functional.classification import multilabel_auroc

from lightning_losses import get_loss

LOSSES: dict[str, Callable[[], Callable[[Tensor, Tensor], Tensor]]] = {
    "BCE": lambda: F.binary_cross_entropy_with_logits,
    "PairwiseMacroAUC (sq. hinge, m=1)": lambda: get_loss("pairwise_macro_auc"),
    "ReweightedUnivariateAUC": lambda: get_loss("reweighted_univariate_auc"),
}
LRS = (1e-3, 3e-3, 1e-2)
WEIGHT_DECAYS = (0.0, 1e-4, 1e-3)
SEEDS = (0, 1, 2)
RARE = 6  # rarest labels averaged in the "rare" column


def make_data(seed: int, n: int, min_pos: int) -> dict[str, Tensor]:
    """Standardised features and binary labels, split 60/20/20; labels too rare are dropped."""
    x, y = make_multilabel_classification(
        n_samples=n,
        n_features=40,
        n_classes=24,
        n_labels=2,
        allow_unlabeled=True,
        random_state=seed,
    )
    perm = np.random.default_rng(seed).permutation(n)
    x, y = np.log1p(x[perm]), y[perm]
    cut = [int(0.6 * n), int(0.8 * n)]
    parts = np.split(np.arange(n), cut)
    keep = np.all([y[idx].sum(0) >= min_pos for idx in parts], axis=0)
    y = y[:, keep]
    mean, std = x[parts[0]].mean(0), x[parts[0]].std(0) + 1e-6
    x = (x - mean) / std
    out = {}
    for name, idx in zip(("train", "val", "test"), parts):
        out[f"x_{name}"] = torch.tensor(x[idx], dtype=torch.float32)
        out[f"y_{name}"] = torch.tensor(y[idx], dtype=torch.float32)
    return out


def train(
    data: dict[str, Tensor], loss_name: str, lr: float, wd: float, epochs: int, seed: int
) -> nn.Module:
    torch.manual_seed(seed)
    num_labels = data["y_train"].shape[1]
    model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, num_labels))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    criterion = LOSSES[loss_name]()
    n = data["x_train"].shape[0]
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(256):
            opt.zero_grad()
            loss = criterion(model(data["x_train"][idx]), data["y_train"][idx])
            loss.backward()
            opt.step()
    return model


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    scores = model(x)
    per_label = multilabel_auroc(scores, y.long(), num_labels=y.shape[1], average="none")
    rare = torch.argsort(y.sum(0))[:RARE]
    return {"macro_auroc": float(per_label.mean()), "rare_auroc": float(per_label[rare].mean())}


def run(
    seeds: tuple[int, ...], grid: list[tuple[float, float]], epochs: int, n: int, min_pos: int
) -> dict:
    runs = []
    for seed in seeds:
        data = make_data(seed, n, min_pos)
        rates = data["y_train"].mean(0)
        for loss_name in LOSSES:
            best = None
            for lr, wd in grid:
                model = train(data, loss_name, lr, wd, epochs, seed)
                val = evaluate(model, data["x_val"], data["y_val"])["macro_auroc"]
                if best is None or val > best[0]:
                    best = (val, lr, wd, model)
            assert best is not None
            val, lr, wd, model = best
            test = evaluate(model, data["x_test"], data["y_test"])
            runs.append(
                {
                    "seed": seed,
                    "loss": loss_name,
                    "lr": lr,
                    "weight_decay": wd,
                    "val_macro_auroc": val,
                    **{f"test_{k}": v for k, v in test.items()},
                    "num_labels": int(rates.numel()),
                    "min_pos_rate": float(rates.min()),
                    "max_pos_rate": float(rates.max()),
                }
            )
    summary = {}
    for loss_name in LOSSES:
        rows = [r for r in runs if r["loss"] == loss_name]
        summary[loss_name] = {}
        for key in ("test_macro_auroc", "test_rare_auroc"):
            vals = [r[key] for r in rows]
            summary[loss_name][key] = {
                "mean": statistics.fmean(vals),
                "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "per_seed": vals,
            }
    return {"summary": summary, "runs": runs}


def write_markdown(path, result: dict) -> None:
    meta = result["meta"]
    lines = [
        "# Macro-AUC losses vs BCE on an imbalanced multi-label task",
        "",
        f"{meta['num_labels']} labels, positive rates {meta['min_pos_rate']:.3f}–"
        f"{meta['max_pos_rate']:.3f} (seed 0); {meta['seeds']} seeds; lr × weight decay grid "
        f"{meta['grid']} chosen per seed on validation macro AUROC; {meta['epochs']} epochs.",
        "",
        "| loss | test macro AUROC | test AUROC, 6 rarest labels | chosen (lr, wd) per seed |",
        "|---|---|---|---|",
    ]
    for name, s in result["summary"].items():
        chosen = ", ".join(
            f"({r['lr']:g}, {r['weight_decay']:g})" for r in result["runs"] if r["loss"] == name
        )
        m, rare = s["test_macro_auroc"], s["test_rare_auroc"]
        lines.append(
            f"| {name} | {m['mean']:.4f} ± {m['std']:.4f} | {rare['mean']:.4f} ± "
            f"{rare['std']:.4f} | {chosen} |"
        )
    lines += ["", "Mean ± standard deviation over seeds (one data split per seed).", ""]
    path.write_text("\n".join(lines))


def plot(path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["summary"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, title in zip(
        axes,
        ("test_macro_auroc", "test_rare_auroc"),
        ("test macro AUROC", f"test AUROC, {RARE} rarest labels"),
    ):
        s = [result["summary"][n][key] for n in names]
        ax.bar(range(len(names)), [v["mean"] for v in s], yerr=[v["std"] for v in s], capsize=4)
        for i, v in enumerate(s):
            ax.scatter([i] * len(v["per_seed"]), v["per_seed"], color="k", s=10, zorder=3)
        lo = min(min(v["per_seed"]) for v in s)
        ax.set_ylim(max(0.0, lo - 0.03), 1.0)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.split(" ")[0] for n in names], rotation=15, fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = _common.make_parser(__doc__, "macro_auc", plot=True)
    args = _common.parse(parser, argv)
    torch.set_num_threads(1)
    if args.smoke:
        seeds, grid, epochs, n, min_pos = (0,), [(3e-3, 0.0)], 1, 600, 2
    else:
        seeds, grid, epochs, n, min_pos = (
            SEEDS,
            list(itertools.product(LRS, WEIGHT_DECAYS)),
            40,
            6000,
            5,
        )
    start = time.perf_counter()
    result = run(seeds, grid, epochs, n, min_pos)
    first = result["runs"][0]
    result["meta"] = {
        "seeds": len(seeds),
        "grid": [list(g) for g in grid],
        "epochs": epochs,
        "n_samples": n,
        "num_labels": first["num_labels"],
        "min_pos_rate": first["min_pos_rate"],
        "max_pos_rate": first["max_pos_rate"],
        "seconds": time.perf_counter() - start,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "smoke": args.smoke,
    }
    _common.write_json(_common.output(args, ".json"), result)
    write_markdown(_common.output(args, ".md"), result)
    plot(args.plot, result)
    return result


if __name__ == "__main__":
    main()
