"""Benchmark: auxiliary-loss-free MoE load balancing vs the Switch/Mixtral aux loss vs none.

*Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts* (Wang et al. 2024,
arXiv:2408.15664). A small MoE LM (the ``recipes/nlp/grammar_moe.yaml`` model, shrunk: Llama
attention, 2 layers, width 64, 8 experts, top-2, sigmoid gating) on the bundled grammar corpus,
3 seeds, an equal step budget, five arms:

* ``none``: no balancing (``LossFreeBalancing(update=False)`` only measures the loads);
* ``aux 0.01`` / ``aux 0.1``: the Switch/Mixtral balance loss with that coefficient;
* ``loss-free u``: ``LossFreeBalancing(rate=u)``, u = 0.001 (the paper's) and 0.01 (short runs).

Shrunk to fit 10 min single-thread: 200 steps × 16 sequences × 32 tokens (~100k tokens per run).

Measured: MaxVio_global (mean over layers, on the validation split) at every validation, the
final validation perplexity, and the callback's overhead (time in its hooks / time per step).

``--regime paper``: the paper's regime on real text — about 2k tokens a step (16 × 128), 800
steps, the same five arms and model (``--width`` 64; on CPU a step's time is overhead-bound, so a
narrower model saves little). Training text: the docstrings of the Python standard library (real
English prose by many authors, parsed from the installed sources, nothing downloaded), split by
paragraph; MaxVio_global and perplexity are measured every ``--eval-every`` steps, with the
balancer's biases frozen, on (a) held-out paragraphs of the same docstrings (the training
distribution), (b) the licence texts of the installed Python packages (other authors, another
genre: a distribution shift) and (c) the recipe's synthetic grammar corpus (a strong shift).
Writes ``moe_balancing_long.{json,md}`` and ``docs/assets/moe_balancing_long.png``; 15 runs of
70–130 s each single-thread on a quiet machine (about 25 minutes; 56 under heavy load).
``--arms`` runs only the named arms, e.g. ``--steps 1600 --arms "loss-free u=0.001" "aux 0.1"
--name moe_balancing_1600`` (``benchmarks/results/moe_balancing_1600.*``: 6 runs of 140–820 s,
44 minutes under load).

Run: ``OMP_NUM_THREADS=1 python benchmarks/moe_balancing.py [--steps 200 --seeds 0 1 2]``;
writes ``benchmarks/results/moe_balancing.{json,md}`` and ``docs/assets/moe_balancing.png``;
``--smoke --out DIR``: a few steps per arm of both regimes, everything in ``DIR`` (see
``benchmarks/_common.py``).
"""

from __future__ import annotations

import ast
import copy
import json
import math
import random
import re
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import _common
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_losses.callbacks import LossFreeBalancing, max_violation
from lightning_losses.data import TextDataModule
from lightning_losses.data.grammar import generate_corpus
from lightning_losses.nn import moe_balance_state
from lightning_losses.recipes.nlp import CausalLM


