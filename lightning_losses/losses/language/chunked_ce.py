r"""Memory-lean linear cross-entropy: LM-head projection + CE (+ z-loss) in token chunks.

The `[B·T, V]` logits of a language model's head are never materialised, in the forward or the
backward: a custom autograd function projects one chunk of hidden states at a time, keeps only
each token's log-sum-exp, and recomputes the chunk's logits in the backward. Engineering after
Liger Kernel's `FusedLinearCrossEntropy` (*Liger Kernel: Efficient Triton Kernels for LLM
Training*, Hsu et al., arXiv:2410.10989) and Cut Cross-Entropy (*Cut Your Losses in
Large-Vocabulary Language Models*, Wijmans et al., arXiv:2411.09009); the per-row math is the
fused cross-entropy + z-loss of `fused_ce.py`. The loss module implements the hidden-states
criterion protocol (`HiddenStatesCriterion` of `lightning_losses.losses.hidden_states`), so a
model hands it hidden states instead of logits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, cast, overload

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.language.fused_ce import (
    LMLossOutput,
    _check_lm_ce_args,
    ce_z_grad_logits,
    softmax_rows_,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_class_indices,
    check_int,
    check_reduction,
    check_tensor,
)

__all__ = ["ChunkedLinearCrossEntropyLoss", "chunked_linear_cross_entropy"]

# Default chunk: about 2^24 logits (64 MiB in float32) per chunk, at least 16 tokens. Large enough
# that each chunk's `[m, H] @ [H, V]` product is compute-bound (the weight is read once per
# chunk), small enough to stay far below the full `[B·T, V]` tensor at LM vocabularies.
_CHUNK_LOGITS = 1 << 24
_MIN_CHUNK = 16
_LOW_PRECISION = (torch.float16, torch.bfloat16)
_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _check_chunk_size(chunk_size: Any) -> int | None:
    return None if chunk_size is None else check_int("chunk_size", chunk_size, low=1)


def default_chunk_size(num_tokens: int, vocab_size: int) -> int:
    """Tokens per chunk when `chunk_size=None`: about $2^{24}$ logits per chunk, ≥ 16 tokens.

    Example:
        >>> from lightning_losses.losses.language.chunked_ce import default_chunk_size
        >>> default_chunk_size(8192, 131072), default_chunk_size(8192, 32768)
        (128, 512)
    """
    return max(1, min(num_tokens, max(_MIN_CHUNK, _CHUNK_LOGITS // max(vocab_size, 1))))


def _chunk_logits(
    hidden: Tensor, valid: Tensor, weight: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One chunk's float32 (or float64) logits `[m, V]` and its masked hidden states `[m, H]`."""
    # Ignored tokens' hidden rows are zeroed so their logits stay finite whatever they held
    # (a NaN row times a zero gradient would still poison the weight gradient).
    h = torch.where(valid[:, None], hidden, hidden.new_zeros(()))
    # The product runs in the input dtype (bf16 tensor cores on GPU, float32 accumulation);
    # the softmax math runs on the float32-upcast chunk.
    logits = h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)
    return upcast(logits), h


def _autocast_off(fn: _Fn) -> _Fn:
    """Run a Function's forward/backward with autocast off on the inputs' device.

    The dtypes chosen in `_prepare_linear` decide the precision, identically in the forward and
    in the backward that recomputes the logits (autocast would otherwise recast inside).
    """

    @functools.wraps(fn)
    def wrapper(ctx: Any, *args: Any) -> Any:
        if fn.__name__ == "forward":
            ctx.device_type = args[0].device.type
        with torch.autocast(device_type=ctx.device_type, enabled=False):
            return fn(ctx, *args)

    return cast(_Fn, wrapper)


def _chunk_grads(
    h: Tensor,
    logits: Tensor,
    lse: Tensor,
    target: Tensor,
    gc: Tensor | None,
    gz: Tensor | None,
    weight: Tensor,
    grads: tuple[Tensor | None, Tensor | None, Tensor | None],
    label_smoothing: float,
    coeff: float,
    probs: bool = False,
) -> None:
    r"""Add one chunk's gradients: `dh = dz W` (written), `dW += dzᵀ h`, `db += Σ dz` (summed).

    `logits` (a fresh chunk, or its softmax with `probs`) is overwritten by
    $\partial\ell/\partial z$; `h` is the chunk's masked hidden states, `gc`/`gz` the upstream
    gradients of its CE and z-loss rows.
    """
    grad_h, grad_w, grad_b = grads
    d = ce_z_grad_logits(
        logits, lse, target, gc, gz, label_smoothing, coeff, inplace=True, probs=probs
    )
    if grad_b is not None:
        grad_b += d.sum(0)
    d = d.to(weight.dtype)
    if grad_h is not None:
        torch.mm(d, weight, out=grad_h)
    if grad_w is not None:
        if grad_w.dtype == d.dtype:
            grad_w.addmm_(d.T, h)
        else:  # bf16/fp16 product, accumulated in float32
            grad_w += d.T @ h


