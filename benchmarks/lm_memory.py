"""Peak memory and time of the LM-head cross-entropy: naive autograd vs the chunked linear CE.

*Naive* is `F.cross_entropy(h @ W.T, y)` through autograd (the `[B·T, V]` logits, their
log-softmax and their gradient all exist at once); *chunked* is
`lightning_losses.functional.chunked_linear_cross_entropy` (default chunk: about 2^24 logits).
Both run forward + backward w.r.t. the hidden states `[B·T, H]` and the weight `[V, H]`, float32,
10 % of the targets ignored, side by side in one process, alternating call by call, one intra-op
thread by default.

Memory on CPU:
- *saved*: bytes of the tensors autograd keeps for backward (`saved_tensors_hooks`, distinct
  storages, the inputs `h`, `W` excluded);
- *peak*: the process's peak resident set size during forward + backward minus the resident size
  before it (Linux `VmHWM`, reset through `/proc/self/clear_refs`), so it includes every
  temporary and the gradients `dh`, `dW` (the same for both methods).
On CUDA also `torch.cuda.max_memory_allocated` during forward + backward minus the allocation
before it.

Points whose naive peak would exceed `--max-naive-gib` (default 8: the machine is shared) are
run for the chunked loss only; the naive estimate `≈ 3 · B·T·V · 4 bytes` (logits, log-softmax,
gradient) is then printed instead of a measurement, marked *est.* Anchor: Liger Kernel's
FusedLinearCrossEntropy reports 1.4× → 4.8× lower peak memory than naive at B·T = 4k → 32k,
V = 128k, H = 4096 on an A100 (arXiv:2410.10989, Figure/Table of the fused linear CE).

Run `python benchmarks/lm_memory.py` (about 5-10 min single-thread); writes
`benchmarks/results/lm_memory.{json,md}` and `docs/assets/lm_memory.png`; `--smoke --out DIR`:
a few seconds, everything in `DIR` (see `benchmarks/_common.py`).
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import time
from pathlib import Path

import _common
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.functional import chunked_linear_cross_entropy

MIB = 2**20


def naive(h: Tensor, w: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(h @ w.T, y)


def chunked(h: Tensor, w: Tensor, y: Tensor) -> Tensor:
    return chunked_linear_cross_entropy(h, w, y)


def chunked_none(h: Tensor, w: Tensor, y: Tensor) -> Tensor:
    # Per-token losses, as LossMixin requests them (the recompute-in-backward path), then the
    # token mean: the same objective and gradients as the two others.
    tok = chunked_linear_cross_entropy(h, w, y, reduction="none")
    return tok.sum() / (y != -100).sum()


METHODS = {"naive": naive, "chunked": chunked, "chunked_none": chunked_none}


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """glibc: serve every allocation ≥ 1 MiB by mmap, returned to the OS on free.

    Without it glibc raises its mmap threshold after each free (up to 32 MiB) and keeps freed
    blocks in its heap, so a later peak would not show in the resident size.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, nbytes)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(fn, h: Tensor, w: Tensor, y: Tensor, collect: bool = True) -> dict[str, float]:
    """One forward + backward: seconds, saved MiB, peak-RSS MiB (CPU) / peak allocated (CUDA)."""
    h.grad = w.grad = None
    if collect:
        gc.collect()
    inputs = {h.untyped_storage().data_ptr(), w.untyped_storage().data_ptr()}
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in inputs:
            storages[s.data_ptr()] = s.nbytes()
        return t

    cuda = h.is_cuda
    if cuda:
        torch.cuda.synchronize()
        base_alloc = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    base_rss = _status_kib("VmRSS")
    rss_ok = _reset_peak_rss()
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn(h, w, y)
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {
        "seconds": seconds,
        "saved_mib": sum(storages.values()) / MIB,
        "peak_rss_mib": (_status_kib("VmHWM") - base_rss) / 1024 if rss_ok else float("nan"),
        "loss": float(loss.detach()),
    }
    if cuda:
        out["cuda_peak_mib"] = (torch.cuda.max_memory_allocated() - base_alloc) / MIB
    del loss
    return out


def _ratio(a: float, b: float) -> float:
    # A peak below the resolution of the resident size (tiny smoke-run sizes, or memory that a
    # long-lived process already holds) reads 0: the ratio is then undefined, not an error.
    return a / b if b > 0 else float("nan")