class Probe(Callback):
    """Records MaxVio_global / val ppl per validation, step times and the balancer's hook time."""

    def __init__(
        self,
        balancer: LossFreeBalancing,
        eval_sets: dict[str, list[dict]] | None = None,
        eval_every: int = 0,
    ) -> None:
        self.bal = balancer
        self.curve: list[tuple[int, float, float]] = []
        # paper regime: {set name: [(step, MaxVio_global mean, max over layers, ppl), ...]}
        self.eval_sets = eval_sets or {}
        self.eval_every = eval_every
        self.eval_curves: dict[str, list[tuple[int, float, float, float]]] = {
            name: [] for name in self.eval_sets
        }
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
        self.step_times.append(time.perf_counter() - self._t0)  # before any evaluation
        step = trainer.global_step
        # Every `eval_every` steps, plus two early points (the initial imbalance) and the end.
        early = (self.eval_every // 4, self.eval_every // 2)
        if self.eval_sets and (
            step % self.eval_every == 0 or step in early or step == trainer.max_steps
        ):
            for name, batches in self.eval_sets.items():
                self.eval_curves[name].append((step, *measure(pl_module, batches)))

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        if "val/ppl" in m and "moe/maxvio_global" in m:
            self.curve.append(
                (trainer.global_step, float(m["moe/maxvio_global"]), float(m["val/ppl"]))
            )


def run_arm(
    arm: dict,
    seed: int,
    args,
    tok_dir: str,
    corpora: dict | None = None,
    eval_sets: dict[str, list[dict]] | None = None,
) -> dict:
    """Train one arm; ``corpora``/``eval_sets`` given: the paper regime (probe-only evaluation)."""
    seed_everything(seed, verbose=False)
    paper = corpora is not None
    width = args.width if paper else 64
    model = CausalLM(
        model_type="llama_moe",
        vocab_size=args.vocab,
        hidden_size=width,
        num_layers=2,
        num_heads=4,
        max_position_embeddings=args.block,
        model_config=dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=2 * width),
        balance_loss_coeff=arm["aux"],
        lr=3e-3,
        warmup_steps=20,
    )
    text = (
        {"path": corpora["train"]["path"], "val_path": corpora["held-out (train dist.)"]["path"]}
        if paper
        else {"num_docs": args.docs}
    )
    dm = TextDataModule(
        **text,
        block_size=args.block,
        vocab_size=args.vocab,
        batch_size=args.batch,
        tokenizer_dir=tok_dir,
        seed=0,
    )
    balancer = LossFreeBalancing(rate=arm["rate"], update=arm["rate"] > 0, log_expert_load=False)
    probe = Probe(balancer, eval_sets, args.eval_every if paper else 0)
    trainer = Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        val_check_interval=None if paper else args.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=0 if paper else args.val_batches,  # the paper regime: probe only
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
    out = {
        "step_ms": 1e3 * statistics.median(steps),
        "overhead": probe.cb_time / sum(probe.step_times),
        "wall_s": wall,
    }
    if paper:
        out["curves"] = probe.eval_curves
        for name, curve in probe.eval_curves.items():
            out[name] = {
                "maxvio_global": curve[-1][1],
                "maxvio_max": curve[-1][2],
                "ppl": curve[-1][3],
            }
        return out
    return {
        "curve": probe.curve,
        "maxvio_global": probe.curve[-1][1],
        "val_ppl": probe.curve[-1][2],
        **out,
    }


@torch.no_grad()
def measure(pl_module, batches: list[dict]) -> tuple[float, float, float]:
    """MaxVio_global (mean and max over layers) and perplexity of the model on ``batches``.

    The routers count every forward; the training step's pending counts are set aside and put
    back, so the balancer's next update is unaffected. No bias moves (no optimizer step).
    """
    states = moe_balance_state(pl_module)
    saved = [s.load.counts.clone() for s in states]
    for s in states:
        s.load.zero()
    was_training = pl_module.training
    pl_module.eval()
    nll, tokens = 0.0, 0
    for b in batches:
        logits = pl_module(b["input_ids"].to(pl_module.device))
        labels = b["labels"].to(logits.device)
        nll += float(
            F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="sum")
        )
        tokens += labels.numel()
    counts = torch.stack([s.load.counts.float() for s in states])
    for s, c in zip(states, saved, strict=True):
        s.load.counts = c
    pl_module.train(was_training)
    vio = max_violation(counts)
    return float(vio.mean()), float(vio.max()), math.exp(nll / tokens)


def _paragraphs(text: str, min_chars: int = 60) -> list[str]:
    """Blank-line separated paragraphs, whitespace joined; doctest code and short lines dropped."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        para = " ".join(para.split())
        if len(para) >= min_chars and ">>>" not in para:
            out.append(para)
    return out


def stdlib_docstrings(max_files: int | None = None) -> list[str]:
    """Paragraphs of every docstring of the installed Python standard library (no test suites).

    Parsed with ``ast`` (nothing is imported); deduplicated, in file order. ``max_files``: only
    the first files (smoke runs).
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test"}
    paragraphs: list[str] = []
    files = [p for p in sorted(root.rglob("*.py")) if not skip & set(p.relative_to(root).parts)]
    for path in files[:max_files]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    paragraphs += _paragraphs(doc)
    return list(dict.fromkeys(paragraphs))