def _grad_buffers(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, need: tuple[bool, ...]
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    # Weight / bias gradients accumulate over chunks in float32 for bf16/fp16 weights.
    acc = upcast(weight).dtype
    grad_h = torch.empty_like(hidden) if need[0] else None
    grad_w = torch.zeros_like(weight, dtype=acc) if need[1] else None
    grad_b = torch.zeros_like(bias, dtype=acc) if (need[2] and bias is not None) else None
    return grad_h, grad_w, grad_b


def _cast_back(
    grads: tuple[Tensor | None, ...], weight: Tensor, bias: Tensor | None
) -> tuple[Tensor | None, ...]:
    grad_h, grad_w, grad_b = grads
    return (
        grad_h,
        None if grad_w is None else grad_w.to(weight.dtype),
        None if grad_b is None or bias is None else grad_b.to(bias.dtype),
    )


class _ChunkedLinearCE(torch.autograd.Function):
    """Per-token `(ce_rows, z_rows)` `[M]`; the backward recomputes each chunk's logits.

    Saved for backward: the inputs (references, no copies) and the per-token `lse [M]`. Any
    upstream gradient (per token) is exact: this is the `reduction="none"` path.
    """

    @staticmethod
    @_autocast_off
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        valid: Tensor,
        label_smoothing: float,
        coeff: float,
        chunk_size: int,
    ) -> tuple[Tensor, Tensor]:
        m = hidden.shape[0]
        acc = upcast(hidden).dtype
        ce, z, lse = (hidden.new_empty(m, dtype=acc) for _ in range(3))
        for s in range(0, m, chunk_size):
            e = min(s + chunk_size, m)
            logits, _ = _chunk_logits(hidden[s:e], valid[s:e], weight, bias)
            _, ce[s:e], z[s:e], lse[s:e] = softmax_rows_(
                logits, target[s:e], label_smoothing, coeff
            )
            del logits
        ctx.save_for_backward(hidden, weight, bias, target, valid, lse)
        ctx.label_smoothing, ctx.coeff, ctx.chunk_size = label_smoothing, coeff, chunk_size
        ctx.set_materialize_grads(False)
        return ce, z

    @staticmethod
    @once_differentiable
    @_autocast_off
    def backward(ctx: Any, g_ce: Tensor | None, g_z: Tensor | None) -> tuple[Any, ...]:
        hidden, weight, bias, target, valid, lse = ctx.saved_tensors
        nones = (None,) * 5
        if g_ce is None and g_z is None:
            return None, None, None, *nones
        grads = _grad_buffers(hidden, weight, bias, ctx.needs_input_grad[:3])
        acc = lse.dtype
        m, chunk = hidden.shape[0], ctx.chunk_size
        for s in range(0, m, chunk):
            e = min(s + chunk, m)
            logits, h = _chunk_logits(hidden[s:e], valid[s:e], weight, bias)
            probs = torch._softmax(logits, -1, False, out=logits)  # = exp(z - lse), one pass
            # Ignored tokens get exactly zero gradient (their upstream gradient is masked).
            v = valid[s:e]
            gc = None if g_ce is None else torch.where(v, g_ce[s:e].to(acc), 0.0)
            gz = None if g_z is None else torch.where(v, g_z[s:e].to(acc), 0.0)
            sliced = (None if grads[0] is None else grads[0][s:e], *grads[1:])
            _chunk_grads(
                h,
                probs,
                lse[s:e],
                target[s:e],
                gc,
                gz,
                weight,
                sliced,
                ctx.label_smoothing,
                ctx.coeff,
                True,
            )
            del logits, probs
        return (*_cast_back(grads, weight, bias), *nones)


