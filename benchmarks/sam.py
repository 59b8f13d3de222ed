"""Effect benchmark: SAM vs its base optimizer on digits, clean and with 40 % symmetric label noise.

sklearn digits (8×8, 10 classes; ``lightning_losses.data.load_digits_splits``), a 64-256-256-10
MLP trained by a Lightning ``Trainer`` with SGD (momentum 0.9, batch 64, a fixed number of epochs,
last epoch reported), with and without the ``SAM`` callback (ρ = 0.05, the paper's default, and
ρ = 0.2). Each arm gets the same tuning budget: learning rate × weight decay on a grid, chosen by
validation accuracy on seed 0 (the validation labels are clean, as in the noisy-label papers'
protocol; the choice is never made on test). The chosen configuration is then run with 3 seeds.

Reported per arm and setting: clean test accuracy (mean ± std over seeds), sharpness (the largest
eigenvalue of the Hessian of the training loss on the full training set, the labels it was trained
on, by 20 power iterations of Hessian-vector products), and the cost per optimizer step: SAM's time
per step divided by twice the base optimizer's (≈ 1 when SAM costs exactly two plain steps).

Run: ``python benchmarks/sam.py`` (≈ 5 min on an idle CPU core). Writes
``benchmarks/results/sam.{json,md}`` and ``docs/assets/sam.png``; ``--smoke --out DIR`` runs every
arm and setting for one epoch of a narrow MLP, everything in ``DIR``. Guide: ``docs/guide/sam.md``.
"""

from __future__ import annotations

import json
import logging
import platform
import statistics
import time
import warnings

import _common
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.callbacks import SAM
from lightning_losses.data import load_digits_splits

ARMS: list[tuple[str, float | None]] = [("SGD", None), ("SAM ρ=0.05", 0.05), ("SAM ρ=0.2", 0.2)]
SETTINGS: list[tuple[str, float]] = [("clean", 0.0), ("symmetric 40%", 0.4)]
LRS = (0.03, 0.1)
WDS = (0.0, 5e-4)


class MLP(LightningModule):
    def __init__(self, seed: int, hidden: int, lr: float, wd: float) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )
        self.lr, self.wd = lr, wd

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.wd)


