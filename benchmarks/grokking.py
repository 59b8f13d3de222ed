"""Effect benchmark: ⊥Grad and StableMax on modular addition (grokking), vs AdamW ± weight decay.

The setting of *Grokking at the Edge of Numerical Stability* (Prieto et al., ICLR 2025,
arXiv:2501.04697) as in the authors' code (`LucasPrietoAl/grokking-at-the-edge-of-numerical-
stability`, Figure 1's ⊥Grad run): all pairs $(a, b)$ of $\\mathbb{Z}_p$ ($p = 113$), label
$(a + b) \\bmod p$, 40 % of the pairs for training (full batch), the rest for test; one-hot
$a$ and $b$ concatenated into an MLP with two hidden layers of 200 ReLU units and no biases;
AdamW (lr $10^{-2}$, β = (0.9, 0.99), ε = $10^{-25}$), float32. Arms: softmax cross-entropy with
weight decay 0 and 1, StableMax cross-entropy (`stablemax` in the registry), and ⊥Grad
(`perpendicular_gradient`, the core of the `PerpGrad` callback, applied to every parameter's
gradient before each AdamW step, rescaled to the gradient's norm as in the authors' code) with
both losses, all without weight decay unless stated. The authors' settings for every arm; no
tuning. The step budget is far below the paper's baselines (tens of thousands of epochs), so a
baseline that has not generalised here may still do so later: the benchmark measures how fast
⊥Grad generalises, not whether the baselines ever do.

Reported per arm over 3 seeds: the number of steps until the test accuracy first reaches 90 %
(evaluated every `--eval-every` steps; "not reached" within `--steps`), the final train and
test accuracy, and whether the logits hit the float32 softmax floor (the "softmax collapse" the
paper describes: a softmax cross-entropy of exactly 0 for some training samples; measured with
softmax for every arm, so for the StableMax arms it says how large the logits grew).

Run: ``python benchmarks/grokking.py`` (about 15-40 min on one CPU thread, depending on load).
Writes ``benchmarks/results/grokking.{json,md}`` and ``docs/assets/grokking.png`` (test accuracy
curves); ``--smoke --out DIR``: every arm for a few steps, everything in ``DIR``. Guide:
``docs/guide/procedures.md``.
"""

from __future__ import annotations

import platform
import statistics
import time

import _common
import torch
import torch.nn.functional as F
from torch import nn

from lightning_losses.callbacks import perpendicular_gradient
from lightning_losses.functional import stablemax_cross_entropy

# (label, loss, weight decay, ⊥Grad)
ARMS: list[tuple[str, str, float, bool]] = [
    ("AdamW, CE", "ce", 0.0, False),
    ("AdamW wd=1, CE", "ce", 1.0, False),
    ("AdamW, StableMax", "stablemax", 0.0, False),
    ("⊥Grad AdamW, CE", "ce", 0.0, True),
    ("⊥Grad AdamW, StableMax", "stablemax", 0.0, True),
]
THRESHOLD = 0.9
HIDDEN = 200  # the authors' two hidden layers of 200 units


def dataset(p: int, train_fraction: float, seed: int):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], dim=1).float()
    y = (a + b) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n = int(train_fraction * p * p)
    return x[perm[:n]], y[perm[:n]], x[perm[n:]], y[perm[n:]]