class _ChunkedLinearCEScalar(torch.autograd.Function):
    r"""Scalar `(loss, z_loss)` (mean or sum); the gradients are computed during the forward.

    One pass per chunk computes the loss and $\partial\ell/\partial z$, applied at once to
    `dh`, `dW`, `db`, which are saved; the backward only scales them by the upstream scalar.
    The `z_loss` output is for logging (non-differentiable).
    """

    @staticmethod
    @_autocast_off
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        target: Tensor,
        valid: Tensor,
        label_smoothing: float,
        coeff: float,
        chunk_size: int,
        scale: Tensor,
        need: tuple[bool, bool, bool],
    ) -> tuple[Tensor, Tensor]:
        m = hidden.shape[0]
        acc = upcast(hidden).dtype
        total = hidden.new_zeros((), dtype=acc)
        z_total = hidden.new_zeros((), dtype=acc)
        grads = _grad_buffers(hidden, weight, bias, need)
        for s in range(0, m, chunk_size):
            e = min(s + chunk_size, m)
            v = valid[s:e]
            logits, h = _chunk_logits(hidden[s:e], v, weight, bias)
            probs, ce, z, lse = softmax_rows_(logits, target[s:e], label_smoothing, coeff)
            zero = torch.zeros((), dtype=acc, device=ce.device)
            total += torch.where(v, ce + z if coeff > 0 else ce, zero).sum()
            z_total += torch.where(v, z, zero).sum()
            if any(need):
                g = torch.where(v, scale, zero)
                sliced = (None if grads[0] is None else grads[0][s:e], *grads[1:])
                _chunk_grads(
                    h, probs, lse, target[s:e], g, g, weight, sliced, label_smoothing, coeff, True
                )
            del logits, probs
        ctx.save_for_backward(*_cast_back(grads, weight, bias))
        loss, z_loss = total * scale, z_total * scale
        ctx.mark_non_differentiable(z_loss)
        return loss, z_loss

    @staticmethod
    @once_differentiable
    @_autocast_off
    def backward(ctx: Any, g: Tensor | None, _: Any) -> tuple[Any, ...]:
        grads = ctx.saved_tensors
        nones = (None,) * 7
        if g is None:
            return None, None, None, *nones
        return (*(None if t is None else t * g.to(t.dtype) for t in grads), *nones)


def _prepare_linear(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    ignore_index: int | None,
    validate_args: bool,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, torch.Size]:
    """Validate; return flat hidden `[M, H]`, weight, bias (in one dtype), safe target `[M]`,
    valid `[M]` and the `"none"` shape."""
    check_tensor("input", input, floating=True)
    check_tensor("weight", weight, floating=True)
    check_tensor("target", target, floating=False)
    if input.ndim < 2:
        raise ValueError(
            f"input must hold hidden states [N, H] or [B, T, H], got shape {tuple(input.shape)}"
        )
    if weight.ndim != 2 or weight.shape[1] != input.shape[-1] or weight.shape[0] < 1:
        raise ValueError(
            f"weight must be the LM-head weight [V, H] with H = input.shape[-1] = "
            f"{input.shape[-1]} and V ≥ 1, got shape {tuple(weight.shape)}"
        )
    # Mixed precision (autocast's bf16 hidden states, float32 master weights): compute in the
    # low precision, as autocast's matmul would; the casts are differentiable.
    if weight.dtype != input.dtype:
        low = [d for d in (input.dtype, weight.dtype) if d in _LOW_PRECISION]
        if len(low) != 1:
            raise TypeError(
                f"weight must have the dtype of input ({input.dtype}) or one of them must be "
                f"float16/bfloat16 (mixed precision), got {weight.dtype}"
            )
        input, weight = input.to(low[0]), weight.to(low[0])
    vocab = weight.shape[0]
    if bias is not None:
        check_tensor("bias", bias, floating=True)
        if bias.shape != (vocab,):
            raise ValueError(f"bias must have shape [V] = ({vocab},), got {tuple(bias.shape)}")
        if bias.dtype != weight.dtype:
            if weight.dtype not in _LOW_PRECISION:
                raise TypeError(f"bias must have dtype {weight.dtype}, got {bias.dtype}")
            bias = bias.to(weight.dtype)
    if weight.dtype == torch.float16:
        # float16's range (±65504) overflows on logits that float32 holds (hidden states and
        # weights around 1e4): compute in float32, once per call; the casts are differentiable,
        # so the gradients come back in float16.
        input, weight = input.float(), weight.float()
        bias = None if bias is None else bias.float()
    out_shape = input.shape[:-1]
    if target.shape != out_shape:
        raise ValueError(
            f"target must have shape {tuple(out_shape)} (input {tuple(input.shape)} without its "
            f"hidden dimension), got {tuple(target.shape)}"
        )
    safe, valid, _ = check_class_indices(
        target, vocab, ignore_index=ignore_index, validate_args=validate_args
    )
    return input.reshape(-1, input.shape[-1]), weight, bias, safe, valid, out_shape


