"""Chunked linear cross-entropy against naive `F.cross_entropy(h @ W.T + b, y)`.

Peers: Liger's `LigerFusedLinearCrossEntropyLoss` and torchtune's `LinearCrossEntropyLoss` need a
GPU (Triton) or a heavy install, so the reference is the naive autograd computation in float32
(tolerance 1e-5, the issue's bar) and a float64 one written from the formula. Memory is checked
directly: no tensor with B·T·V elements is ever created, in the forward or the backward.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_losses.functional import chunked_linear_cross_entropy, z_loss
from lightning_losses.losses import ChunkedLinearCrossEntropyLoss, CrossEntropyLoss, InputKind
from lightning_losses.losses.language.chunked_ce import default_chunk_size
from lightning_losses.mixins import LossMixin

TOL32 = {"rtol": 1e-5, "atol": 1e-5}


def make(b=3, t=11, h=16, v=37, dtype=torch.float32, seed=0, bias=True, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t, h, generator=g, dtype=dtype) * scale
    weight = torch.randn(v, h, generator=g, dtype=dtype) / h**0.5
    b_ = torch.randn(v, generator=g, dtype=dtype) if bias else None
    target = torch.randint(0, v, (b, t), generator=g)
    target[0, :4] = -100  # a "prompt"
    target[-1, -1] = -100
    return hidden, weight, b_, target


def leaves(*xs):
    return [None if x is None else x.detach().clone().requires_grad_(True) for x in xs]


def naive(hidden, weight, bias, target, coeff=0.0, eps=0.0, reduction="mean"):
    logits = hidden @ weight.T
    if bias is not None:
        logits = logits + bias
    ce = F.cross_entropy(
        logits.transpose(1, 2) if logits.ndim == 3 else logits,
        target,
        label_smoothing=eps,
        reduction="none",
    )
    valid = target != -100
    tok = ce + coeff * logits.logsumexp(-1).square() * valid
    if reduction == "none":
        return tok
    return tok.sum() if reduction == "sum" else tok.sum() / valid.sum()


def grads(out, xs, proj=None):
    out = out if proj is None else (out * proj).sum()
    return torch.autograd.grad(out, [x for x in xs if x is not None])


@pytest.mark.parametrize("chunk_size", [1, 5, 33, 1000])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_value_and_all_gradients_match_naive_float32(chunk_size, reduction):
    hidden, weight, bias, target = make()
    a, b = leaves(hidden, weight, bias), leaves(hidden, weight, bias)
    ours = chunked_linear_cross_entropy(
        *a[:2], target, a[2], chunk_size=chunk_size, reduction=reduction
    )
    ref = naive(*b[:2], b[2], target, reduction=reduction)
    torch.testing.assert_close(ours, ref, **TOL32)
    for ga, gb in zip(grads(ours, a), grads(ref, b)):
        torch.testing.assert_close(ga, gb, **TOL32)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_per_token_none_with_z_loss_and_smoothing_any_upstream_gradient_float64(eps):
    # reduction="none" with a random upstream gradient per token: what LossMixin's per-sequence
    # means and sample weights produce. Reference: the formula in float64, via autograd.
    hidden, weight, bias, target = make(dtype=torch.float64, seed=1, scale=3.0)
    a, b = leaves(hidden, weight, bias), leaves(hidden, weight, bias)
    ours = chunked_linear_cross_entropy(
        *a[:2],
        target,
        a[2],
        z_loss_coeff=1e-2,
        label_smoothing=eps,
        chunk_size=4,
        reduction="none",
    )
    logits = b[0] @ b[1].T + b[2]
    lse = torch.log(torch.exp(logits).sum(-1))
    valid = target != -100
    z_y = logits.gather(-1, torch.where(valid, target, 0)[..., None]).squeeze(-1)
    ref = (lse - (1 - eps) * z_y - eps * logits.mean(-1) + 1e-2 * lse**2) * valid
    assert ours.shape == target.shape
    torch.testing.assert_close(ours, ref)
    proj = torch.randn(ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    for ga, gb in zip(grads(ours, a, proj), grads(ref, b, proj)):
        torch.testing.assert_close(ga, gb)


def test_flat_tokens_without_bias_and_gradcheck_across_chunks():
    hidden, weight, _, target = make(b=1, t=7, h=3, v=5, dtype=torch.float64, bias=False)
    h, w = hidden[0].requires_grad_(True), weight.requires_grad_(True)
    bias = torch.randn(5, dtype=torch.float64, requires_grad=True)
    y = target[0]

    def fn(h, w, b):
        return chunked_linear_cross_entropy(
            h, w, y, b, z_loss_coeff=0.1, label_smoothing=0.1, chunk_size=3, reduction="none"
        )

    assert torch.autograd.gradcheck(fn, (h, w, bias), eps=1e-6, atol=1e-6)
    torch.testing.assert_close(
        chunked_linear_cross_entropy(h, w, y), naive(h, w, None, y), rtol=1e-12, atol=1e-12
    )


def test_z_loss_part_is_the_library_z_loss_of_the_logits():
    hidden, weight, bias, target = make(seed=2)
    out = chunked_linear_cross_entropy(
        hidden, weight, target, bias, z_loss_coeff=1e-3, return_z_loss=True, chunk_size=8
    )
    logits = (hidden @ weight.T + bias).transpose(1, 2)
    torch.testing.assert_close(out.z_loss, z_loss(logits, target, coeff=1e-3), **TOL32)
    torch.testing.assert_close(
        out.loss, F.cross_entropy(logits, target) + z_loss(logits, target, coeff=1e-3), **TOL32
    )
    loss = ChunkedLinearCrossEntropyLoss(z_loss_coeff=1e-3)
    loss(hidden, weight, target, bias)
    torch.testing.assert_close(loss.last_z_loss, out.z_loss.detach(), **TOL32)


def test_ignored_tokens_get_zero_gradient_even_when_their_hidden_states_are_not_finite():
    hidden, weight, bias, target = make(seed=3)
    hidden[0, 0] = float("nan")  # both positions are ignored (target[0, :4] == -100)
    hidden[0, 1, 2] = float("inf")
    a = leaves(hidden, weight, bias)
    out = chunked_linear_cross_entropy(*a[:2], target, a[2], chunk_size=5)
    gh, gw, gb = grads(out, a)
    assert torch.isfinite(out) and torch.isfinite(gw).all() and torch.isfinite(gb).all()
    assert (gh[target == -100] == 0).all() and torch.isfinite(gh).all()
    clean = hidden.clone()
    clean[target == -100] = 0.0  # the ignored rows do not matter at all
    ref = naive(*leaves(clean, weight, bias)[:2], bias, target)
    torch.testing.assert_close(out, ref, **TOL32)


def test_bf16_inputs_are_upcast_per_chunk():
    hidden, weight, bias, target = make(seed=4)
    hb, wb, bb = (x.bfloat16() for x in (hidden, weight, bias))
    a = leaves(hb, wb, bb)
    out = chunked_linear_cross_entropy(*a[:2], target, a[2], chunk_size=6, z_loss_coeff=1e-3)
    assert out.dtype == torch.float32
    # Reference: the same bf16-rounded inputs, in float32.
    r = leaves(hb.float(), wb.float(), bb.float())
    ref = naive(*r[:2], r[2], target, coeff=1e-3)
    torch.testing.assert_close(out, ref, atol=0.02, rtol=0.01)
    for ga, gb in zip(grads(out, a), grads(ref, r)):
        assert ga.dtype == torch.bfloat16
        torch.testing.assert_close(ga.float(), gb, atol=0.02, rtol=0.05)


class _MaxNumel(TorchDispatchMode):
    """Records the largest tensor any aten op creates (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("reduction", ["none", "mean"])  # recompute path, gradients-in-forward
def test_full_logits_are_never_materialised_in_forward_or_backward(reduction):
    b, t, h, v, chunk = 4, 64, 8, 500, 16
    hidden, weight, bias, target = make(b=b, t=t, h=h, v=v, seed=5)
    a = leaves(hidden, weight, bias)
    saved = []

    def pack(x):
        saved.append(x.numel())
        return x

    with _MaxNumel() as mode:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            out = chunked_linear_cross_entropy(
                *a[:2], target, a[2], chunk_size=chunk, reduction=reduction
            )
        (out * torch.rand(out.shape)).sum().backward()
    # Nothing bigger than one chunk's logits (or the weight) exists at any time...
    assert mode.largest <= max(chunk * v, v * h), mode.largest
    # ...and what autograd keeps is the inputs (or their gradients) plus per-token values.
    assert max(saved) <= max(b * t * h, v * h), saved
    assert a[1].grad is not None and torch.isfinite(a[1].grad).all()
    # The same probe does see the naive computation's [B·T, V] logits.
    with _MaxNumel() as mode:
        naive(*leaves(hidden, weight, bias)[:2], bias, target).backward()
    assert mode.largest >= b * t * v


def test_loss_mixin_per_sequence_means_match_naive_token_ce():
    class Head(LossMixin, LightningModule):
        def __init__(self, criterion):
            super().__init__()
            self.configure_criterion(criterion)

    hidden, weight, _, target = make(seed=6)
    a, b = leaves(hidden, weight, None), leaves(hidden, weight, None)
    lean = Head(ChunkedLinearCrossEntropyLoss(chunk_size=7))
    out = lean.compute_loss(a[0], a[1], target)  # element_mask = target != -100 (automatic)
    ref_mod = Head(CrossEntropyLoss())
    ref = ref_mod.compute_loss((b[0] @ b[1].T).transpose(1, 2), target)
    torch.testing.assert_close(out.per_sample, ref.per_sample, **TOL32)
    torch.testing.assert_close(out.loss, ref.loss, **TOL32)
    # The mixin's loss is the mean of per-sequence means, not the token mean: a real check.
    assert not torch.allclose(out.loss, naive(hidden, weight, None, target))
    for ga, gb in zip(grads(out.loss, a), grads(ref.loss, b)):
        torch.testing.assert_close(ga, gb, **TOL32)


def test_declares_sequences_and_masks_ignored_tokens():
    assert ChunkedLinearCrossEntropyLoss.input_kind == InputKind.SEQUENCES
    loss = ChunkedLinearCrossEntropyLoss()
    target = torch.tensor([[1, -100, 2]])
    assert loss.element_mask(torch.zeros(1, 3, 4), torch.zeros(5, 4), target).tolist() == [
        [True, False, True]
    ]
    assert "chunk_size=None" in repr(loss)


def test_default_chunk_size():
    assert default_chunk_size(8192, 131072) == 128
    assert default_chunk_size(8192, 32768) == 512
    assert default_chunk_size(10, 32768) == 10  # never more than the tokens
    assert default_chunk_size(100_000, 10**9) == 16  # at least 16 tokens


def test_bad_inputs_are_named():
    h, w, y = torch.randn(2, 3, 4), torch.randn(6, 4), torch.randint(6, (2, 3))
    with pytest.raises(ValueError, match="weight must be the LM-head weight"):
        chunked_linear_cross_entropy(h, torch.randn(6, 5), y)
    with pytest.raises(ValueError, match="weight"):
        chunked_linear_cross_entropy(h, torch.randn(6), y)
    with pytest.raises(TypeError, match="weight must have the dtype of input"):  # f32 vs f64
        chunked_linear_cross_entropy(h, w.double(), y)
    with pytest.raises(ValueError, match="bias"):
        chunked_linear_cross_entropy(h, w, y, torch.zeros(5))
    with pytest.raises(ValueError, match="target must have shape"):
        chunked_linear_cross_entropy(h, w, y.reshape(-1))
    with pytest.raises(ValueError, match="target contains class index 6"):
        chunked_linear_cross_entropy(h, w, torch.full((2, 3), 6))
    with pytest.raises(TypeError, match="target"):
        chunked_linear_cross_entropy(h, w, y.float())
    with pytest.raises(ValueError, match="input must hold hidden states"):
        chunked_linear_cross_entropy(torch.randn(4), w, torch.tensor(1))
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_linear_cross_entropy(h, w, y, chunk_size=0)
    with pytest.raises(TypeError, match="chunk_size"):
        ChunkedLinearCrossEntropyLoss(chunk_size=2.5)


def test_scalar_path_without_grad_retain_graph_and_frozen_weight():
    hidden, weight, bias, target = make(seed=7)
    ref = naive(hidden, weight, bias, target)
    with torch.no_grad():
        torch.testing.assert_close(
            chunked_linear_cross_entropy(hidden, weight, target, bias), ref, **TOL32
        )
    # Precomputed gradients are scaled, not consumed: a second backward gives the same.
    h = hidden.clone().requires_grad_(True)  # weight and bias frozen
    out = chunked_linear_cross_entropy(h, weight, target, bias, chunk_size=6)
    (g1,) = torch.autograd.grad(2.0 * out, h, retain_graph=True)
    (g2,) = torch.autograd.grad(2.0 * out, h)
    (gr,) = torch.autograd.grad(2.0 * naive(h, weight, bias, target), h)
    torch.testing.assert_close(g1, gr, **TOL32)
    torch.testing.assert_close(g2, g1)


def test_returned_z_loss_is_differentiable_in_every_reduction():
    hidden, weight, bias, target = make(seed=8)
    a, b = leaves(hidden, weight, bias), leaves(hidden, weight, bias)
    out = chunked_linear_cross_entropy(
        *a[:2], target, a[2], z_loss_coeff=0.1, chunk_size=9, return_z_loss=True
    )
    logits = (b[0] @ b[1].T + b[2]).transpose(1, 2)
    ref = z_loss(logits, target, coeff=0.1)
    torch.testing.assert_close(out.z_loss, ref, **TOL32)
    for ga, gb in zip(grads(out.z_loss, a), grads(ref, b)):
        torch.testing.assert_close(ga, gb, **TOL32)


def test_mixed_precision_hidden_states_with_float32_weight_compute_in_bf16():
    # autocast's layout: bf16 hidden states, float32 master weights -> bf16 matmuls, the
    # gradient of the float32 weight in float32 (the cast is differentiable).
    hidden, weight, bias, target = make(seed=9)
    hb = hidden.bfloat16().requires_grad_(True)
    w, b = weight.clone().requires_grad_(True), bias.clone().requires_grad_(True)
    out = chunked_linear_cross_entropy(hb, w, target, b, chunk_size=7)
    gh, gw, gb = torch.autograd.grad(out, (hb, w, b))
    assert gh.dtype == torch.bfloat16 and gw.dtype == gb.dtype == torch.float32
    r = leaves(hb.float(), w.bfloat16().float(), b.bfloat16().float())
    ref = naive(*r[:2], r[2], target)
    torch.testing.assert_close(out, ref, atol=0.02, rtol=0.01)
    for ga, gr in zip((gh.float(), gw, gb), grads(ref, r)):
        torch.testing.assert_close(ga, gr, atol=0.02, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast on: the same computation
        out_ac = chunked_linear_cross_entropy(hb, w, target, b, chunk_size=7)
    torch.testing.assert_close(out_ac, out)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_float16_inputs_with_large_logits_stay_finite_and_exact(reduction):
    """Hidden states and weights at ±1e4 in float16: `h @ Wᵀ` (~1e9) overflows float16's
    ±65504, but the loss is representable in float32, so the product runs in float32."""
    torch.manual_seed(0)
    h = (torch.randn(16, 8) * 1e4).half().requires_grad_()
    w = (torch.randn(32, 8) * 1e4).half().requires_grad_()
    y = torch.randint(0, 32, (16,))
    y[3] = -100
    loss = chunked_linear_cross_entropy(h, w, y, chunk_size=4, reduction=reduction)
    h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.cross_entropy(h64 @ w64.T, y, reduction=reduction)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=0.0)
    # A small upstream gradient keeps the float16 parameter gradients inside float16's range.
    up = torch.full_like(ref, 1e-6)
    (loss * up.float()).sum().backward()
    (ref * up).sum().backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(w.grad).all()
    torch.testing.assert_close(h.grad.double(), h64.grad, rtol=2e-3, atol=1e-3)
    torch.testing.assert_close(w.grad.double(), w64.grad, rtol=2e-3, atol=1e-3)


def test_a_reduction_set_after_construction_is_validated_at_call_time():
    loss = ChunkedLinearCrossEntropyLoss()
    loss.reduction = "avg"
    with pytest.raises(ValueError, match="reduction"):
        loss(torch.randn(4, 8), torch.randn(16, 8), torch.randint(0, 16, (4,)))
