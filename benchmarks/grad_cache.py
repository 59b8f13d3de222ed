"""Cost benchmark: GradCache vs full-batch backprop for a two-tower InfoNCE at the same batch size.

*Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup* (Gao et al., RepL4NLP
2021, arXiv:2101.06983). Two MLP towers (6 layers of width 512, GELU, LayerNorm, dropout 0.1)
encode a batch of query and key vectors; the loss is InfoNCE over the whole batch. Compared, at
the same batch: one full-batch forward/backward vs `grad_cache_loss` with several chunk sizes.

Reported: the peak memory of the tensors saved for backward (activation memory, measured exactly
with `torch.autograd.graph.saved_tensors_hooks`: the bytes alive at the peak, per step; on a CPU
this is the part GradCache reduces, the parameters and the representation cache being the same
or tiny), the time per step (median of `--repeats`, ratio to full batch: GradCache runs every
encoder forward twice, so ≈ 4/3 of the full batch's compute is expected), and the largest
absolute difference between the parameter gradients of the two (dropout replayed from the same
seed, so the gradients must agree to float32 round-off).

Run: ``python benchmarks/grad_cache.py`` (≈ 1 min). Writes
``benchmarks/results/grad_cache.{json,md}``
and ``docs/assets/grad_cache.png``; ``--smoke --out DIR``: tiny sizes, everything in ``DIR``.
Guide: ``docs/guide/procedures.md``.
"""

from __future__ import annotations

import platform
import statistics
import time
import weakref
from collections.abc import Callable

import _common
import torch
from torch import nn

from lightning_losses.functional import info_nce_loss
from lightning_losses.nn import grad_cache_loss


def tower(width: int, depth: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(64, width)]
    for _ in range(depth - 1):
        layers += [nn.LayerNorm(width), nn.GELU(), nn.Dropout(0.1), nn.Linear(width, width)]
    return nn.Sequential(*layers)


class _Held:
    __slots__ = ("__weakref__", "size", "tensor")

    def __init__(self, tensor: torch.Tensor, size: int) -> None:
        self.tensor, self.size = tensor, size


class SavedBytes:
    """Bytes of the tensors saved for backward that are alive, and their peak.

    Each saved tensor is wrapped in a small holder; the holder dies when autograd frees the
    saved tensor (after its node's backward), which releases its bytes.
    """

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    def _release(self, size: int) -> None:
        self.current -= size

    def pack(self, t: torch.Tensor) -> _Held:
        size = t.numel() * t.element_size()
        self.current += size
        self.peak = max(self.peak, self.current)
        held = _Held(t, size)
        weakref.finalize(held, self._release, size)
        return held

    def unpack(self, held: _Held) -> torch.Tensor:
        return held.tensor


def measure(step: Callable[[], None], repeats: int) -> tuple[float, int]:
    counter = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        times = []
        peak = 0
        for _ in range(repeats):
            counter.peak = counter.current
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
            peak = max(peak, counter.peak)
    return 1000 * statistics.median(times), peak


def main(argv: list[str] | None = None) -> None:
    parser = _common.make_parser(__doc__, "grad_cache", plot=True)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    args = _common.parse(parser, argv)
    if args.smoke:
        args.batch, args.chunks, args.width, args.depth, args.repeats = 32, [8], 32, 2, 1
    torch.set_num_threads(1)
    start_all = time.perf_counter()
    q_enc, k_enc = tower(args.width, args.depth, 0), tower(args.width, args.depth, 1)
    params = [*q_enc.parameters(), *k_enc.parameters()]
    g = torch.Generator().manual_seed(0)
    xq, xk = torch.randn(args.batch, 64, generator=g), torch.randn(args.batch, 64, generator=g)

    def loss_fn(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return info_nce_loss(q, k, temperature=0.05)

    def full_step() -> None:
        for p in params:
            p.grad = None
        loss_fn(q_enc(xq), k_enc(xk)).backward()

    def cached_step(chunk: int) -> Callable[[], None]:
        def step() -> None:
            for p in params:
                p.grad = None
            grad_cache_loss([q_enc, k_enc], [xq, xk], loss_fn, chunk_size=chunk).backward()

        return step

    def grads_of(step: Callable[[], None]) -> list[torch.Tensor]:
        torch.manual_seed(7)
        step()
        return [p.grad.clone() for p in params]

    # Exactness with dropout: the full batch is encoded chunk by chunk from the same seed, so
    # both draw the same masks (a one-shot full-batch forward draws them in another order).
    rows = []
    full_ms, full_peak = measure(full_step, args.repeats)
    rows.append(
        {
            "method": "full batch",
            "chunk": args.batch,
            "step_ms": full_ms,
            "saved_mib": full_peak / 2**20,
            "max_grad_diff": 0.0,
        }
    )
    for chunk in args.chunks:

        def chunked_full(chunk: int = chunk) -> None:
            for p in params:
                p.grad = None
            q = torch.cat([q_enc(c) for c in xq.split(chunk)])
            k = torch.cat([k_enc(c) for c in xk.split(chunk)])
            loss_fn(q, k).backward()

        ref = grads_of(chunked_full)
        ours = grads_of(cached_step(chunk))
        diff = max(float((a - b).abs().max()) for a, b in zip(ours, ref, strict=True))
        ms, peak = measure(cached_step(chunk), args.repeats)
        rows.append(
            {
                "method": "GradCache",
                "chunk": chunk,
                "step_ms": ms,
                "saved_mib": peak / 2**20,
                "max_grad_diff": diff,
            }
        )
    for row in rows:
        row["time_ratio"] = row["step_ms"] / full_ms
        row["memory_ratio"] = row["saved_mib"] / rows[0]["saved_mib"]
        print(row, flush=True)
    meta = {
        "batch": args.batch,
        "width": args.width,
        "depth": args.depth,
        "repeats": args.repeats,
        "seconds": time.perf_counter() - start_all,
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread, "
        f"torch {torch.__version__}",
        "smoke": args.smoke,
    }
    _common.write_json(_common.output(args, ".json"), {"meta": meta, "rows": rows})
    lines = [
        f"# GradCache vs full batch (two towers, batch {args.batch}, width {args.width}, "
        f"depth {args.depth})",
        "",
        "| method | chunk | step (ms) | time ratio | saved activations (MiB) | memory ratio | "
        "max grad diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['chunk']} | {r['step_ms']:.1f} | {r['time_ratio']:.2f} | "
            f"{r['saved_mib']:.1f} | {r['memory_ratio']:.3f} | {r['max_grad_diff']:.1e} |"
        )
    lines += ["", f"Machine: {meta['machine']}; {meta['seconds']:.0f} s."]
    _common.output(args, ".md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    labels = [f"{r['method']}\n{r['chunk']}" for r in rows]
    ax.bar(labels, [r["saved_mib"] for r in rows], color=["C0"] + ["C1"] * len(args.chunks))
    for i, r in enumerate(rows):
        ax.annotate(
            f"×{r['time_ratio']:.2f} time",
            (i, r["saved_mib"]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set(ylabel="peak saved activations (MiB)", title=f"batch {args.batch}: memory and time")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    _common.save_figure(fig, args.plot)
    print(f"done in {meta['seconds']:.0f} s -> {_common.output(args, '.md')}")


if __name__ == "__main__":
    main()
