"""Effect benchmark: CE vs Dice vs Dice+CE vs Tversky for segmentation under class imbalance.

The segmentation recipe's data (``lightning_losses.data.segmentation``): canvases of upscaled
scikit-learn digits, per-pixel labels background + 3 digit groups (0-3, 4-6, 7-9), objects of
the three groups drawn with probabilities 0.6 / 0.3 / 0.1, so about 91 % of the pixels are
background and the rarest group covers about 1 %; the anti-aliased rim of each digit is ignored
(255) by every loss and metric. The recipe's network (``SegmentationModule``: U-Net, timm
``mobilenetv3_small_050`` encoder, random init) is trained with plain PyTorch AdamW for a fixed
number of steps. Each loss gets its own learning rate, chosen from the same grid by the mean
foreground Dice on the validation canvases of seed 0 (never on test); then 3 seeds (model init,
batch order and canvases all change with the seed) are trained at that rate. Reported on
held-out test canvases (pasted from digit images no training canvas uses): per-class Dice
(torchmetrics ``DiceScore``, accumulated over the split) and IoU (torchmetrics ``MeanIoU``, per
image, averaged over the images where the class occurs), mean ± std over seeds.

Run: ``python benchmarks/segmentation_imbalance.py`` (≈ 10 min on one idle CPU core). Writes
``benchmarks/results/segmentation_imbalance.{json,md}`` and
``docs/assets/segmentation_imbalance.png``; ``--smoke --out DIR``: every loss, two steps on tiny
canvases, everything in ``DIR`` (see ``benchmarks/_common.py``). Recipe page:
``docs/recipes/segmentation.md``.

``--tversky-grid`` runs the controlled Tversky experiment instead (why α = 0.3, β = 0.7 misses
the rarest class): seed 0, one learning rate (``--tversky-lr``), only α and β change, scored on
the validation canvases; writes ``<name>_tversky.{json,md}`` (explained in
``docs/catalog/segmentation.md``).
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Any

import _common
import torch
import torch.nn.functional as F
from torchmetrics.segmentation import DiceScore, MeanIoU

from lightning_losses.data.segmentation import SegmentationData, synthetic_digit_canvases
from lightning_losses.recipes.segmentation import SegmentationModule

IGNORE = 255
# (label, registry name, kwargs). Dense losses: softmax over the logits, class-index targets,
# background included (MONAI's default), the rim ignored like CE's. Tversky with α = 0.3 on false
# positives and β = 0.7 on false negatives (Salehi et al., MLMI 2017, arXiv:1706.05721: β > α
# trades precision for recall on small structures).
LOSSES: list[tuple[str, str, dict[str, Any]]] = [
    ("CE", "cross_entropy", {"ignore_index": IGNORE}),
    ("Dice", "dice", {"softmax": True, "ignore_index": IGNORE}),
    ("DiceCE", "dice_ce", {"softmax": True, "ignore_index": IGNORE}),
    (
        "Tversky(α=0.3,β=0.7)",
        "tversky",
        {"softmax": True, "ignore_index": IGNORE, "alpha": 0.3, "beta": 0.7},
    ),
]
CLASS_PROBS = (0.6, 0.3, 0.1)
# Three encoder stages (output stride 8) at these 32×32 canvases; one process, so the timm stages
# beyond the third, left without gradient, do not matter (AdamW skips them).
NETWORK: dict[str, Any] = {
    "encoder": "tu-mobilenetv3_small_050",
    "encoder_depth": 3,
    "decoder_channels": [32, 16, 8],
}


def make_data(seed: int, args: Any) -> tuple[SegmentationData, SegmentationData, SegmentationData]:
    common = dict(
        digit_size=tuple(args.object_size),
        class_probs=CLASS_PROBS,
        ignore_index=IGNORE,
    )
    return (
        synthetic_digit_canvases(
            args.num_train, args.image_size, split="train", seed=3 * seed, **common
        ),
        synthetic_digit_canvases(
            args.num_val, args.image_size, split="val", seed=3 * seed + 1, **common
        ),
        synthetic_digit_canvases(
            args.num_test, args.image_size, split="test", seed=3 * seed + 2, **common
        ),
    )


def train(name: str, kwargs: dict, lr: float, seed: int, train_data: SegmentationData, args: Any):
    torch.manual_seed(seed)
    model = SegmentationModule(
        criterion={"name": name, **kwargs}, lr=lr, figure_samples=0, **NETWORK
    )
    opt = model.configure_optimizers()
    g = torch.Generator().manual_seed(seed)
    n = len(train_data.masks)
    perm = torch.randperm(n, generator=g)
    pos = 0
    model.train()
    for _ in range(args.steps):
        if pos + args.batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos : pos + args.batch_size]
        pos += args.batch_size
        out = model.compute_loss(model(train_data.images[idx]), train_data.masks[idx], log=False)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    model.eval()
    return model


def _one_hot(labels: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    # Ignored pixels become all-zero rows: they count in no class (as in the recipe's metrics).
    hot = F.one_hot(torch.where(valid, labels, 0), num_classes) * valid[..., None]
    return hot.movedim(-1, 1)


@torch.no_grad()
def evaluate(model: SegmentationModule, data: SegmentationData, num_classes: int) -> dict:
    dice = DiceScore(
        num_classes, average="none", aggregation_level="global", input_format="one-hot"
    )
    iou = MeanIoU(num_classes, per_class=True, input_format="one-hot")
    for i in range(0, len(data.masks), 128):
        target = data.masks[i : i + 128]
        pred = model(data.images[i : i + 128]).argmax(1)
        valid = (target >= 0) & (target < num_classes)
        pred_hot, target_hot = (_one_hot(t, valid, num_classes) for t in (pred, target))
        dice.update(pred_hot, target_hot)
        iou.update(pred_hot, target_hot)
    d, j = dice.compute().tolist(), iou.compute().tolist()
    return {
        "dice": d,
        "iou": j,
        "dice_fg": statistics.fmean(d[1:]),
        "miou": statistics.fmean(j),
    }


def summarise(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def markdown(results: dict, meta: dict) -> str:
    names = meta["class_names"]
    share = meta["test_pixel_share"]
    lines = [
        "# Segmentation under class imbalance (digit canvases, U-Net)",
        "",
        f"Test Dice and IoU (%), mean ± std over seeds {meta['seeds']}; {meta['steps']} AdamW "
        f"steps of batch {meta['batch_size']} on {meta['num_train']} {meta['image_size']}×"
        f"{meta['image_size']} canvases, each loss at its own learning rate (grid "
        f"{meta['lr_grid']}, chosen by validation foreground Dice, seed {meta['seeds'][0]}). "
        f"Test pixel share: "
        + ", ".join(f"{n} {100 * s:.1f} %" for n, s in zip(names, share))
        + f". Run time {meta['seconds']:.0f} s on {meta['machine']}.",
        "",
        "| loss | lr | " + " | ".join(f"Dice {n}" for n in names) + " | fg Dice | mIoU |",
        "|---|---|" + "---|" * (len(names) + 2),
    ]

    def cell(s: dict) -> str:
        return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"

    for label, r in results.items():
        cells = [cell(c) for c in r["dice"]] + [cell(r["dice_fg"]), cell(r["miou"])]
        lines.append(f"| {label} | {r['lr']:g} | " + " | ".join(cells) + " |")
    lines += ["", "## Per-class IoU (%)", ""]
    lines += ["| loss | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, r in results.items():
        lines.append(f"| {label} | " + " | ".join(cell(c) for c in r["iou"]) + " |")
    lines += ["", "## Learning-rate selection (validation foreground Dice, %, seed 0)", ""]
    grid = meta["lr_grid"]
    lines += [
        "| loss | " + " | ".join(f"lr {lr:g}" for lr in grid) + " |",
        "|---|" + "---|" * len(grid),
    ]
    for label, r in results.items():
        lines.append(
            f"| {label} | "
            + " | ".join(f"{100 * r['val_by_lr'][str(lr)]:.1f}" for lr in grid)
            + " |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict, meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = meta["class_names"]
    labels = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 1.2]})
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        r = results[label]
        xs = [c + (k - (len(labels) - 1) / 2) * width for c in range(len(names))]
        means = [100 * s["mean"] for s in r["dice"]]
        stds = [100 * s["std"] for s in r["dice"]]
        axes[0].bar(xs, means, width, yerr=stds, capsize=3, label=f"{label} (lr {r['lr']:g})")
        for x, vals in zip(xs, [s["values"] for s in r["dice"]]):
            axes[0].scatter([x] * len(vals), [100 * v for v in vals], s=8, color="k", zorder=3)
        axes[1].bar(k, 100 * r["miou"]["mean"], yerr=100 * r["miou"]["std"], capsize=3)
    axes[0].set_xticks(
        range(len(names)),
        [f"{n}\n({100 * s:.1f} % of pixels)" for n, s in zip(names, meta["test_pixel_share"])],
    )
    axes[0].set(ylabel="test Dice (%)", title="Per-class Dice (mean ± std, dots = seeds)")
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    axes[1].set(ylabel="test mIoU (%)", title="Mean IoU (all classes)")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Digit canvases, U-Net, {len(meta['seeds'])} seeds")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)


TVERSKY_GRID = ("0.3,0.3", "0.7,0.3", "0.5,0.5", "0.3,0.7", "0.7,0.7")


def tversky_grid(args: Any, start: float) -> None:
    """The α × β ablation of Tversky at a fixed learning rate, on seed 0's validation split."""
    seed = args.seeds[0]
    train_data, val_data, _ = make_data(seed, args)
    num_classes = train_data.num_classes
    rare = num_classes - 1
    rows = []
    for pair in args.tversky_grid:
        alpha, beta = (float(v) for v in pair.split(","))
        kwargs = {"softmax": True, "ignore_index": IGNORE, "alpha": alpha, "beta": beta}
        model = train("tversky", kwargs, args.tversky_lr, seed, train_data, args)
        scores = evaluate(model, val_data, num_classes)
        with torch.no_grad():
            probs = torch.cat(
                [
                    model(val_data.images[i : i + 128]).softmax(1)
                    for i in range(0, len(val_data.masks), 128)
                ]
            )
        on_rare = val_data.masks == rare
        rows.append(
            {
                "alpha": alpha,
                "beta": beta,
                "dice": scores["dice"],
                "dice_fg": scores["dice_fg"],
                # How much probability the right class gets on the rarest class's pixels, and
                # which class wins them.
                "rare_prob": probs[:, rare][on_rare].mean().item(),
                "rare_predicted_as": torch.bincount(
                    probs.argmax(1)[on_rare], minlength=num_classes
                ).tolist(),
            }
        )
        print(f"tversky α={alpha} β={beta}: {rows[-1]}", flush=True)
    names = list(train_data.class_names)
    lines = [
        "# Tversky α × β on the rarest class (validation, seed 0)",
        "",
        f"Learning rate {args.tversky_lr:g}, {args.steps} AdamW steps of batch {args.batch_size};"
        f" only α (false positives) and β (false negatives) change. Run time "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        "| α | β | " + " | ".join(f"Dice {n}" for n in names) + " | fg Dice "
        f"| mean p(right class) on {names[-1]} | {names[-1]} pixels predicted as "
        + " / ".join(names)
        + " |",
        "|---|---|" + "---|" * (len(names) + 3),
    ]
    for r in rows:
        lines.append(
            f"| {r['alpha']:g} | {r['beta']:g} | "
            + " | ".join(f"{100 * d:.1f}" for d in r["dice"])
            + f" | {100 * r['dice_fg']:.1f} | {r['rare_prob']:.4f} | "
            + " / ".join(str(c) for c in r["rare_predicted_as"])
            + " |"
        )
    base = args.name
    args.name = f"{base}_tversky"
    _common.write_json(_common.output(args, ".json"), {"rows": rows, "lr": args.tversky_lr})
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")
    print(f"done -> {_common.output(args, '.md')}")
    args.name = base


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "segmentation_imbalance", plot=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--object-size", type=int, nargs=2, default=[10, 16])
    parser.add_argument("--num-train", type=int, default=512)
    parser.add_argument("--num-val", type=int, default=128)
    parser.add_argument("--num-test", type=int, default=256)
    parser.add_argument("--losses", nargs="*", default=None, help="subset of loss labels")
    parser.add_argument(
        "--tversky-grid",
        nargs="*",
        default=None,
        help=f"run the Tversky α,β ablation instead (no value: {' '.join(TVERSKY_GRID)})",
    )
    parser.add_argument("--tversky-lr", type=float, default=3e-3)
    args = _common.parse(parser, argv)
    if args.smoke:  # every loss, the whole path: two steps on a few tiny canvases
        args.seeds, args.lrs, args.steps, args.batch_size = [0, 1], [1e-3, 3e-3], 2, 4
        args.image_size, args.object_size = 32, [8, 14]
        args.num_train, args.num_val, args.num_test = 8, 8, 8
    torch.set_num_threads(1)  # comparable timings on a shared machine; small convs gain little
    if args.tversky_grid is not None:
        args.tversky_grid = args.tversky_grid or list(TVERSKY_GRID)
        if args.smoke:
            args.tversky_grid = args.tversky_grid[:2]
        tversky_grid(args, time.perf_counter())
        return

    losses = [entry for entry in LOSSES if args.losses is None or entry[0] in args.losses]
    start = time.perf_counter()
    data = {seed: make_data(seed, args) for seed in args.seeds}
    num_classes = data[args.seeds[0]][0].num_classes
    results: dict[str, dict] = {}
    for label, name, kwargs in losses:
        # Learning rate: the validation split of the first seed decides, same grid for every loss.
        tuning = {}
        models = {}
        for lr in args.lrs:
            seed = args.seeds[0]
            models[lr] = train(name, kwargs, lr, seed, data[seed][0], args)
            tuning[lr] = evaluate(models[lr], data[seed][1], num_classes)["dice_fg"]
        lr = max(args.lrs, key=lambda v: tuning[v])
        runs = []
        for seed in args.seeds:
            model = (
                models[lr]
                if seed == args.seeds[0]
                else train(name, kwargs, lr, seed, data[seed][0], args)
            )
            runs.append(evaluate(model, data[seed][2], num_classes))
        results[label] = {
            "lr": lr,
            "val_by_lr": {str(v): tuning[v] for v in args.lrs},
            "dice": [summarise([r["dice"][c] for r in runs]) for c in range(num_classes)],
            "iou": [summarise([r["iou"][c] for r in runs]) for c in range(num_classes)],
            "dice_fg": summarise([r["dice_fg"] for r in runs]),
            "miou": summarise([r["miou"] for r in runs]),
        }
        print(
            f"{label:22s} lr={lr:g} fg Dice={results[label]['dice_fg']['mean']:.3f} "
            f"rare Dice={results[label]['dice'][-1]['mean']:.3f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    test_masks = torch.cat([data[s][2].masks for s in args.seeds])
    valid = test_masks[test_masks != IGNORE]
    meta = {
        "seeds": args.seeds,
        "lr_grid": args.lrs,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "object_size": args.object_size,
        "num_train": args.num_train,
        "num_val": args.num_val,
        "num_test": args.num_test,
        "class_probs": CLASS_PROBS,
        "class_names": list(data[args.seeds[0]][0].class_names),
        "test_pixel_share": [(valid == c).float().mean().item() for c in range(num_classes)],
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "smoke": args.smoke,
        "losses": {label: {"name": name, "kwargs": kwargs} for label, name, kwargs in losses},
    }
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "results": results})
    _common.output(args, ".md").write_text(markdown(results, meta))
    plot(results, meta, args.plot)
    print(f"done in {meta['seconds']:.0f} s -> {_common.output(args, '.md')}")


if __name__ == "__main__":
    main()