def top_hessian_eigenvalue(net: nn.Module, x: torch.Tensor, y: torch.Tensor, iters: int) -> float:
    """Largest Hessian eigenvalue of the mean cross-entropy by power iteration (HVPs)."""
    params = [p for p in net.parameters() if p.requires_grad]
    loss = F.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    g = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=g) for p in params]
    eig = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((vi**2).sum() for vi in v))
        v = [vi / norm for vi in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eig = float(sum((a * b).sum() for a, b in zip(hv, v, strict=True)))
        v = [h.detach() for h in hv]
    return eig


def run(splits, rho: float | None, seed: int, lr: float, wd: float, args) -> dict[str, float]:
    model = MLP(seed, args.hidden, lr, wd)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        TensorDataset(splits.x_train, splits.y_train),
        batch_size=64,
        shuffle=True,
        generator=g,
    )
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=args.epochs,
        callbacks=[] if rho is None else [SAM(rho=rho)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    start = time.perf_counter()
    trainer.fit(model, loader)
    seconds = time.perf_counter() - start
    net = model.net.eval()
    with torch.no_grad():
        val = (net(splits.x_val).argmax(-1) == splits.y_val).float().mean().item()
        test = (net(splits.x_test).argmax(-1) == splits.y_test).float().mean().item()
    return {
        "val_acc": val,
        "test_acc": test,
        "step_ms": 1000 * seconds / max(trainer.global_step, 1),
        "net": net,
    }


def summarise(values: list[float]) -> dict[str, float | list[float]]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def markdown(results: dict, meta: dict) -> str:
    lines = [
        f"# SAM vs SGD on digits ({len(meta['seeds'])} seeds, {meta['epochs']} epochs)",
        "",
        "| setting | arm | lr | wd | test acc (%) | sharpness λ_max | step cost / 2 SGD steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, arms in results.items():
        for arm, r in arms.items():
            acc, sharp = r["test_acc"], r["sharpness"]
            lines.append(
                f"| {setting} | {arm} | {r['lr']} | {r['wd']} | "
                f"{100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} | "
                f"{sharp['mean']:.3g} ± {sharp['std']:.2g} | {r['cost_ratio']:.2f} |"
            )
    lines += ["", f"Machine: {meta['machine']}; {meta['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    settings = list(results)
    arms = list(results[settings[0]])
    width = 0.8 / len(arms)
    for k, arm in enumerate(arms):
        xs = [i + (k - (len(arms) - 1) / 2) * width for i in range(len(settings))]
        for ax, metric, scale in ((axes[0], "test_acc", 100), (axes[1], "sharpness", 1)):
            means = [scale * results[s][arm][metric]["mean"] for s in settings]
            stds = [scale * results[s][arm][metric]["std"] for s in settings]
            ax.bar(xs, means, width, yerr=stds, label=arm, capsize=3)
    axes[0].set(ylabel="clean test accuracy (%)", title=f"accuracy ({n_seeds} seeds)")
    axes[1].set(ylabel="λ_max of the training-loss Hessian", title="sharpness at the end")
    for ax in axes:
        ax.set_xticks(range(len(settings)), settings)
        ax.grid(alpha=0.3, axis="y")
    low = min(100 * results[s][a]["test_acc"]["mean"] for s in settings for a in arms)
    axes[0].set_ylim(max(low - 10, 0), 100)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "sam", plot=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--hessian-iters", type=int, default=20)
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the table and figure from the JSON"
    )
    args = _common.parse(parser, argv)
    if args.replot:
        stored = json.loads(_common.output(args, ".json").read_text(encoding="utf-8"))
        _common.output(args, ".md").write_text(markdown(stored["results"], stored["meta"]))
        plot(stored["results"], args.plot, len(stored["meta"]["seeds"]))
        return
    lrs, wds = LRS, WDS
    if args.smoke:  # every arm and setting, one epoch of a narrow MLP, one configuration
        args.seeds, args.epochs, args.hidden, args.hessian_iters = [0], 1, 16, 2
        lrs, wds = LRS[:1], WDS[:1]
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    start = time.perf_counter()
    results: dict[str, dict] = {}
    for setting, rate in SETTINGS:
        results[setting] = {}
        tuning_splits = load_digits_splits(rate, seed=args.seeds[0])
        for arm, rho in ARMS:
            grid = [
                (run(tuning_splits, rho, args.seeds[0], lr, wd, args)["val_acc"], lr, wd)
                for lr in lrs
                for wd in wds
            ]
            _, lr, wd = max(grid)
            runs = []
            for seed in args.seeds:
                splits = load_digits_splits(rate, seed=seed)
                r = run(splits, rho, seed, lr, wd, args)
                r["sharpness"] = top_hessian_eigenvalue(
                    r.pop("net"), splits.x_train, splits.y_train, args.hessian_iters
                )
                runs.append(r)
            results[setting][arm] = {
                "lr": lr,
                "wd": wd,
                "grid_val_acc": [[lr_, wd_, acc] for acc, lr_, wd_ in grid],
                **{
                    m: summarise([r[m] for r in runs]) for m in ("test_acc", "sharpness", "step_ms")
                },
            }
            print(
                f"{setting:14s} {arm:11s} lr={lr} wd={wd} "
                f"acc={results[setting][arm]['test_acc']['mean']:.4f} "
                f"λ={results[setting][arm]['sharpness']['mean']:.1f}",
                flush=True,
            )
        base_ms = results[setting]["SGD"]["step_ms"]["mean"]
        for arm in results[setting]:
            results[setting][arm]["cost_ratio"] = results[setting][arm]["step_ms"]["mean"] / (
                2 * base_ms
            )
    meta = {
        "seeds": args.seeds,
        "epochs": args.epochs,
        "hidden": args.hidden,
        "batch_size": 64,
        "grid": {"lr": list(lrs), "weight_decay": list(wds)},
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread, "
        f"torch {torch.__version__}",
        "smoke": args.smoke,
    }
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "results": results})
    _common.output(args, ".md").write_text(markdown(results, meta))
    plot(results, args.plot, len(args.seeds))
    print(f"done in {meta['seconds']:.0f} s -> {_common.output(args, '.md')}")


if __name__ == "__main__":
    main()