def loss_fn(name: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "stablemax":
        return stablemax_cross_entropy(logits, y)
    return F.cross_entropy(logits, y)


def run(arm: tuple[str, str, float, bool], seed: int, args) -> dict:
    _, loss_name, wd, perp = arm
    x, y, xt, yt = dataset(args.p, 0.4, seed)
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Linear(2 * args.p, HIDDEN, bias=False),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN, bias=False),
        nn.ReLU(),
        nn.Linear(HIDDEN, args.p, bias=False),
    )
    opt = torch.optim.AdamW(
        net.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-25, weight_decay=wd
    )
    curve, reached, collapsed = [], None, False
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        logits = net(x)
        loss = loss_fn(loss_name, logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if perp:
            with torch.no_grad():
                for p_ in net.parameters():
                    p_.grad.copy_(perpendicular_gradient(p_, p_.grad))
        opt.step()
        if step % args.eval_every == 0 or step == args.steps:
            with torch.no_grad():
                per = F.cross_entropy(logits.detach(), y, reduction="none")
                collapsed = collapsed or bool((per == 0).any())
                train_acc = (logits.argmax(-1) == y).float().mean().item()
                test_acc = (net(xt).argmax(-1) == yt).float().mean().item()
            curve.append((step, train_acc, test_acc))
            if reached is None and test_acc >= THRESHOLD:
                reached = step
    return {
        "steps_to_generalise": reached,
        "train_acc": curve[-1][1],
        "test_acc": curve[-1][2],
        "softmax_collapse": collapsed,
        "curve": curve,
        "seconds": time.perf_counter() - start,
    }


def _fmt_steps(values: list[int | None]) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "not reached"
    text = f"{statistics.fmean(got):.0f}"
    if len(got) > 1:
        text += f" ± {statistics.stdev(got):.0f}"
    if len(got) < len(values):
        text += f" ({len(got)}/{len(values)} seeds)"
    return text


def markdown(results: dict, meta: dict) -> str:
    lines = [
        f"# Grokking on modular addition (p = {meta['p']}, {len(meta['seeds'])} seeds, "
        f"{meta['steps']} full-batch steps)",
        "",
        "| arm | steps to 90 % test acc | final train acc | final test acc | softmax collapse |",
        "|---|---|---|---|---|",
    ]
    for arm, runs in results.items():
        tr = [r["train_acc"] for r in runs]
        te = [r["test_acc"] for r in runs]
        lines.append(
            f"| {arm} | {_fmt_steps([r['steps_to_generalise'] for r in runs])} | "
            f"{100 * statistics.fmean(tr):.1f} | {100 * statistics.fmean(te):.1f} | "
            f"{sum(r['softmax_collapse'] for r in runs)}/{len(runs)} seeds |"
        )
    lines += ["", f"Machine: {meta['machine']}; {meta['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, (arm, runs) in enumerate(results.items()):
        for i, r in enumerate(runs):
            steps = [c[0] for c in r["curve"]]
            ax.plot(
                steps,
                [100 * c[2] for c in r["curve"]],
                color=f"C{k}",
                alpha=0.8,
                label=arm if i == 0 else None,
            )
    ax.axhline(100 * THRESHOLD, color="grey", lw=0.8, ls=":")
    ax.set(
        xlabel="full-batch optimizer steps",
        ylabel="test accuracy (%)",
        title="modular addition: test accuracy per seed",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _common.save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "grokking", plot=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--p", type=int, default=113)
    args = _common.parse(parser, argv)
    if args.smoke:  # every arm, a few steps on a small modulus
        args.seeds, args.steps, args.eval_every, args.p = [0], 20, 10, 23
    torch.set_num_threads(1)
    start = time.perf_counter()
    results: dict[str, list[dict]] = {}
    for arm in ARMS:
        results[arm[0]] = [run(arm, seed, args) for seed in args.seeds]
        print(
            f"{arm[0]:24s} steps={_fmt_steps([r['steps_to_generalise'] for r in results[arm[0]]])}"
            f" test={statistics.fmean(r['test_acc'] for r in results[arm[0]]):.3f}",
            flush=True,
        )
    meta = {
        "p": args.p,
        "train_fraction": 0.4,
        "seeds": args.seeds,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "threshold": THRESHOLD,
        "seconds": time.perf_counter() - start,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread, "
        f"torch {torch.__version__}",
        "smoke": args.smoke,
    }
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "results": results})
    _common.output(args, ".md").write_text(markdown(results, meta))
    plot(results, args.plot)
    print(f"done in {meta['seconds']:.0f} s -> {_common.output(args, '.md')}")


if __name__ == "__main__":
    main()
