"""Retrieval quality of embeddings trained with the contrastive / metric losses on digits.

A small MLP encoder (64 → 128 → 32) is trained on the bundled sklearn digits (standardised
8×8 images, `lightning_losses.data.load_digits_splits`) with each loss for the same number of
steps, then every test image queries the training set by cosine similarity. Reported with
torchmetrics' retrieval metrics: Recall@1 (`RetrievalHitRate(top_k=1)`: the nearest training
image has the query's class) and MAP (`RetrievalMAP`, relevant = same class), mean ± std over
seeds. Two views per sample come from a feature-space augmentation (Gaussian noise + random
feature dropout); supervised losses see labels, self-supervised ones (NT-Xent,
alignment-uniformity) only the views. Cross-entropy on a linear head (embeddings = the encoder
output) and the untrained encoder are the baselines.

Run ``python benchmarks/metric_learning.py`` (≈ 1-3 min, one thread); writes
``benchmarks/results/metric_learning.{json,md,png}``; ``--smoke --out DIR``: every method for a
few steps, everything in ``DIR`` (see ``benchmarks/_common.py``).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import _common
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses import get_loss
from lightning_losses.data import load_digits_splits
from lightning_losses.recipes.metric_learning import retrieval_metrics

EMB_DIM = 32


def encoder() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, EMB_DIM))


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    keep = (torch.rand(x.shape, generator=g) > 0.2).to(x.dtype)
    return (x + 0.3 * torch.randn(x.shape, generator=g)) * keep


# name -> (registry name or None, constructor kwargs, how the loss is called)
METHODS: dict[str, tuple[str | None, dict, str]] = {
    "untrained encoder": (None, {}, "none"),
    "cross-entropy (linear head)": ("cross_entropy", {}, "ce"),
    "supcon (τ=0.1)": ("supcon", {"temperature": 0.1, "base_temperature": 0.1}, "views_labels"),
    "nt_xent (τ=0.2, no labels)": ("nt_xent", {"temperature": 0.2}, "views"),
    "alignment_uniformity (no labels)": ("alignment_uniformity", {}, "views"),
    "sigmoid_contrastive (views)": ("sigmoid_contrastive", {}, "views"),
    "circle (m=0.4, γ=80)": ("circle", {"margin": 0.4, "gamma": 80.0}, "labels"),
    "multi_similarity": ("multi_similarity", {}, "labels"),
    "triplet_margin (m=0.2)": ("triplet_margin", {"margin": 0.2}, "labels"),
}


def train(method: str, splits, *, seed: int, steps: int, batch: int) -> nn.Module:
    name, kwargs, kind = METHODS[method]
    torch.manual_seed(seed)
    net = encoder()
    if kind == "none":
        return net
    loss_fn = get_loss(name, **kwargs)
    head = nn.Linear(EMB_DIM, 10) if kind == "ce" else nn.Identity()
    params = [*net.parameters(), *head.parameters(), *loss_fn.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = splits.x_train, splits.y_train
    for _ in range(steps):
        idx = torch.randperm(len(x_all), generator=g)[:batch]
        x, y = x_all[idx], y_all[idx]
        if kind == "ce":
            loss = loss_fn(head(net(augment(x, g))), y)
        else:
            z1, z2 = net(augment(x, g)), net(augment(x, g))
            if kind == "views":
                loss = loss_fn(z1, z2)
            elif kind == "views_labels":
                loss = loss_fn(torch.stack([z1, z2], 1), y)
            else:
                loss = loss_fn(torch.cat([z1, z2]), y.repeat(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


@torch.no_grad()
def test_to_train_retrieval(
    net: nn.Module, splits, max_queries: int | None = None
) -> dict[str, float]:
    x_q, y_q = splits.x_test[:max_queries], splits.y_test[:max_queries]
    q = F.normalize(net(x_q), dim=1)
    db = F.normalize(net(splits.x_train), dim=1)
    return retrieval_metrics(q @ db.T, y_q[:, None] == splits.y_train[None, :])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [r["method"] for r in rows]
    pos = range(len(rows))
    for k, (key, label) in enumerate((("recall@1", "Recall@1"), ("map", "MAP"))):
        ax.barh(
            [p + 0.4 * k for p in pos],
            [r[f"{key}_mean"] for r in rows],
            xerr=[r[f"{key}_std"] for r in rows],
            height=0.4,
            label=label,
        )
    ax.set_yticks([p + 0.2 for p in pos], names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("test → train retrieval (cosine), mean ± std over seeds")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=120)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Metric learning on digits: retrieval quality per loss",
        "",
        f"MLP encoder 64→128→{EMB_DIM}, Adam 3e-3, {meta['steps']} steps of batch "
        f"{meta['batch']} (two augmented views each), seeds {meta['seeds']}; every test image "
        "queries the training set by cosine similarity. Recall@1 = torchmetrics "
        "`RetrievalHitRate(top_k=1)`, MAP = `RetrievalMAP` (relevant = same class); "
        "mean ± std over seeds.",
        "",
        "| method | Recall@1 | MAP | train s/seed |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['recall@1_mean']:.3f} ± {r['recall@1_std']:.3f} | "
            f"{r['map_mean']:.3f} ± {r['map_std']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "metric_learning")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="*", default=None, help="substring filter on methods")
    args = _common.parse(parser, argv)
    max_queries = None
    if args.smoke:  # every method, 2 steps, 32 test queries (the metrics loop over queries)
        args.steps, args.batch, args.seeds, max_queries = 2, 32, [0], 32
    torch.set_num_threads(1)
    splits = load_digits_splits(0.0, seed=0)
    rows = []
    methods = [m for m in METHODS if not args.only or any(s in m for s in args.only)]
    for method in methods:
        scores: dict[str, list[float]] = {"recall@1": [], "map": []}
        start = time.perf_counter()
        for seed in args.seeds:
            net = train(method, splits, seed=seed, steps=args.steps, batch=args.batch)
            for k, v in test_to_train_retrieval(net.eval(), splits, max_queries).items():
                scores[k].append(v)
        row: dict[str, float | str] = {"method": method}
        row["seconds"] = (time.perf_counter() - start) / len(args.seeds)
        for k, vs in scores.items():
            row[f"{k}_mean"] = statistics.mean(vs)
            row[f"{k}_std"] = statistics.stdev(vs) if len(vs) > 1 else 0.0
        rows.append(row)
        print(f"{method:34s} R@1 {row['recall@1_mean']:.3f}  MAP {row['map_mean']:.3f}", flush=True)
    meta = {"steps": args.steps, "batch": args.batch, "seeds": args.seeds, "smoke": args.smoke}
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "rows": rows})
    _common.output(args, ".md").write_text(markdown(rows, meta))
    # This figure lives beside its table (results/metric_learning.png), not in docs/assets/.
    plot(rows, _common.output(args, ".png"))


if __name__ == "__main__":
    main()
