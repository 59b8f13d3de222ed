r"""GradCache: batch-contrastive losses over batches larger than memory (guide: procedures).

From *Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup* (Gao, Zhang, Han,
Callan; RepL4NLP 2021, arXiv:2101.06983). A contrastive loss couples every sample of the batch,
so the batch cannot simply be split into micro-batches. GradCache splits the *encoder* instead:

1. encode every chunk of `chunk_size` samples without a graph, giving the representations
   $R = [f(x_1); \dots; f(x_N)]$ (activation memory of one chunk);
2. compute the loss $L(R)$ on the full batch and its gradient $G = \partial L / \partial R$ (the
   cache; memory $O(N \cdot d)$);
3. re-encode each chunk with a graph and back-propagate $\langle f(x_c), G_c\rangle$, which
   accumulates exactly $\sum_c (\partial f(x_c)/\partial\theta)^\top G_c = \partial L /
   \partial\theta$.

The random state of each chunk's first forward is replayed in step 3, so dropout draws the same
masks and the gradient equals the full-batch one (to float32 round-off; see the tests).

[grad_cache_loss][lightning_losses.nn.grad_cache_loss] runs steps 1-2 when called and returns the
loss as a tensor whose **backward runs step 3**: from a `LightningModule`, return it from
`training_step` under automatic optimization and Lightning's own backward (with gradient
accumulation and AMP scaling, which arrive as the incoming gradient) does the rest; no manual
loop. Parameters of the loss itself (a learnable temperature) receive their gradient through the
loss graph as usual.

The encoders' parameter gradients are returned to the autograd engine as the gradients of
extra inputs of the returned loss, so each parameter's gradient is accumulated **once per
backward**, as after a plain forward: under DDP the reducer's hooks fire once per parameter and
the gradients are all-reduced once (not once per chunk), and gradient accumulation, AMP loss
scaling and `no_sync` behave as for any loss. With a `gather_distributed` loss on every rank the
result equals one process on the global batch (tested on 2 ranks). The price is one buffer of the
encoders' parameter size that holds the sum over chunks before it reaches `.grad`.

Scope and limits: the parameters are those of the encoders that are modules (or bound methods of
modules, such as `model.encode`); a plain function that closes over parameters must name them
with `params=`. BatchNorm normalises each chunk with its own statistics, so a BatchNorm encoder
is not equivalent to the full batch (GradCache's encoders use LayerNorm); the replay runs with
the running statistics frozen, so they are updated once, in step 1. FSDP is not supported: its
sharded parameters are gathered per forward, and the replay's chunks would gather them again
outside FSDP's backward hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_losses.nn.vat import frozen_batchnorm_stats
from lightning_losses.validation import check_int

__all__ = ["grad_cache_loss"]

Batch = Tensor | Mapping[str, Tensor]


def _batch_size(batch: Batch, name: str) -> int:
    if isinstance(batch, Tensor):
        if batch.ndim == 0:
            raise ValueError(f"{name} must be batched along dim 0, got a scalar")
        return int(batch.shape[0])
    if isinstance(batch, Mapping) and batch:
        sizes = set()
        for key, value in batch.items():
            if not isinstance(value, Tensor) or value.ndim == 0:
                raise TypeError(f"{name}[{key!r}] must be a batched tensor, got {value!r}")
            sizes.add(int(value.shape[0]))
        if len(sizes) != 1:
            raise ValueError(f"the tensors of {name} disagree on the batch size: {sorted(sizes)}")
        return sizes.pop()
    raise TypeError(
        f"{name} must be a tensor or a non-empty mapping of tensors, got {type(batch).__name__}"
    )


def _chunks(batch: Batch, size: int) -> list[Batch]:
    if isinstance(batch, Tensor):
        return list(batch.split(size))
    keys = list(batch)
    parts = [batch[k].split(size) for k in keys]
    return [dict(zip(keys, group, strict=True)) for group in zip(*parts, strict=True)]


def _call(encoder: Callable[..., Tensor], chunk: Batch) -> Tensor:
    out = encoder(**chunk) if isinstance(chunk, Mapping) else encoder(chunk)
    if not isinstance(out, Tensor):
        raise TypeError(f"an encoder must return a tensor of representations, got {type(out)}")
    return out


def _rng_state(device: torch.device | None) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device is not None else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[Tensor, Tensor | None], device: torch.device | None) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None and device is not None:
        torch.cuda.set_rng_state(state[1], device)


def _cuda_device(batch: Batch) -> torch.device | None:
    tensor = batch if isinstance(batch, Tensor) else next(iter(batch.values()))
    return tensor.device if tensor.device.type == "cuda" else None


def _encoder_params(
    encoders: Sequence[Callable[..., Tensor]], params: Iterable[Tensor] | None
) -> list[Tensor]:
    """The trainable parameters the replay differentiates, each once (shared towers too)."""
    if params is not None:
        found = list(params)
        for i, p in enumerate(found):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] must be a tensor, got {type(p).__name__}")
    else:
        found = []
        for i, encoder in enumerate(encoders):
            owner = (
                encoder
                if isinstance(encoder, torch.nn.Module)
                else getattr(encoder, "__self__", None)
            )
            if not isinstance(owner, torch.nn.Module):
                raise TypeError(
                    f"encoders[{i}] is neither a module nor a bound method of one, so its "
                    "parameters are unknown; pass them with params="
                )
            found.extend(owner.parameters())
    unique = {id(p): p for p in found if p.requires_grad}
    if not unique:
        raise ValueError("the encoders have no parameter that requires grad")
    return list(unique.values())


class _Replay(torch.autograd.Function):
    """Identity on the loss; its backward re-encodes every chunk and returns the parameters'
    summed gradients to the engine, which accumulates them (and runs DDP's hooks) once."""

    @staticmethod
    def forward(
        ctx: Any, loss: Tensor, replay: Callable[[Tensor], list[Tensor | None]], *params: Tensor
    ) -> Tensor:
        ctx.replay = replay
        return loss.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        return (grad_out, None, *ctx.replay(grad_out))


def grad_cache_loss(
    encoders: Callable[..., Tensor] | Sequence[Callable[..., Tensor]],
    inputs: Batch | Sequence[Batch],
    loss_fn: Callable[..., Tensor],
    *,
    chunk_size: int,
    params: Iterable[Tensor] | None = None,
) -> Tensor:
    r"""A batch-contrastive loss computed with GradCache; its backward re-encodes chunk by chunk.

    Args:
        encoders: one encoder (a module or callable) or one per input (e.g. a query and a
            document tower; the same module may appear twice). Each maps a chunk to `[n, d]`
            representations (any shape batched along dim 0).
        inputs: one batch per encoder: a tensor batched along dim 0, or a mapping of such tensors
            passed as keyword arguments (tokenizer output).
        loss_fn: `loss_fn(*reps)`, the full-batch loss on every encoder's representations, a
            scalar (e.g. `lambda q, d: info_nce(q, d)`); it may have parameters of its own.
        chunk_size: samples per chunk in both encoder passes.
        params: the parameters the encoders use; default: every trainable parameter of the
            encoders that are modules or bound methods of modules (required otherwise).

    Returns:
        The scalar loss (value of `loss_fn` on the full batch). Calling `.backward()` on it (or
        on anything it enters linearly, such as Lightning's scaled loss) accumulates into every
        encoder parameter's `.grad` the full-batch gradient, once (so DDP all-reduces it once).
        A parameter no chunk reaches keeps its `.grad`. Backward may be called once.

    Raises:
        TypeError: bad encoders, inputs or params, or a non-scalar loss.
        ValueError: `chunk_size < 1`, mismatched counts, or no trainable parameter.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import grad_cache_loss
        >>> enc = torch.nn.Linear(4, 3)
        >>> x = torch.randn(8, 4)
        >>> loss = grad_cache_loss(enc, x, lambda r: r.square().mean(), chunk_size=2)
        >>> loss.backward()
        >>> full = torch.autograd.grad(enc(x).square().mean(), enc.weight)[0]
        >>> torch.allclose(enc.weight.grad, full, atol=1e-6)
        True
    """
    chunk_size = check_int("chunk_size", chunk_size, low=1)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    encoder_list = list(encoders) if isinstance(encoders, Sequence) else [encoders]
    input_list: list[Batch]
    if isinstance(inputs, (Tensor, Mapping)):
        input_list = [inputs]
    else:
        input_list = list(inputs)
    if len(encoder_list) != len(input_list):
        raise ValueError(
            f"got {len(encoder_list)} encoders for {len(input_list)} inputs; give one each"
        )
    for i, encoder in enumerate(encoder_list):
        if not callable(encoder):
            raise TypeError(f"encoders[{i}] must be callable, got {type(encoder).__name__}")
    for i, batch in enumerate(input_list):
        _batch_size(batch, f"inputs[{i}]")
    param_list = _encoder_params(encoder_list, params)

    # Step 1: representations without a graph, each chunk's RNG state recorded.
    chunks: list[list[Batch]] = []
    states: list[list[tuple[Tensor, Tensor | None]]] = []
    reps: list[Tensor] = []
    for encoder, batch in zip(encoder_list, input_list, strict=True):
        parts = _chunks(batch, chunk_size)
        device = _cuda_device(batch)
        part_states, outs = [], []
        with torch.no_grad():
            for part in parts:
                part_states.append(_rng_state(device))
                outs.append(_call(encoder, part))
        chunks.append(parts)
        states.append(part_states)
        reps.append(torch.cat(outs).detach().requires_grad_(True))

    # Step 2: the full-batch loss and the cache G = dL/dR (the loss graph is kept for the
    # loss's own parameters).
    with torch.enable_grad():
        loss = loss_fn(*reps)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise TypeError(f"loss_fn must return a scalar tensor, got {loss!r}")
        cache = torch.autograd.grad(loss, reps, retain_graph=True, allow_unused=True)
    grads = [
        torch.zeros_like(r) if g is None else g.detach() for r, g in zip(reps, cache, strict=True)
    ]

    def replay(grad_out: Tensor) -> list[Tensor | None]:
        # Step 3: re-encode each chunk from its recorded RNG state and sum the parameter
        # gradients of <f(x_c), G_c> over chunks. `autograd.grad` leaves `.grad` and the
        # accumulation hooks alone; the engine accumulates the sum once, after this returns.
        summed: list[Tensor | None] = [None] * len(param_list)
        devices = [d for d in (_cuda_device(b) for b in input_list) if d is not None]
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            for encoder, batch, parts, part_states, g in zip(
                encoder_list, input_list, chunks, states, grads, strict=True
            ):
                device = _cuda_device(batch)
                offset = 0
                for part, state in zip(parts, part_states, strict=True):
                    _set_rng_state(state, device)
                    with frozen_batchnorm_stats(encoder):
                        out = _call(encoder, part)
                    g_part = g[offset : offset + out.shape[0]] * grad_out.to(g.dtype)
                    offset += out.shape[0]
                    chunk_grads = torch.autograd.grad(
                        out, param_list, g_part.to(out.dtype), allow_unused=True
                    )
                    for i, cg in enumerate(chunk_grads):
                        prev = summed[i]
                        if cg is not None:
                            summed[i] = cg if prev is None else prev.add_(cg)
        return summed

    return _Replay.apply(loss, replay, *param_list)