def run_point(
    tokens: int,
    vocab: int,
    hidden: int,
    repeats: int,
    max_naive_gib: float,
    device: str,
    with_none: bool,
    collect: bool = True,
) -> dict:
    """One (tokens, vocab) point; ``collect=False`` skips the garbage collections that keep the
    resident size clean between measurements (0.6 s each in a large process, e.g. a test's)."""
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(tokens, hidden, generator=g) / hidden**0.25).to(device).requires_grad_(True)
    w = (torch.randn(vocab, hidden, generator=g) / hidden**0.25).to(device).requires_grad_(True)
    y = torch.randint(0, vocab, (tokens,), generator=g)
    y[torch.rand(tokens, generator=g) < 0.1] = -100
    y = y.to(device)
    naive_est_mib = 3 * tokens * vocab * 4 / MIB
    methods = ["chunked", "naive"] if naive_est_mib <= max_naive_gib * 1024 else ["chunked"]
    if with_none:
        methods.append("chunked_none")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    losses = {}
    for _ in range(repeats):
        for m in methods:  # alternate call by call
            r = measure(METHODS[m], h, w, y, collect)
            runs[m].append(r)
            losses[m] = r["loss"]
    row: dict = {"tokens": tokens, "vocab": vocab, "hidden": hidden, "repeats": repeats}
    for m, rs in runs.items():
        row[m] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "saved_mib": max(r["saved_mib"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
        if "cuda_peak_mib" in rs[0]:
            row[m]["cuda_peak_mib"] = max(r["cuda_peak_mib"] for r in rs)
    if "naive" in runs and "chunked_none" in runs:
        row["none_time_ratio"] = statistics.median(
            c["seconds"] / n["seconds"] for c, n in zip(runs["chunked_none"], runs["naive"])
        )
        row["none_peak_ratio"] = _ratio(
            row["chunked_none"]["peak_rss_mib"], row["naive"]["peak_rss_mib"]
        )
    if "naive" in runs:
        row["time_ratio"] = statistics.median(
            c["seconds"] / n["seconds"] for c, n in zip(runs["chunked"], runs["naive"])
        )
        row["peak_ratio"] = _ratio(row["chunked"]["peak_rss_mib"], row["naive"]["peak_rss_mib"])
        row["saved_ratio"] = _ratio(row["chunked"]["saved_mib"], row["naive"]["saved_mib"])
        row["loss_abs_diff"] = abs(losses["chunked"] - losses["naive"])
    else:
        row["naive_estimate_mib"] = naive_est_mib
        row["peak_ratio_vs_estimate"] = row["chunked"]["peak_rss_mib"] / naive_est_mib
    del h, w, y
    if collect:
        gc.collect()
    return row


def write_markdown(rows: list[dict], meta: dict, path: Path) -> None:
    lines = [
        "# LM-head cross-entropy memory: naive vs chunked linear CE",
        "",
        f"Forward + backward of the LM-head cross-entropy w.r.t. hidden states and weight, "
        f"H = {meta['hidden']}, float32, 10 % ignored targets, {meta['device']} "
        f"({meta['threads']} thread(s)), torch {meta['torch']}. *Peak* = peak RSS during "
        "forward + backward minus RSS before it (gradients included); *saved* = bytes autograd "
        "keeps for backward (inputs excluded). Ratios are chunked / naive (< 1 = chunked "
        "smaller / faster); time = median of the per-repeat ratios. *est.*: naive not run "
        f"(its ≈ 3·B·T·V·4 B would exceed {meta['max_naive_gib']} GiB on this shared machine); "
        "ratio against that estimate.",
        "",
        "| V | B·T | naive peak MiB | chunked peak MiB | peak × | naive saved MiB | "
        "chunked saved MiB | naive s | chunked s | time × |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["chunked"]
        if "naive" in r:
            n = r["naive"]
            lines.append(
                f"| {r['vocab']} | {r['tokens']} | {n['peak_rss_mib']:.0f} | "
                f"{c['peak_rss_mib']:.0f} | {r['peak_ratio']:.3f} | {n['saved_mib']:.0f} | "
                f"{c['saved_mib']:.1f} | {n['seconds']:.2f} | {c['seconds']:.2f} | "
                f"{r['time_ratio']:.2f} |"
            )
        else:
            lines.append(
                f"| {r['vocab']} | {r['tokens']} | ≈{r['naive_estimate_mib']:.0f} est. | "
                f"{c['peak_rss_mib']:.0f} | ≈{r['peak_ratio_vs_estimate']:.3f} est. | — | "
                f"{c['saved_mib']:.1f} | — | {c['seconds']:.2f} | — |"
            )
    nones = [r for r in rows if "none_time_ratio" in r]
    if nones:
        lines += [
            "",
            '`reduction="none"` (per-token losses, the path LossMixin uses: gradients '
            "recomputed in the backward, 4 matmuls instead of 3), then the token mean:",
            "",
            "| V | B·T | chunked none peak MiB | peak × | chunked none s | time × |",
            "|---|---|---|---|---|---|",
        ]
        for r in nones:
            c = r["chunked_none"]
            lines.append(
                f"| {r['vocab']} | {r['tokens']} | {c['peak_rss_mib']:.0f} | "
                f"{r['none_peak_ratio']:.3f} | {c['seconds']:.2f} | {r['none_time_ratio']:.2f} |"
            )
    lines += [
        "",
        "Anchor (not run here: Triton/GPU): Liger Kernel's FusedLinearCrossEntropy, 1.4× → 4.8× "
        "lower peak memory than naive at B·T 4k → 32k, V = 128k, H = 4096 (arXiv:2410.10989).",
        "",
    ]
    path.write_text("\n".join(lines))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(10, 4))
    vocabs = sorted({r["vocab"] for r in rows})
    for vocab, marker in zip(vocabs, "os^vD" * len(vocabs)):
        pts = [r for r in rows if r["vocab"] == vocab]
        label_v = f"V={vocab // 1024}k"
        for method, style in (("naive", "--"), ("chunked", "-")):  # "none" rows: the table
            have = [r for r in pts if method in r]
            if not have:
                continue
            x = [r["tokens"] for r in have]
            ax_m.plot(
                x,
                [r[method]["peak_rss_mib"] for r in have],
                style,
                marker=marker,
                label=f"{method} {label_v}",
            )
            ax_t.plot(
                x,
                [r[method]["seconds"] for r in have],
                style,
                marker=marker,
                label=f"{method} {label_v}",
            )
        est = [r for r in pts if "naive_estimate_mib" in r]
        if est:
            ax_m.plot(
                [r["tokens"] for r in est],
                [r["naive_estimate_mib"] for r in est],
                ":",
                marker=marker,
                color="grey",
                label=f"naive {label_v} (est., not run)",
            )
    for ax, title, unit in ((ax_m, "peak memory (RSS delta)", "MiB"), (ax_t, "time", "s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens B·T")
        ax.set_ylabel(unit)
        ax.set_title(f"LM-head CE fwd+bwd: {title}")
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "lm_memory", plot=True)
    parser.add_argument("--vocab", type=int, nargs="+", default=[32768, 131072])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 8192, 16384])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--none-tokens",
        type=int,
        nargs="*",
        default=[4096],
        help="B·T points that also time reduction='none' (LossMixin's path)",
    )
    parser.add_argument("--max-naive-gib", type=float, default=8.0)
    parser.add_argument(
        "--max-chunked-tokens-128k",
        type=int,
        default=8192,
        help="largest B·T at V ≥ 128k (time budget on CPU)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plot", action="store_true")
    args = _common.parse(parser, argv)
    if args.smoke:  # one small vocabulary; the larger point too big for naive (estimate path)
        args.vocab, args.tokens, args.none_tokens = [512], [64, 128], [64]
        args.hidden, args.repeats, args.max_naive_gib = 16, 1, 0.0005
    torch.set_num_threads(args.threads)
    if not args.smoke:  # a smoke run may share its process (tests): leave its allocator alone
        _fixed_mmap_threshold()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    meta = {
        "device": f"{platform.machine()} CPU" if device == "cpu" else torch.cuda.get_device_name(),
        "threads": args.threads,
        "torch": torch.__version__,
        "hidden": args.hidden,
        "max_naive_gib": args.max_naive_gib,
        "smoke": args.smoke,
    }
    rows = []
    # Smallest points first, one at a time: the largest ones last.
    points = sorted(
        (
            (t, v)
            for v in args.vocab
            for t in args.tokens
            if v < 131072 or t <= args.max_chunked_tokens_128k
        ),
        key=lambda p: p[0] * p[1],
    )
    for tokens, vocab in points:
        reps = args.repeats if tokens * vocab <= 2**27 else max(1, args.repeats - 1)
        row = run_point(
            tokens,
            vocab,
            args.hidden,
            reps,
            args.max_naive_gib,
            device,
            with_none=tokens in args.none_tokens,
            collect=not args.smoke,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: (r["vocab"], r["tokens"]))
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "rows": rows})
    write_markdown(rows, meta, _common.output(args, ".md"))
    if not args.no_plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
