"""Benchmark: loss-based sample reweighting on the NLP recipe.

*Dynamic Loss-Based Sample Reweighting for Improved Large Language Model Pretraining* (Sow et al.,
ICLR 2025, arXiv:2502.06733); guide: ``docs/guide/reweighting.md``.

Same tiny Llama-like LM (the ``recipes/nlp/grammar_llama.yaml`` model) trained on the bundled
grammar corpus with uniform weights (no callback) vs each strategy of ``LossReweighting``,
several seeds, an equal step budget. Two corpora:

* ``clean``: the grammar corpus;
* ``corrupted``: a known fraction of the training blocks replaced by duplicates of 4 clean blocks
  (redundant, low loss once memorised) and by uniformly random tokens (garbled, high loss).

Measured: validation perplexity curves on the clean validation split; the mean weight (× batch
size, so 1 = uniform) that each strategy gives to clean / duplicate / garbled blocks once
reweighting is active; and the callback's wall-clock overhead per training step (the time spent
in ``sample_weights`` + its logging hook, directly timed, over the step time; and the median
step time with vs without the callback).

Run: ``python benchmarks/reweighting.py [--steps 200 --seeds 0 1 2]``; writes
``benchmarks/results/reweighting.{json,md}`` and ``docs/assets/reweighting.png``; ``--smoke --out
DIR``: uniform vs one strategy on both corpora, a few steps, everything in ``DIR`` (see
``benchmarks/_common.py``).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import _common
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_losses.callbacks import LossReweighting
from lightning_losses.data import TextDataModule
from lightning_losses.recipes.nlp import CausalLM

STRATEGIES = ["uniform", "linupper", "quadratic", "extremes", "upper"]
KINDS = ["clean", "duplicate", "garbled"]


class Probe(Callback):
    """Records val ppl, step times and (active) per-kind weights × B."""

    def __init__(self, reweighter: LossReweighting | None) -> None:
        self.rw = reweighter
        self.ppl: list[tuple[int, float]] = []
        self.step_times: list[float] = []
        self.cb_time = 0.0
        self.kind_w = {k: [] for k in KINDS}
        self.kind_loss = {k: [] for k in KINDS}
        if reweighter is not None:
            # Time the callback's own work: the weight computation and its logging hook.
            sw, hook = reweighter.sample_weights, reweighter.on_train_batch_end

            def timed_sw(per_sample):
                t = time.perf_counter()
                out = sw(per_sample)
                self.cb_time += time.perf_counter() - t
                return out

            def timed_hook(*a, **k):
                t = time.perf_counter()
                hook(*a, **k)
                self.cb_time += time.perf_counter() - t

            reweighter.sample_weights = timed_sw
            reweighter.on_train_batch_end = timed_hook

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.step_times.append(time.perf_counter() - self._t0)
        per = outputs["per_sample"].detach()
        b = per.numel()
        if self.rw is not None and self.rw.is_active(trainer.global_step - 1):
            w = self.rw.last_weights * b
        elif self.rw is None:
            w = torch.ones(b)
        else:
            return
        for i, k in enumerate(KINDS):
            m = batch["kind"] == i
            if m.any():
                self.kind_w[k].append(float(w[m].mean()))
                self.kind_loss[k].append(float(per[m].mean()))

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.ppl.append((trainer.global_step, float(trainer.callback_metrics["val/ppl"])))


def run(strategy: str, seed: int, corrupted: bool, args) -> dict:
    seed_everything(seed, verbose=False)
    dm = TextDataModule(
        block_size=args.block,
        vocab_size=512,
        batch_size=16,
        num_docs=args.docs,
        seed=seed,
        tokenizer_dir=args.tokenizer_dir,
        duplicate_fraction=0.2 if corrupted else 0.0,
        garble_fraction=0.1 if corrupted else 0.0,
    )
    model = CausalLM(
        vocab_size=512,
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        max_position_embeddings=args.block,
        z_loss_coeff=1e-4,
        lr=3e-3,
        warmup_steps=20,
    )
    rw = None
    if strategy != "uniform":
        rw = LossReweighting(strategy=strategy, kl_reg=args.kl_reg, burnout_steps=args.burnout)
    probe = Probe(rw)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=args.val_batches,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        log_every_n_steps=10,  # as in recipes/nlp/*.yaml; reweight/* stats logged at this cadence
        callbacks=[c for c in (rw, probe) if c is not None],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=args.root_dir,
    )
    trainer.fit(model, datamodule=dm)
    steps = probe.step_times[5:] or probe.step_times  # skip allocator / autograd warm-up
    return {
        "strategy": strategy,
        "seed": seed,
        "corpus": "corrupted" if corrupted else "clean",
        "ppl": probe.ppl,
        "median_step_s": statistics.median(steps),
        "callback_s_per_step": probe.cb_time / max(len(probe.step_times), 1),
        "kind_weight": {k: statistics.fmean(v) if v else None for k, v in probe.kind_w.items()},
        "kind_loss": {k: statistics.fmean(v) if v else None for k, v in probe.kind_loss.items()},
    }


def _mean(values: list[float | None]) -> float | None:
    # None: no block of that kind was drawn while reweighting was active (short runs).
    seen = [v for v in values if v is not None]
    return statistics.fmean(seen) if seen else None


def _f(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def summarize(results: list[dict], args) -> tuple[dict, str]:
    summary: dict = {"config": vars(args), "corpora": {}}
    lines = [
        "# Loss-based sample reweighting on the NLP recipe",
        "",
        f"Tiny Llama (2 layers, d=128, 0.66 M params), grammar corpus, block {args.block}, "
        "batch 16, "
        f"{args.steps} steps, reweighting after {args.burnout} warm-up steps, r = {args.kl_reg}, "
        f"seeds {sorted({r['seed'] for r in results})}. Validation perplexity on the clean "
        "held-out split (mean ± std over seeds). Weights are reported × batch size (1 = uniform), "
        "averaged over the steps where reweighting is active. Generated by "
        "`benchmarks/reweighting.py`; interpretation in `docs/guide/reweighting.md`.",
        "",
    ]
    for corpus in ("clean", "corrupted"):
        rows = [r for r in results if r["corpus"] == corpus]
        if not rows:
            continue
        lines += [f"## {corpus} corpus", ""]
        if corpus == "corrupted":
            lines += [
                "20 % of the training blocks are duplicates of 4 clean blocks, 10 % are "
                "random tokens (known mask).",
                "",
            ]
        header = "| strategy | final val ppl | best val ppl | ppl @ mid |"
        sep = "|---|---|---|---|"
        if corpus == "corrupted":
            header += " w clean | w duplicate | w garbled | loss dup / clean / garbled |"
            sep += "---|---|---|---|"
        lines += [header, sep]
        summary["corpora"][corpus] = {}
        for s in STRATEGIES:
            rs = [r for r in rows if r["strategy"] == s]
            if not rs:
                continue
            finals = [r["ppl"][-1][1] for r in rs]
            bests = [min(p for _, p in r["ppl"]) for r in rs]
            mids = [r["ppl"][len(r["ppl"]) // 2 - 1][1] for r in rs]

            def ms(v):
                return (statistics.fmean(v), statistics.pstdev(v) if len(v) > 1 else 0.0)

            entry = {
                "final_ppl": ms(finals),
                "best_ppl": ms(bests),
                "mid_ppl": ms(mids),
                "curve_steps": [st for st, _ in rs[0]["ppl"]],
                "curve_mean": [
                    statistics.fmean(r["ppl"][i][1] for r in rs) for i in range(len(rs[0]["ppl"]))
                ],
            }
            line = (
                f"| {s} | {entry['final_ppl'][0]:.3f} ± {entry['final_ppl'][1]:.3f} "
                f"| {entry['best_ppl'][0]:.3f} ± {entry['best_ppl'][1]:.3f} "
                f"| {entry['mid_ppl'][0]:.3f} ± {entry['mid_ppl'][1]:.3f} |"
            )
            if corpus == "corrupted":
                kw = {k: _mean([r["kind_weight"][k] for r in rs]) for k in KINDS}
                kl = {k: _mean([r["kind_loss"][k] for r in rs]) for k in KINDS}
                entry["kind_weight"], entry["kind_loss"] = kw, kl
                line += (
                    f" {_f(kw['clean'], 3)} | {_f(kw['duplicate'], 3)} | {_f(kw['garbled'], 3)} | "
                    f"{_f(kl['duplicate'])} / {_f(kl['clean'])} / {_f(kl['garbled'])} |"
                )
            lines.append(line)
            summary["corpora"][corpus][s] = entry
        lines.append("")
    # Overhead: directly timed callback work / step time, and median step time vs uniform.
    lines += [
        "## Overhead",
        "",
        "| strategy | callback ms/step | share of step | median step ms | vs uniform |",
        "|---|---|---|---|---|",
    ]
    base = statistics.median(r["median_step_s"] for r in results if r["strategy"] == "uniform")
    summary["overhead"] = {}
    for s in STRATEGIES[1:]:
        rs = [r for r in results if r["strategy"] == s]
        if not rs:
            continue
        cb = statistics.median(r["callback_s_per_step"] for r in rs)
        step = statistics.median(r["median_step_s"] for r in rs)
        # Per-run ratio first: runs may see different machine load.
        share = statistics.median(r["callback_s_per_step"] / r["median_step_s"] for r in rs)
        summary["overhead"][s] = {
            "callback_ms": cb * 1e3,
            "share": share,
            "median_step_ms": step * 1e3,
            "vs_uniform": step / base - 1,
        }
        lines.append(
            f"| {s} | {cb * 1e3:.3f} | {100 * share:.2f} % | {step * 1e3:.1f} | "
            f"{100 * (step / base - 1):+.1f} % |"
        )
    lines += [
        "",
        f"Uniform (no callback) median step: {base * 1e3:.1f} ms. The *share of step* column "
        "times the callback's own work directly (weights + logging hook per step, over the "
        "run's median step time; median over runs); the *vs uniform* column compares whole-step "
        "medians across separate runs and is only meaningful on an otherwise idle machine.",
        "",
    ]
    return summary, "\n".join(lines)


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(summary["corpora"])
    fig, axes = plt.subplots(1, len(corpora) + 1, figsize=(5 * (len(corpora) + 1), 3.8))
    for ax, corpus in zip(axes, corpora):
        for s, e in summary["corpora"][corpus].items():
            # From the 2nd evaluation on: the first one (end of warm-up) dwarfs the differences.
            ax.plot(e["curve_steps"][1:], e["curve_mean"][1:], marker="o", ms=3, label=s)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("val perplexity (mean over seeds)")
        ax.set_title(f"{corpus} corpus")
        ax.legend(fontsize=8)
    ax = axes[-1]
    if "corrupted" in summary["corpora"]:
        ents = summary["corpora"]["corrupted"]
        names = [s for s in ents if s != "uniform"]
        x = torch.arange(len(names)).float()
        for j, k in enumerate(KINDS):
            ax.bar(
                x + (j - 1) * 0.27,
                [_nan_if_none(ents[s]["kind_weight"][k]) for s in names],
                width=0.27,
                label=k,
            )
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(x.tolist(), names)
        ax.set_ylabel("mean weight × batch size")
        ax.set_title("weights by block kind (corrupted)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = _common.make_parser(__doc__, "reweighting", plot=True)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--burnout", type=int, default=20)
    p.add_argument("--val-batches", type=int, default=5)
    p.add_argument("--kl-reg", type=float, default=1.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--strategies", nargs="+", default=STRATEGIES)
    p.add_argument("--corpora", nargs="+", default=["corrupted", "clean"])
    p.add_argument("--docs", type=int, default=3000, help="documents of the grammar corpus")
    p.add_argument("--block", type=int, default=128, help="tokens per training block")
    p.add_argument("--tokenizer-dir", default="/tmp/ll_bench_tokenizers")
    p.add_argument("--root-dir", default="/tmp/ll_bench_reweighting", help="Trainer root dir")
    p.add_argument(
        "--summarize-only",
        action="store_true",
        help="rebuild the table and plot from the JSON written by an earlier run",
    )
    args = _common.parse(p, argv)
    if args.smoke:  # uniform and one strategy on both corpora, 4 steps, 2 validations
        args.steps, args.val_every, args.burnout, args.val_batches = 4, 2, 1, 1
        args.seeds, args.strategies, args.docs, args.block = [0], ["uniform", "linupper"], 300, 32
        args.tokenizer_dir, args.root_dir = str(args.out / "tokenizers"), str(args.out)
    if args.summarize_only:
        results = json.loads(_common.output(args, ".json").read_text())["runs"]
        write(results, args)
        print(_common.output(args, ".md").read_text())
        return
    # A smoke run on one thread: tiny steps only lose to OpenMP spinning on a loaded machine.
    torch.set_num_threads(1 if args.smoke else max(torch.get_num_threads(), 1))
    results = []
    # Seeds outermost and a summary after every run: a partial benchmark is still reported.
    for seed in args.seeds:
        for corpus in args.corpora:
            for s in args.strategies:
                t = time.time()
                r = run(s, seed, corpus == "corrupted", args)
                results.append(r)
                print(
                    f"{corpus:9s} seed={seed} {s:9s} final ppl {r['ppl'][-1][1]:.3f} "
                    f"step {r['median_step_s'] * 1e3:.0f} ms ({time.time() - t:.0f} s)",
                    flush=True,
                )
                # A smoke run draws the figure once, at the end (≈ 1 s a drawing).
                write(results, args, figure=not args.smoke)
    if args.smoke:
        write(results, args)
    print(_common.output(args, ".md").read_text())


def write(results: list[dict], args, figure: bool = True) -> None:
    summary, md = summarize(results, args)
    summary["runs"] = results
    _common.write_json(_common.output(args, ".json"), summary)
    _common.output(args, ".md").write_text(md)
    if figure:
        plot(summary, args.plot)


if __name__ == "__main__":
    main()
