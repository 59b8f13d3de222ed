"""VAT in semi-supervised digits: 100 labels + the rest unlabelled, vs supervised-only, both tuned.

*Virtual Adversarial Training: A Regularization Method for Supervised and Semi-Supervised
Learning* (Miyato, Maeda, Koyama, Ishii; TPAMI 2018, arXiv:1704.03976), with
`lightning_losses.nn.vat_loss`. Data: sklearn's 8×8 digits (shipped with scikit-learn), split by
`load_digits_splits(seed)` (train / validation / test, standardised with training statistics);
from the training split 10 labelled images per class (100 labels), the remaining ~1,100
training images unlabelled. Model: an MLP 64-128-128-10 (ReLU), Adam (lr 1e-3), 600 steps, each
on the 100 labelled images plus, for VAT, a batch of 256 unlabelled ones.

Arms, each with the same budget of 6 configurations chosen on the validation accuracy (never on
test):

* ``supervised``: cross-entropy on the labels, weight decay ∈ {0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1};
* ``vat``: cross-entropy + `vat_loss` on labelled and unlabelled images (the paper's objective,
  α = 1, one power iteration, ξ = 1e-6), ε ∈ {0.25, 0.5, 1, 2, 4, 8} (per-sample L2 radius in
  standardised pixel units; an image's norm is about 8), no weight decay.

The validation split (about 270 labelled images) is larger than the labelled training set, as in
most semi-supervised benchmarks (Oliver et al., NeurIPS 2018, warn that this flatters tuned
methods): both arms use it the same way. 3 seeds (split, labelled subset and initialisation).
Measured: test accuracy of the chosen configuration.

Run: ``python benchmarks/vat_semi.py`` (a few minutes on one CPU thread); writes
``benchmarks/results/vat_semi.{json,md}`` and ``docs/assets/vat_semi.png``; ``--smoke --out DIR``:
a few steps and two configurations per arm, everything in ``DIR``.
"""

from __future__ import annotations

import platform
import statistics
import time

import _common
import torch
import torch.nn.functional as F

from lightning_losses.data.digits import load_digits_splits
from lightning_losses.nn import vat_loss

ARMS = ("supervised", "vat")
GRIDS = {
    "supervised": (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1),  # weight decay
    "vat": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),  # eps
}
LABELS_PER_CLASS, STEPS, UNLABELLED_BATCH, LR = 10, 600, 256, 1e-3
SEEDS = (0, 1, 2)
SMOKE = {"steps": 5, "seeds": (0,), "configs": 2}


def make_data(seed: int) -> dict[str, torch.Tensor]:
    s = load_digits_splits(0.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(s.y_train), generator=g)
    labelled = torch.cat([order[s.y_train[order] == c][:LABELS_PER_CLASS] for c in range(10)])
    unlabelled = order[~torch.isin(order, labelled)]
    return {
        "x_lab": s.x_train[labelled],
        "y_lab": s.y_train[labelled],
        "x_unl": s.x_train[unlabelled],
        "x_val": s.x_val,
        "y_val": s.y_val,
        "x_test": s.x_test,
        "y_test": s.y_test,
    }


def net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


