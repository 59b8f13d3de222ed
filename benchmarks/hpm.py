"""HPM benchmark: MAE with random masks vs hard-patch mining, on synthetic strokes and on digits.

*Hard Patches Mining for Masked Image Modeling* (Wang et al., CVPR 2023, arXiv:2304.05919);
guide: ``docs/guide/hpm.md``. A CPU experiment **shrunk** to fit the ≤ 10 min single-thread budget
of all benchmarks: a tiny ViT-MAE (dim 32, 2 encoder + 1 decoder blocks, 2 heads, loss-predictor
decoder of the same shape), batch 64, ~250 steps per run (first planned: dim 64, batch 128, ~1500
steps), 3 seeds,
equal budget (same steps, same data order, same init per seed; the random-mask run trains the
loss predictor too, so the two differ only in the masks).

- strokes: 28×28, 7×7 patches (L = 16), 2048 training images, 8 epochs (256 steps);
- digits: the scikit-learn digits upscaled to 16×16, 4×4 patches (L = 16), 12 epochs (240 steps).

HPM: `HardPatchMining` with alpha 0 -> 0.5 per epoch and an EMA teacher whose decay ramps
0.99 -> 0.999 over the run (the official 0.999 -> 0.9999 is for ~250k steps; a 0.999 teacher would
barely move in 250 steps). Measured on held-out images (strokes validation set, digits
validation split) at the end of training:

1. the predictor's pairwise ranking accuracy on masked patches (random masks; ties excluded);
2. strokes: share of the hard-chosen patches (teacher's top n_hard = 6 of 16) that contain ink
   (any pixel > 0.1), against the share of all patches (what random masking picks);
3. mean reconstruction loss of masked patches under HPM masks (alpha = 0.5, teacher scores) vs
   random masks, same checkpoint;
4. linear-probe accuracy (frozen mean-pooled encoder features, logistic regression fitted on the
   training images, scored on the test split);
5. wall time per training step (median), HPM vs random, same process.

Run: ``OMP_NUM_THREADS=1 python benchmarks/hpm.py``. Results: ``benchmarks/results/hpm.{json,md}``
and ``docs/assets/hpm.png``; ``--smoke --out DIR``: a few seconds, everything in ``DIR`` (see
``benchmarks/_common.py``).
"""

from __future__ import annotations

import statistics
import time
import warnings

import _common
import lightning as L
import torch
from lightning.pytorch import Callback

from lightning_losses.callbacks import HardPatchMining, hard_patch_mask
from lightning_losses.data import DigitsImageDataModule, StrokesDataModule, synthetic_strokes
from lightning_losses.nn import masked_rows, pairwise_ranking_accuracy, patchify, random_patch_mask
from lightning_losses.recipes.masked_image_modeling import (
    MaskedImageModeling,
    linear_probe_accuracy,
)

warnings.filterwarnings("ignore")

MODEL = dict(
    embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2, lr=2e-3
)
TASKS = {
    "strokes": dict(img_size=28, patch_size=7, num_classes=4, epochs=8),
    "digits": dict(img_size=16, patch_size=4, num_classes=10, epochs=12),
}