def licence_texts() -> list[str]:
    """Paragraphs of the licence files shipped in the installed packages' ``*.dist-info``."""
    root = Path(sysconfig.get_paths()["purelib"])
    paragraphs: list[str] = []
    for path in sorted(root.glob("*.dist-info/**/*")):
        if not re.match(r"(licen[cs]e|copying)", path.name, re.IGNORECASE) or not path.is_file():
            continue
        try:
            paragraphs += _paragraphs(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return list(dict.fromkeys(paragraphs))


def paper_corpora(folder: Path, smoke: bool) -> dict:
    """Write the training text and the three evaluation texts into ``folder``; their sizes.

    Returns:
        ``{name: {"path", "paragraphs", "chars"}}`` for ``train``, ``held-out (train dist.)``,
        ``licences (shift)`` and ``grammar (strong shift)``.
    """
    docs = stdlib_docstrings(40 if smoke else None)
    order = list(range(len(docs)))
    random.Random(0).shuffle(order)
    n_val = max(1, round(0.05 * len(docs)))
    texts = {
        "train": [docs[i] for i in sorted(order[n_val:])],
        "held-out (train dist.)": [docs[i] for i in sorted(order[:n_val])],
        "licences (shift)": licence_texts()[: 60 if smoke else None],
        "grammar (strong shift)": generate_corpus(40 if smoke else 400, seed=1).split("\n\n"),
    }
    out = {}
    for i, (name, paragraphs) in enumerate(texts.items()):
        path = folder / f"text{i}.txt"
        path.write_text("\n\n".join(p.strip() for p in paragraphs if p.strip()) + "\n")
        out[name] = {
            "path": str(path),
            "paragraphs": len(paragraphs),
            "chars": sum(map(len, paragraphs)),
        }
    return out


def eval_batches(corpora: dict, args, tok_dir: str) -> dict[str, list[dict]]:
    """The first ``--eval-batches`` batches of every evaluation text, tokenized like training."""
    sets = {}
    for name, info in corpora.items():
        if name == "train":
            continue
        dm = TextDataModule(
            path=corpora["train"]["path"],  # the same tokenizer (cached by the training text)
            val_path=info["path"],
            val_fraction=0.0,
            block_size=args.block,
            vocab_size=args.vocab,
            batch_size=args.batch,
            tokenizer_dir=tok_dir,
        )
        dm.setup("fit")
        batches = []
        for b in dm.val_dataloader():
            if len(batches) == args.eval_batches:
                break
            batches.append(b)
        sets[name] = batches
    return sets


def _fmt(xs: list[float], digits: int = 2) -> str:
    m = statistics.mean(xs)
    s = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def short_regime(args, arms: dict) -> None:
    """The original short run: grammar corpus, Lightning validation for the curve."""
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


PAPER = {  # the paper's regime: ~2k tokens a step, 800 steps
    "steps": 800,
    "block": 128,
    "batch": 16,
    "vocab": 1024,
}


def paper_regime(args, arms: dict) -> None:
    """Real text, ~2k tokens a step, 800 steps; MaxVio on held-out and shifted text.

    Runs seed by seed, the loss-free arms first; the JSON is rewritten after every run, so an
    interrupted run keeps what finished (``--report-only`` rebuilds the table and figure).
    """
    start = time.perf_counter()
    json_path = _common.output(args, ".json")
    order = sorted(arms, key=lambda name: arms[name]["rate"] == 0)  # loss-free arms first
    with tempfile.TemporaryDirectory() as tmp:
        corpora = paper_corpora(Path(tmp), args.smoke)
        eval_sets = eval_batches(corpora, args, tmp)
        info = {k: {"paragraphs": v["paragraphs"], "chars": v["chars"]} for k, v in corpora.items()}
        payload = {
            "config": vars(args),
            "corpora": info,
            "eval_sets": list(eval_sets),
            "eval_tokens_per_set": args.eval_batches * args.batch * args.block,
            "runs": {name: [] for name in arms},
        }
        for seed in args.seeds:
            for name in order:
                r = run_arm(arms[name], seed, args, tmp, corpora, eval_sets)
                payload["runs"][name].append({"seed": seed, **r})
                payload["total_s"] = time.perf_counter() - start
                paper_summary(payload)
                _common.write_json(json_path, payload)
                sets = "  ".join(
                    f"{k.split()[0]} {r[k]['maxvio_global']:.3f}/{r[k]['ppl']:.2f}"
                    for k in eval_sets
                )
                print(
                    f"{name:>18} seed {seed}: MaxVio/ppl {sets}  step {r['step_ms']:.0f} ms "
                    f"overhead {100 * r['overhead']:.2f}% wall {r['wall_s']:.0f}s",
                    flush=True,
                )
    paper_report(payload, args)


def paper_summary(payload: dict) -> None:
    """Per arm (with at least one run): the final values per evaluation text, over seeds."""
    payload["summary"] = {
        name: {
            **{
                f"{key} | {k}": [r[k][key] for r in rs]
                for k in payload["eval_sets"]
                for key in ("maxvio_global", "maxvio_max", "ppl")
            },
            "step_ms": [r["step_ms"] for r in rs],
            "overhead": [r["overhead"] for r in rs],
            "seeds": [r["seed"] for r in rs],
        }
        for name, rs in payload["runs"].items()
        if rs
    }


def paper_report(payload: dict, args) -> None:
    """The markdown table and the figure of a (possibly partial) paper-regime JSON."""
    paper_summary(payload)
    summary, total = payload["summary"], payload["total_s"]
    corpora, set_names = payload["corpora"], payload["eval_sets"]
    results = {name: rs for name, rs in payload["runs"].items() if rs}
    _common.write_json(_common.output(args, ".json"), payload)
    a, b, c = set_names
    seeds = sorted({seed for sm in summary.values() for seed in sm["seeds"]})
    lines = [
        f"MoE LM (2 layers, width {args.width}, 8 experts, top-2, sigmoid gating), "
        f"{args.steps} steps × {args.batch} × {args.block} tokens "
        f"({args.batch * args.block} tokens a step), vocabulary {args.vocab} (BPE trained on the "
        f"training text), seeds {seeds} (per arm: the n column); mean ± sd over seeds. "
        "Training text: Python standard-library docstrings "
        f"({corpora['train']['chars'] / 1e6:.2f} M characters). "
        f"MaxVio_global (mean over the 2 layers) and perplexity at the last step, each on "
        f"{args.eval_batches * args.batch * args.block} tokens of: (a) held-out docstring "
        "paragraphs (training distribution), (b) licence texts of the installed packages "
        "(shift), (c) the synthetic grammar corpus (strong shift). Biases frozen during "
        f"measurement. Total {total / 60:.1f} min wall.",
        "",
        "| arm | n | MaxVio (a) held-out | MaxVio (b) licences | MaxVio (c) grammar | ppl (a) | "
        "ppl (b) | median step (ms) | balancer overhead |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sm in summary.items():
        overhead = _fmt([100 * o for o in sm["overhead"]]) + " %"
        lines.append(
            f"| {name} | {len(sm['seeds'])} | {_fmt(sm[f'maxvio_global | {a}'], 3)} | "
            f"{_fmt(sm[f'maxvio_global | {b}'], 3)} | {_fmt(sm[f'maxvio_global | {c}'], 3)} | "
            f"{_fmt(sm[f'ppl | {a}'])} | {_fmt(sm[f'ppl | {b}'])} | "
            f"{_fmt(sm['step_ms'], 0)} | {overhead} |"
        )
    lines += [
        "",
        "MaxVio_global over training (mean over seeds; (a) / (b) / (c)):",
        "",
        "| arm | "
        + " | ".join(f"step {c[0]}" for c in next(iter(results.values()))[0]["curves"][a])
        + " |",
        "|---|" + "---|" * len(next(iter(results.values()))[0]["curves"][a]),
    ]
    for name, rs in results.items():
        cells = []
        for i in range(len(rs[0]["curves"][a])):
            vals = [statistics.mean(r["curves"][k][i][1] for r in rs) for k in set_names]
            cells.append(" / ".join(f"{v:.2f}" for v in vals))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), sharey=True)
    for ax, k in zip(axes, set_names, strict=True):
        for name, rs in results.items():
            steps = [point[0] for point in rs[0]["curves"][k]]
            vio = [[r["curves"][k][i][1] for r in rs] for i in range(len(steps))]
            mean = [statistics.mean(v) for v in vio]
            ax.plot(steps, mean, marker="o", ms=3, label=name)
            if len(rs) > 1:
                ax.fill_between(steps, [min(v) for v in vio], [max(v) for v in vio], alpha=0.15)
        ax.set(xlabel="step", title=f"MaxVio_global on {k}", yscale="log")
    axes[0].set_ylabel("MaxVio_global (mean over layers)")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Paper regime: {args.batch * args.block} tokens/step, width {args.width}; mean over "
        "seeds, band = min–max"
    )
    fig.tight_layout()
    _common.save_figure(fig, args.plot, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = _common.make_parser(__doc__, "moe_balancing", plot=True)
    p.add_argument(
        "--regime",
        choices=["short", "paper"],
        default="short",
        help="short: 200 steps × 512 tokens on the grammar corpus; paper: ~2k tokens × 800 "
        "steps on real text, MaxVio on held-out and shifted text (outputs moe_balancing_long.*)",
    )
    p.add_argument("--steps", type=int, default=None, help="default 200 (short) / 800 (paper)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--block", type=int, default=None, help="default 32 (short) / 128 (paper)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--docs", type=int, default=1500, help="grammar documents (short)")
    p.add_argument("--vocab", type=int, default=None, help="default 512 (short) / 1024 (paper)")
    p.add_argument("--val-every", type=int, default=40, help="short regime")
    p.add_argument("--val-batches", type=int, default=6, help="short regime")
    p.add_argument("--width", type=int, default=64, help="paper regime: model width")
    p.add_argument("--eval-every", type=int, default=200, help="paper regime")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="paper regime: rebuild the table and figure from the (possibly partial) JSON",
    )
    p.add_argument("--eval-batches", type=int, default=8, help="paper regime, per text")
    p.add_argument("--rates", type=float, nargs="+", default=[1e-3, 1e-2], help="loss-free u")
    p.add_argument(
        "--arms",
        nargs="+",
        default=None,
        metavar="ARM",
        help="run only these arms, by name: 'none', 'aux 0.01', 'aux 0.1', 'loss-free u=<u>' "
        "(one per --rates value); default: all",
    )
    args = _common.parse(p, argv)
    torch.set_num_threads(1)
    arms = {
        "none": {"aux": 0.0, "rate": 0.0},
        "aux 0.01": {"aux": 0.01, "rate": 0.0},
        "aux 0.1": {"aux": 0.1, "rate": 0.0},
        **{f"loss-free u={u:g}": {"aux": 0.0, "rate": u} for u in args.rates},
    }
    if args.arms is not None:
        unknown = [name for name in args.arms if name not in arms]
        if unknown:
            p.error(f"--arms: unknown arm(s) {unknown}; choose from {list(arms)}")
        arms = {name: arm for name, arm in arms.items() if name in args.arms}
    regimes = ["short", "paper"] if args.smoke else [args.regime]  # a smoke run checks both
    for regime in regimes:
        run_args = copy.copy(args)
        defaults = PAPER if regime == "paper" else {"steps": 200, "block": 32, "vocab": 512}
        for key, value in defaults.items():
            if getattr(run_args, key) is None:
                setattr(run_args, key, value)
        if regime == "paper" and args.name == "moe_balancing":
            run_args.name = "moe_balancing_long"
            if args.plot.name == "moe_balancing.png":
                run_args.plot = args.plot.with_name("moe_balancing_long.png")
        if args.smoke:  # every arm kind (one loss-free rate), 4 steps, 2 measurements
            run_args.steps, run_args.seeds, run_args.block, run_args.batch = 4, [0], 16, 4
            run_args.docs, run_args.vocab, run_args.width = 200, 300, 16
            run_args.val_every, run_args.val_batches, run_args.rates = 2, 1, [1e-2]
            run_args.eval_every, run_args.eval_batches = 2, 1
            # all arms: one loss-free rate is enough; arms chosen with --arms: exactly those
            arms_now = arms
            if args.arms is None:
                arms_now = {k: v for k, v in arms.items() if v["rate"] in (0.0, 1e-2)}
        else:
            arms_now = arms
        if regime == "paper" and args.report_only:
            paper_report(json.loads(_common.output(run_args, ".json").read_text()), run_args)
        else:
            (paper_regime if regime == "paper" else short_regime)(run_args, arms_now)


if __name__ == "__main__":
    main()