def fit(arm: str, value: float, data: dict[str, torch.Tensor], seed: int, steps: int):
    model = net(seed)
    wd = value if arm == "supervised" else 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=wd)
    g = torch.Generator().manual_seed(1000 + seed)
    for _ in range(steps):
        logits = model(data["x_lab"])
        loss = F.cross_entropy(logits, data["y_lab"])
        if arm == "vat":
            pick = torch.randint(len(data["x_unl"]), (UNLABELLED_BATCH,), generator=g)
            x = torch.cat([data["x_lab"], data["x_unl"][pick]])
            loss = loss + vat_loss(model, x, eps=value, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    args = _common.parse(_common.make_parser(__doc__, "vat_semi", plot=True), argv)
    steps, seeds, n_configs = STEPS, SEEDS, None
    if args.smoke:
        steps, seeds, n_configs = SMOKE["steps"], SMOKE["seeds"], SMOKE["configs"]
    torch.set_num_threads(1)
    start = time.perf_counter()
    runs = []
    for seed in seeds:
        data = make_data(seed)
        for arm in ARMS:
            trials = []
            for value in GRIDS[arm][:n_configs]:
                model = fit(arm, value, data, seed, steps)
                trials.append((accuracy(model, data["x_val"], data["y_val"]), value, model))
            val_acc, value, model = max(trials, key=lambda t: t[0])
            runs.append(
                {
                    "seed": seed,
                    "arm": arm,
                    "chosen": value,
                    "val_acc": val_acc,
                    "test_acc": accuracy(model, data["x_test"], data["y_test"]),
                    "val_by_config": {str(v): a for a, v, _ in trials},
                }
            )
    summary = {}
    for arm in ARMS:
        accs = [r["test_acc"] for r in runs if r["arm"] == arm]
        summary[arm] = {
            "mean": statistics.fmean(accs),
            "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "min": min(accs),
            "max": max(accs),
        }
    paired = [
        next(r["test_acc"] for r in runs if r["seed"] == s and r["arm"] == "vat")
        - next(r["test_acc"] for r in runs if r["seed"] == s and r["arm"] == "supervised")
        for s in seeds
    ]
    elapsed = time.perf_counter() - start
    meta = {
        "labels_per_class": LABELS_PER_CLASS,
        "steps": steps,
        "unlabelled_batch": UNLABELLED_BATCH,
        "lr": LR,
        "grids": {a: list(GRIDS[a][:n_configs]) for a in ARMS},
        "seeds": list(seeds),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "seconds": round(elapsed, 1),
        "smoke": args.smoke,
    }
    _common.write_json(
        _common.output(args, ".json"),
        {"meta": meta, "summary": summary, "paired_vat_minus_supervised": paired, "runs": runs},
    )
    lines = [
        "# VAT in semi-supervised digits (100 labels)",
        "",
        f"MLP 64-128-128-10, Adam lr {LR}, {steps} steps; 10 labels per class, the rest of the "
        f"training split unlabelled (batches of {UNLABELLED_BATCH}); each arm tuned over "
        f"{len(meta['grids']['vat'])} configurations on validation accuracy; seeds {list(seeds)}; "
        f"{platform.machine()} CPU, torch {torch.__version__}, {elapsed:.0f} s. Test accuracy, "
        "mean ± sd (min–max) over seeds. Generated by `benchmarks/vat_semi.py`.",
        "",
        "| arm | tuned over | test accuracy | chosen per seed |",
        "|---|---|---|---|",
    ]
    tuned = {"supervised": "weight decay", "vat": "ε"}
    for arm in ARMS:
        s = summary[arm]
        chosen = [r["chosen"] for r in runs if r["arm"] == arm]
        lines.append(
            f"| {arm} | {tuned[arm]} | {s['mean']:.4f} ± {s['sd']:.4f} "
            f"({s['min']:.4f}–{s['max']:.4f}) | {chosen} |"
        )
    lines += [
        "",
        "Paired difference VAT − supervised per seed: " + ", ".join(f"{d:+.4f}" for d in paired),
    ]
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, arm in enumerate(ARMS):
        accs = [r["test_acc"] for r in runs if r["arm"] == arm]
        ax.scatter([i] * len(accs), accs, alpha=0.6)
        ax.errorbar(
            [i + 0.1], [summary[arm]["mean"]], yerr=[summary[arm]["sd"]], fmt="o", capsize=4
        )
    ax.set_xticks(range(len(ARMS)), ["supervised (tuned wd)", "VAT (tuned ε)"])
    ax.set_ylabel("test accuracy")
    ax.set_title("Digits, 100 labels: each arm tuned on validation")
    fig.tight_layout()
    _common.save_figure(fig, args.plot)


if __name__ == "__main__":
    main()