def _chunked(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    *,
    z_loss_coeff: float,
    label_smoothing: float,
    ignore_index: int | None,
    chunk_size: int | None,
    reduction: str,
    z_grad: bool,
    validate_args: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """`(loss, z_loss, valid)`, both reduced by `reduction` (shared by functional and module).

    Scalar reductions take the gradients-in-forward path unless the z-loss output itself needs
    a gradient (`z_grad`); `"none"` takes the recompute-in-backward path.
    """
    hidden, weight, bias, safe, valid, out_shape = _prepare_linear(
        input, weight, target, bias, ignore_index, validate_args
    )
    chunk = chunk_size or default_chunk_size(hidden.shape[0], weight.shape[0])
    ls, coeff = label_smoothing, z_loss_coeff
    if reduction != "none" and not z_grad:
        acc = upcast(hidden).dtype
        if reduction == "mean":  # a mean over zero valid tokens is 0 (its gradient too)
            scale = 1.0 / valid.sum().clamp_min(1).to(acc)
        else:
            scale = torch.ones((), dtype=acc, device=hidden.device)
        grad_on = torch.is_grad_enabled()
        need = tuple(grad_on and t is not None and t.requires_grad for t in (hidden, weight, bias))
        loss, z = _ChunkedLinearCEScalar.apply(
            hidden, weight, bias, safe, valid, ls, coeff, chunk, scale, need
        )
        return loss, z, valid
    ce, z = _ChunkedLinearCE.apply(hidden, weight, bias, safe, valid, ls, coeff, chunk)
    total = ce + z if coeff > 0 else ce
    return (
        reduce_loss(total, reduction, valid=valid, out_shape=out_shape),
        reduce_loss(z, reduction, valid=valid, out_shape=out_shape),
        valid,
    )


@overload
def chunked_linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    z_loss_coeff: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    chunk_size: int | None = ...,
    reduction: str = ...,
    return_z_loss: Literal[False] = False,
    validate_args: bool = ...,
) -> Tensor: ...


@overload
def chunked_linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    z_loss_coeff: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    chunk_size: int | None = ...,
    reduction: str = ...,
    return_z_loss: Literal[True],
    validate_args: bool = ...,
) -> LMLossOutput: ...


@overload
def chunked_linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    z_loss_coeff: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    chunk_size: int | None = ...,
    reduction: str = ...,
    return_z_loss: bool,
    validate_args: bool = ...,
) -> Tensor | LMLossOutput: ...


