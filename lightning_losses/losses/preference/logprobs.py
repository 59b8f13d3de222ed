r"""Per-sequence log-probabilities of a causal LM's labels, chunked over the sequence.

The preference losses take $\log \pi(y \mid x) = \sum_{t \in y} \log \pi(y_t \mid x, y_{<t})$,
summed over the response tokens. `sequence_log_probs` computes it from `[B, T, V]` logits in
chunks of positions with a fused forward/backward, so it never holds a second `[B, T, V]`
tensor: the forward keeps one `[B, chunk, V]` float32 block at a time and saves only the
per-token log-sum-exp `[B, T]`; the backward writes $g_t(e_{y_t} - \mathrm{softmax}(z_t))$ chunk by
chunk into the one gradient buffer the logits need anyway.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.validation import (
    check_class_indices,
    check_ignore_index,
    check_int,
    check_tensor,
)

__all__ = ["sequence_log_probs"]


class _SequenceLogProbs(torch.autograd.Function):
    """`(Σ_t m_t log softmax(z_t)[y_t])_b`, chunked forward and backward (see the module doc)."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, keep: Tensor, chunk: int) -> Tensor:
        b, t, _ = logits.shape
        dtype = _compute_dtype(logits)
        lse = torch.empty(b, t, dtype=dtype, device=logits.device)
        picked = torch.empty(b, t, dtype=dtype, device=logits.device)
        for s in range(0, t, chunk):
            z = logits[:, s : s + chunk].to(dtype)  # a view when logits are float32/float64
            lse[:, s : s + chunk] = torch.logsumexp(z, dim=-1)
            picked[:, s : s + chunk] = z.gather(-1, target[:, s : s + chunk, None]).squeeze(-1)
        token = torch.where(keep, picked - lse, 0.0)
        ctx.save_for_backward(logits, target, keep, lse)
        ctx.chunk = chunk
        return token.sum(1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        logits, target, keep, lse = ctx.saved_tensors
        out = torch.empty_like(logits)
        # d/dz_t = g_b m_t (e_{y_t} - softmax(z_t)); ignored positions get exactly 0.
        scale = torch.where(keep, grad.to(lse.dtype)[:, None], 0.0)
        for s in range(0, logits.shape[1], ctx.chunk):
            sl = slice(s, s + ctx.chunk)
            p = (logits[:, sl].to(lse.dtype) - lse[:, sl, None]).exp_()
            g = p.mul_(-scale[:, sl, None])
            g.scatter_add_(-1, target[:, sl, None], scale[:, sl, None])
            # where, not the zero scale alone: a padded position's logits may be inf/NaN.
            out[:, sl] = torch.where(keep[:, sl, None], g, 0.0)
        return out, None, None, None


def sequence_log_probs(
    logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = -100,
    chunk_size: int = 128,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Summed label log-probabilities and token counts of each sequence of a causal LM batch.

    $$
    \log \pi(y \mid x) = \sum_{t:\, y_t \ne \text{ignore}}
        \big(z_{t, y_t} - \log\textstyle\sum_v e^{z_{t,v}}\big),
    \qquad n = \#\{t : y_t \ne \text{ignore}\}
    $$

    `labels` are aligned with `logits` (position `t` of `logits` predicts `labels[:, t]`): with
    Hugging Face-style labels equal to the input ids, pass `logits[:, :-1]` and `labels[:, 1:]`.
    Prompt and padding positions carry `ignore_index` and contribute neither value nor gradient
    (exactly 0, even where their logits are not finite).
    The computation runs over `chunk_size` positions at a time in float32 (bf16/fp16 logits are
    upcast chunk by chunk), so peak extra memory is one `[B, chunk_size, V]` block in forward and
    backward, not a copy of the logits. It is differentiable once (no double backward).
    This is how the DPO family's inputs are built (Rafailov et al., *Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model*, arXiv:2305.18290; the same
    masked sum as TRL's `DPOTrainer`).

    Args:
        logits: `[B, T, V]` next-token logits.
        labels: `[B, T]` token ids, `ignore_index` on positions that do not count.
        ignore_index: label value of prompt / padding positions.
        chunk_size: positions per chunk (memory vs. number of kernel launches).
        validate_args: check that every counted label lies in `[0, V)` (one host sync).

    Returns:
        `(log_probs, num_tokens)`: `[B]` summed log-probabilities (float32, or float64 for
        float64 logits) and `[B]` counts of counted tokens, in the same dtype.

    Raises:
        TypeError: non-floating `logits`, floating `labels`, a non-int `ignore_index` or
            `chunk_size`.
        ValueError: shapes that do not match, `chunk_size < 1`, a label outside `[0, V)`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sequence_log_probs
        >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
        >>> logp, n = sequence_log_probs(logits, torch.tensor([[-100, 2, 1]]))
        >>> logp, n
        (tensor([-2.7726]), tensor([2.]))
    """
    check_ignore_index(ignore_index)
    chunk_size = check_int("chunk_size", chunk_size, low=1)
    check_tensor("logits", logits, floating=True)
    check_tensor("labels", labels, floating=False)
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape [B, T, V], got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape [B, T] = {tuple(logits.shape[:2])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    vocab = logits.shape[-1]
    target, keep, _ = check_class_indices(
        labels,
        vocab,
        ignore_index=ignore_index,
        name="labels",
        what="token id",
        validate_args=validate_args,
    )
    target, keep = target.view(labels.shape), keep.view(labels.shape)
    logp = _SequenceLogProbs.apply(logits, target, keep, chunk_size)
    return logp, keep.sum(1).to(logp.dtype)


def _compute_dtype(logits: Tensor) -> torch.dtype:
    # float64 stays float64 (gradcheck, references); everything else is computed in float32.
    return torch.float64 if logits.dtype == torch.float64 else torch.float32