class Probe(Callback):
    """Per-step wall time and the predictor's training ranking accuracy."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.rank_acc: list[float] = []
        self._t = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._t)  # includes HPM's teacher pass + EMA
        self.rank_acc.append(float(outputs["extras"]["pred_rank_acc"]))


def _datamodule(task: str, seed: int, batch_size: int, num_train: int, num_eval: int = 512):
    if task == "strokes":
        return StrokesDataModule(
            num_train=num_train,
            num_val=num_eval,
            num_test=num_eval,
            batch_size=batch_size,
            seed=seed,
        )
    return DigitsImageDataModule(image_size=16, batch_size=batch_size, seed=seed)


@torch.no_grad()
def evaluate(model: MaskedImageModeling, scorer, dm, task: str, seed: int) -> dict[str, float]:
    model.eval()
    s = dm.splits
    x = s.x_val
    n, length = len(x), model.num_patches
    g = torch.Generator().manual_seed(1000 + seed)
    rand_mask = random_patch_mask(n, length, 0.75, generator=g)
    out = model.mae(x, rand_mask)
    res = {
        "rank_acc": float(
            pairwise_ranking_accuracy(
                masked_rows(out.pred_loss, rand_mask), masked_rows(out.patch_loss, rand_mask)
            )
        ),
        "loss_random_masks": float(out.patch_loss[rand_mask].mean()),
    }
    scores = scorer(x)
    hpm_mask = hard_patch_mask(scores, 0.75, 0.5, torch.Generator().manual_seed(1000 + seed))
    res["loss_hpm_masks"] = float(model.mae(x, hpm_mask).patch_loss[hpm_mask].mean())
    if task == "strokes":
        ink = (
            patchify(synthetic_strokes(n, 28, seed=dm.hparams.seed + 1).ink.float(), 7).amax(-1) > 0
        )
        assert torch.equal(ink, patchify(x, 7).amax(-1) > 0.1)  # same images as the val split
        top = scores.argsort(1, descending=True)[:, :6]
        res["ink_share_hard"] = float(ink.gather(1, top).float().mean())
        res["ink_share_base"] = float(ink.float().mean())
        res["ink_share_random_masks"] = float(ink[rand_mask].float().mean())
    res["probe_acc"] = linear_probe_accuracy(
        model.features(s.x_train), s.y_train, model.features(s.x_test), s.y_test, s.num_classes
    )
    return res


def run_one(
    task: str,
    method: str,
    seed: int,
    epochs: int,
    batch_size: int,
    num_train: int,
    num_eval: int = 512,
    max_batches: int | None = None,
) -> dict:
    cfg = TASKS[task]
    L.seed_everything(seed, verbose=False)
    model = MaskedImageModeling(
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        num_classes=cfg["num_classes"],
        **MODEL,
    )
    dm = _datamodule(task, seed, batch_size, num_train, num_eval)
    probe = Probe()
    callbacks = [probe]
    hpm = None
    if method == "hpm":
        hpm = HardPatchMining(seed=seed, ema_decay=(0.99, 0.999), ema_epochs=epochs)
        callbacks.insert(0, hpm)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=max_batches,
        limit_val_batches=0,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    start = time.perf_counter()
    trainer.fit(model, dm)
    wall = time.perf_counter() - start
    if hpm is not None:
        teacher = hpm.teacher.module.eval()
        scorer = teacher.predict_patch_loss
    else:  # the random-mask MAE's own predictor (trained the same way) picks its "hard" patches
        scorer = model.mae.predict_patch_loss
    res = evaluate(model, scorer, dm, task, seed)
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "steps": trainer.global_step,
        "wall_s": wall,
        "step_ms": 1000 * statistics.median(probe.times[5:] or probe.times),
        "train_rank_acc": probe.rank_acc,
        **res,
    }


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    keys = [
        "rank_acc",
        "ink_share_hard",
        "ink_share_base",
        "loss_random_masks",
        "loss_hpm_masks",
        "probe_acc",
        "step_ms",
    ]
    for task in TASKS:
        for method in ("random", "hpm"):
            sel = [r for r in runs if r["task"] == task and r["method"] == method]
            if not sel:
                continue
            row = {"task": task, "method": method, "n": len(sel), "steps": sel[0]["steps"]}
            for k in keys:
                vals = [r[k] for r in sel if k in r]
                if vals:
                    row[k] = statistics.mean(vals)
                    row[k + "_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
            rows.append(row)
    return rows


def _fmt(row: dict, key: str, digits: int = 3) -> str:
    if key not in row:
        return "–"
    return f"{row[key]:.{digits}f} ± {row[key + '_sd']:.{digits}f}"


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Seeds: {meta['seeds']}; batch {meta['batch_size']}; model {MODEL}; "
        f"{meta['threads']} thread(s); total {meta['total_s']:.0f} s.",
        "",
        "| task | masks | steps | (1) rank acc | (2) ink share of hard picks | ink base rate "
        "| (3) loss, random masks | (3) loss, HPM masks | (4) probe acc | (5) ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {r['steps']} | {_fmt(r, 'rank_acc')} | "
            f"{_fmt(r, 'ink_share_hard')} | {_fmt(r, 'ink_share_base')} | "
            f"{_fmt(r, 'loss_random_masks')} | {_fmt(r, 'loss_hpm_masks')} | "
            f"{_fmt(r, 'probe_acc')} | {_fmt(r, 'step_ms', 1)} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the [plots] extra
        print("matplotlib missing: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, task in zip(axes, TASKS, strict=True):
        for method, color in (("random", "tab:blue"), ("hpm", "tab:red")):
            curves = [
                r["train_rank_acc"] for r in runs if r["task"] == task and r["method"] == method
            ]
            if not curves:
                continue
            n = min(map(len, curves))
            mean = torch.tensor([c[:n] for c in curves]).mean(0)
            k = min(20, n)  # moving average over 20 steps (fewer in a smoke run)
            smooth = torch.nn.functional.avg_pool1d(mean[None, None], k, 1).flatten()
            ax.plot(range(k - 1, n), smooth, color=color, label=f"{method} masks")
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.axhline(0.65, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{task}: loss predictor, pairwise ranking acc (train)")
        ax.set_xlabel("step")
        ax.legend(loc="lower right")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "hpm", plot=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-train", type=int, default=2048, help="strokes training images")
    parser.add_argument("--epoch-scale", type=float, default=1.0, help="multiplies the epochs")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--threads", type=int, default=1)
    args = _common.parse(parser, argv)
    num_eval, max_batches = 512, None
    if args.smoke:  # one epoch of 3 batches per run; tiny strokes splits
        args.seeds, args.epoch_scale, args.num_train, args.batch_size = 1, 0.0, 64, 16
        num_eval, max_batches = 64, 3
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    runs = []
    for task in args.tasks:
        epochs = max(1, round(TASKS[task]["epochs"] * args.epoch_scale))
        for seed in range(args.seeds):
            for method in ("random", "hpm"):
                r = run_one(
                    task,
                    method,
                    seed,
                    epochs,
                    args.batch_size,
                    args.num_train,
                    num_eval,
                    max_batches,
                )
                runs.append(r)
                print(
                    f"{task:8s} {method:6s} seed {seed}: rank {r['rank_acc']:.3f} "
                    f"probe {r['probe_acc']:.3f} "
                    f"loss rand/hpm {r['loss_random_masks']:.3f}/{r['loss_hpm_masks']:.3f} "
                    f"ink {r.get('ink_share_hard', float('nan')):.3f} {r['step_ms']:.1f} ms/step "
                    f"({r['wall_s']:.0f} s)",
                    flush=True,
                )
    meta = {
        "seeds": args.seeds,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "total_s": time.perf_counter() - start,
        "smoke": args.smoke,
    }
    rows = summarise(runs)
    md = markdown(rows, meta)
    print(md)
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "summary": rows, "runs": runs})
    _common.output(args, ".md").write_text(md)
    plot(runs, args.plot)


if __name__ == "__main__":
    main()
