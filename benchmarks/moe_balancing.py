"""Benchmark: auxiliary-loss-free MoE load balancing vs the Switch/Mixtral aux loss vs none.

*Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts* (Wang et al. 2024,
arXiv:2408.15664). A small MoE LM (the ``recipes/nlp/grammar_moe.yaml`` model, shrunk: Llama
attention, 2 layers, width 64, 8 experts, top-2, sigmoid gating) on the bundled grammar corpus,
3 seeds, an equal step budget, four arms:

* ``none``: no balancing (``LossFreeBalancing(update=False)`` only measures the loads);
* ``aux 0.01`` / ``aux 0.1``: the Switch/Mixtral balance loss with that coefficient;
* ``loss-free u``: ``LossFreeBalancing(rate=u)``, u = 0.001 (the paper's) and 0.01 (short runs).

Shrunk to fit 10 min single-thread: 200 steps × 16 sequences × 32 tokens (~100k tokens per run).

Measured: MaxVio_global (mean over layers, on the validation split) at every validation, the
final validation perplexity, and the callback's overhead (time in its hooks / time per step).

Run: ``OMP_NUM_THREADS=1 python benchmarks/moe_balancing.py [--steps 200 --seeds 0 1 2]``;
writes ``benchmarks/results/moe_balancing.{json,md}`` and ``docs/assets/moe_balancing.png``;
``--smoke --out DIR``: a few steps per arm, everything in ``DIR`` (see ``benchmarks/_common.py``).
"""

from __future__ import annotations

import statistics
import tempfile
import time

import _common
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_losses.callbacks import LossFreeBalancing
from lightning_losses.data import TextDataModule
from lightning_losses.recipes.nlp import CausalLM


class Probe(Callback):
    """Records MaxVio_global / val ppl per validation, step times and the balancer's hook time."""

    def __init__(self, balancer: LossFreeBalancing) -> None:
        self.bal = balancer
        self.curve: list[tuple[int, float, float]] = []
        self.step_times: list[float] = []
        self.cb_time = 0.0
        self._t0 = 0.0
        hook = balancer.on_before_optimizer_step

        def timed(*args, **kwargs):
            t = time.perf_counter()
            hook(*args, **kwargs)
            self.cb_time += time.perf_counter() - t

        balancer.on_before_optimizer_step = timed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.step_times.append(time.perf_counter() - self._t0)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        if "val/ppl" in m and "moe/maxvio_global" in m:
            self.curve.append(
                (trainer.global_step, float(m["moe/maxvio_global"]), float(m["val/ppl"]))
            )


def run_arm(arm: dict, seed: int, args, tok_dir: str) -> dict:
    seed_everything(seed, verbose=False)
    model = CausalLM(
        model_type="llama_moe",
        vocab_size=args.vocab,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        max_position_embeddings=args.block,
        model_config=dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=128),
        balance_loss_coeff=arm["aux"],
        lr=3e-3,
        warmup_steps=20,
    )
    dm = TextDataModule(
        num_docs=args.docs,
        block_size=args.block,
        vocab_size=args.vocab,
        batch_size=args.batch,
        tokenizer_dir=tok_dir,
        seed=0,
    )
    balancer = LossFreeBalancing(rate=arm["rate"], update=arm["rate"] > 0, log_expert_load=False)
    probe = Probe(balancer)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=args.val_batches,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        callbacks=[balancer, probe],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    wall = time.perf_counter() - start
    steps = probe.step_times[5:] or probe.step_times  # skip warm-up steps
    return {
        "curve": probe.curve,
        "maxvio_global": probe.curve[-1][1],
        "val_ppl": probe.curve[-1][2],
        "step_ms": 1e3 * statistics.median(steps),
        "overhead": probe.cb_time / sum(probe.step_times),
        "wall_s": wall,
    }


def _fmt(xs: list[float], digits: int = 2) -> str:
    m = statistics.mean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    p = _common.make_parser(__doc__, "moe_balancing", plot=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--docs", type=int, default=1500)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--val-every", type=int, default=40)
    p.add_argument("--val-batches", type=int, default=6)
    p.add_argument("--rates", type=float, nargs="+", default=[1e-3, 1e-2], help="loss-free u")
    args = _common.parse(p, argv)
    if args.smoke:  # every arm kind (one loss-free rate), 4 steps, 2 validations
        args.steps, args.seeds, args.block, args.batch, args.docs = 4, [0], 16, 4, 200
        args.val_every, args.val_batches, args.rates = 2, 1, [1e-2]
    torch.set_num_threads(1)
    arms = {
        "none": {"aux": 0.0, "rate": 0.0},
        "aux 0.01": {"aux": 0.01, "rate": 0.0},
        "aux 0.1": {"aux": 0.1, "rate": 0.0},
        **{f"loss-free u={u:g}": {"aux": 0.0, "rate": u} for u in args.rates},
    }
    results: dict[str, list[dict]] = {name: [] for name in arms}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tok_dir:
        for seed in args.seeds:
            for name, arm in arms.items():
                r = run_arm(arm, seed, args, tok_dir)
                results[name].append(r)
                print(
                    f"{name:>18} seed {seed}: MaxVio_global {r['maxvio_global']:.3f} "
                    f"val ppl {r['val_ppl']:.3f} step {r['step_ms']:.0f} ms "
                    f"overhead {100 * r['overhead']:.2f}%",
                    flush=True,
                )
    total = time.perf_counter() - start
    summary = {
        name: {
            "maxvio_global": [r["maxvio_global"] for r in rs],
            "val_ppl": [r["val_ppl"] for r in rs],
            "step_ms": [r["step_ms"] for r in rs],
            "overhead": [r["overhead"] for r in rs],
        }
        for name, rs in results.items()
    }
    payload = {"config": vars(args), "total_s": total, "summary": summary, "runs": results}
    _common.write_json(_common.output(args, ".json"), payload)
    lines = [
        f"MoE LM (2 layers, width 64, 8 experts, top-2, sigmoid gating) on the grammar corpus, "
        f"{args.steps} steps × batch {args.batch} × {args.block} tokens, seeds {args.seeds}; "
        f"mean ± std over seeds. Total {total / 60:.1f} min wall.",
        "",
        "| arm | MaxVio_global (final) | val ppl (final) | median step (ms) | balancer overhead |",
        "|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        overhead = _fmt([100 * o for o in s["overhead"]]) + " %"
        lines.append(
            f"| {name} | {_fmt(s['maxvio_global'])} | {_fmt(s['val_ppl'], 3)} | "
            f"{_fmt(s['step_ms'], 0)} | {overhead} |"
        )
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, rs in results.items():
        steps = [c[0] for c in rs[0]["curve"]]
        vio = [statistics.mean(r["curve"][i][1] for r in rs) for i in range(len(steps))]
        ppl = [statistics.mean(r["curve"][i][2] for r in rs) for i in range(len(steps))]
        axes[0].plot(steps, vio, marker="o", label=name)
        axes[1].plot(steps, ppl, marker="o", label=name)
    axes[0].set(xlabel="step", ylabel="MaxVio_global (mean over layers)", title="Load balance")
    axes[1].set(xlabel="step", ylabel="validation perplexity", title="Quality", yscale="log")
    axes[0].legend()
    fig.tight_layout()
    _common.save_figure(fig, args.plot, dpi=120)


if __name__ == "__main__":
    main()