def chunked_linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    *,
    z_loss_coeff: float = 0.0,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    chunk_size: int | None = None,
    reduction: str = "mean",
    return_z_loss: bool = False,
    validate_args: bool = True,
) -> Tensor | LMLossOutput:
    r"""Cross-entropy (+ z-loss) of an LM head's logits $z = hW^\top + b$, never materialised.

    $$
    \ell_t = \mathrm{lse}_t - (1-\varepsilon)\, z_{t,y_t} - \frac{\varepsilon}{V}\sum_v z_{t,v}
        + c\,\mathrm{lse}_t^2, \qquad z_t = W h_t + b,\ \mathrm{lse}_t = \log\sum_v e^{z_{t,v}}
    $$

    Same value and gradients (hidden states, weight, bias) as
    `F.cross_entropy(h @ W.T + b, y, label_smoothing=ε)` + the z-loss of
    [cross_entropy_with_z_loss][lightning_losses.functional.cross_entropy_with_z_loss], but the
    tokens are processed `chunk_size` at a time by a custom autograd function: the largest
    temporary is one chunk's `[chunk_size, V]` logits, never the `[B·T, V]` tensor (4 GiB in
    float32 at 8k tokens and a 128k vocabulary; naive autograd holds two to three of them).

    Design (the trade-off), two paths picked by `reduction`:

    - `"mean"` / `"sum"` (a scalar, so the upstream gradient is one number): the gradients are
      computed *during the forward*, chunk by chunk, as Liger's `FusedLinearCrossEntropy` does
      (arXiv:2410.10989): one `[chunk, H] × [H, V]` product gives the chunk's logits, its
      $\partial\ell/\partial z$ is formed in place and applied at once
      ($\nabla_h = \partial z\, W$, $\nabla_W \mathrel{+}= \partial z^\top h$). Three products,
      as many as autograd; `dh`, `dW` (`[B·T, H]`, `[V, H]`) are held from the forward to the
      backward, which only scales them. Under `torch.no_grad()` no gradient is computed.
    - `"none"` (per-token losses, any upstream gradient; how
      [LossMixin][lightning_losses.mixins.LossMixin] uses it for per-sequence means and sample
      weights): precomputed gradients cannot be rescaled per token for the weight
      ($\nabla_W = \sum_t g_t\, \partial z_t^\top h_t$), so the forward keeps only each token's
      $\mathrm{lse}$ and the backward *recomputes* each chunk's logits: four products instead of
      three (about 1.3× the matmul time), nothing but `[B·T]` floats saved.

    `return_z_loss=True` with a scalar reduction uses the second path, so that the returned
    z-loss is differentiable too. Ignored tokens are masked before the projection, so their
    hidden rows (even NaN/inf) get exactly zero gradient and add nothing to the weight gradient.

    Precision: the products run in the input dtype (bf16 on tensor cores), each chunk's logits
    are upcast to float32 for the softmax math, and the weight/bias gradients accumulate in
    float32 before being cast back. float16 inputs are the exception: their products run in
    float32, because logits beyond float16's ±65504 (hidden states and weights around 1e4) would
    overflow before the upcast although the loss itself is representable in float32. Autocast
    is off inside, so the recomputing backward uses exactly the forward's precision. The
    function is once differentiable.

    Sources: *Liger Kernel: Efficient Triton Kernels for LLM Training* (arXiv:2410.10989);
    *Cut Your Losses in Large-Vocabulary Language Models* (Cut Cross-Entropy, arXiv:2411.09009);
    z-loss: arXiv:2309.14322. Checked against naive `F.cross_entropy(h @ W.T, y)` (value and all
    gradients, 1e-5 in float32) in tests/losses/test_chunked_ce.py; Liger's kernels need a GPU.

    Args:
        input: hidden states `[N, H]` or `[B, T, H]` (the LM head's input).
        weight: LM-head weight `[V, H]` (`lm_head.weight`), the dtype of `input`; with
            mixed precision (bf16 hidden states, float32 weight, as under autocast) both are
            cast to the low precision, differentiably.
        target: token ids `[N]` or `[B, T]`; `ignore_index` positions are excluded.
        bias: optional LM-head bias `[V]`.
        z_loss_coeff: z-loss coefficient $c \ge 0$ (default 0: plain cross-entropy).
        label_smoothing: $\varepsilon \in [0, 1]$.
        ignore_index: target value that is ignored.
        chunk_size: tokens per chunk; `None` picks about $2^{24}/V$ tokens (≥ 16), e.g. 128 at
            V = 128k. Peak extra memory is about three `[chunk_size, V]` float32 buffers.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]` or `[B, T]`).
        return_z_loss: also return the z-loss part, as an
            [LMLossOutput][lightning_losses.losses.LMLossOutput].
        validate_args: check the token-id range of `target` (a host sync).

    Returns:
        The reduced loss (or per-token losses), or `LMLossOutput(loss, z_loss)`.

    Raises:
        ValueError: shapes that do not fit (`weight` not `[V, H]`, `target` not `input`'s
            leading shape, `bias` not `[V]`), a token id outside `[0, V)`, bad hyperparameters.
        TypeError: non-floating `input`/`weight`, different dtypes neither of which is
            float16/bfloat16, non-integer `target`.

    Example:
        >>> import torch
        >>> import torch.nn.functional as F
        >>> from lightning_losses.functional import chunked_linear_cross_entropy
        >>> h, w = torch.randn(2, 5, 8), torch.randn(11, 8)  # [B, T, H], [V, H]
        >>> y = torch.randint(11, (2, 5))
        >>> out = chunked_linear_cross_entropy(h, w, y, chunk_size=3)
        >>> torch.allclose(out, F.cross_entropy((h @ w.T).transpose(1, 2), y), atol=1e-6)
        True
        >>> chunked_linear_cross_entropy(h, w, y, reduction="none").shape
        torch.Size([2, 5])
    """
    check_reduction(reduction)
    hp = _check_lm_ce_args(
        z_loss_coeff=z_loss_coeff, label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    loss, z, _ = _chunked(
        input,
        weight,
        target,
        bias,
        **hp,
        chunk_size=_check_chunk_size(chunk_size),
        reduction=reduction,
        z_grad=return_z_loss,
        validate_args=validate_args,
    )
    return LMLossOutput(loss, z) if return_z_loss else loss


@register_loss(
    "chunked_linear_cross_entropy", aliases=("chunked_linear_ce", "fused_linear_cross_entropy")
)
class ChunkedLinearCrossEntropyLoss(Loss):
    r"""LM-head projection + cross-entropy (+ z-loss) in token chunks (arXiv:2410.10989).

    See [chunked_linear_cross_entropy][lightning_losses.functional.chunked_linear_cross_entropy]
    for the formula and the memory/compute trade-off. `forward(input, weight, target, bias=None)`
    takes the final hidden states and `lm_head.weight` instead of logits: the class implements
    the [HiddenStatesCriterion][lightning_losses.losses.HiddenStatesCriterion] protocol
    (`consumes_hidden_states = True`), so the NLP recipe's `CausalLM` never builds the logits.
    With `z_loss_coeff > 0` the detached z-loss part (mean over non-ignored tokens) of the last
    call is kept in `last_z_loss` and reported by `loss_terms()` as `{"z_loss": ...}`, for
    logging (it is already inside the returned loss).
    Under FSDP2 call it where `lm_head.weight` is unsharded: inside the forward of the FSDP unit
    that owns the LM head (see docs/guide/lm_memory.md).

    Args:
        z_loss_coeff: z-loss coefficient $c \ge 0$ (default 0).
        label_smoothing: $\varepsilon \in [0, 1]$.
        ignore_index: target value that is ignored.
        chunk_size: tokens per chunk (`None`: about $2^{24}/V$).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check the token-id range of `target` on every call (a host sync).

    Shape:
        - input: `[N, H]` or `[B, T, H]`; weight: `[V, H]`; target: `[N]` or `[B, T]`;
          bias: `[V]`.
        - output: scalar, or `[N]` / `[B, T]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ChunkedLinearCrossEntropyLoss
        >>> head = torch.nn.Linear(8, 50, bias=False)
        >>> loss = ChunkedLinearCrossEntropyLoss(z_loss_coeff=1e-4, chunk_size=4)
        >>> out = loss(torch.randn(2, 6, 8), head.weight, torch.randint(50, (2, 6)))
        >>> out.backward()
        >>> head.weight.grad.shape, loss.last_z_loss.ndim, sorted(loss.loss_terms())
        (torch.Size([50, 8]), 0, ['z_loss'])
    """

    functional = staticmethod(chunked_linear_cross_entropy)
    input_kind = InputKind.SEQUENCES
    consumes_hidden_states: ClassVar[bool] = True

    # The hyperparameters, stored by the `Loss` base (typed here for the readers of `forward`).
    z_loss_coeff: float
    label_smoothing: float
    ignore_index: int | None
    chunk_size: int | None

    def __init__(
        self,
        z_loss_coeff: float = 0.0,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        chunk_size: int | None = None,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_lm_ce_args(
                z_loss_coeff=z_loss_coeff,
                label_smoothing=label_smoothing,
                ignore_index=ignore_index,
            ),
            chunk_size=_check_chunk_size(chunk_size),
        )
        self.last_z_loss: Tensor | None = None

    def forward(
        self, input: Tensor, weight: Tensor, target: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        """The chunked cross-entropy (+ z-loss) of `input @ weight.T + bias` against `target`.

        Shapes: hidden states `input [N, H]` (or `[B, T, H]`), output projection `weight [V, H]`,
        optional `bias [V]`, token ids `target` of `input`'s leading shape. The functional's own
        `_chunked` computes it; the z-loss part comes out of the same pass (without a gradient of
        its own) for `last_z_loss`.
        """
        check_reduction(self.reduction)  # an attribute set after construction is checked too
        loss, z, valid = _chunked(
            input,
            weight,
            target,
            bias,
            **self.hparams,
            reduction=self.reduction,
            z_grad=False,
            validate_args=self.validate_args,
        )
        if self.z_loss_coeff > 0:  # the mean over non-ignored tokens, whatever the reduction
            z = z.detach()
            if self.reduction == "none":
                z = reduce_loss(z.reshape(-1), "mean", valid=valid)
            elif self.reduction == "sum":
                z = z / valid.sum().clamp_min(1).to(z.dtype)
            self.last_z_loss = z
        return loss

    def loss_terms(self) -> dict[str, Tensor]:
        """`{"z_loss": last_z_loss}` after a call with `z_loss_coeff > 0`, else `{}`.

        For logging: the z-loss is already inside the value `forward` returned.
        """
        return {} if self.last_z_loss is None else {"z_loss": self.last_z_loss}
