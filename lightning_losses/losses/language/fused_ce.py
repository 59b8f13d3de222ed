r"""Cross-entropy and z-loss of a language model's logits, fused on one log-sum-exp.

The z-loss $c\,(\log Z)^2$ of *Small-scale proxies for large-scale Transformer training
instabilities*, Wortsman et al., ICLR 2024 (arXiv:2309.14322; from PaLM, arXiv:2204.02311), is
computed from the same $\log Z$ as the cross-entropy, as Liger Kernel's `lse_square_scale` does
(*Liger Kernel: Efficient Triton Kernels for LLM Training*, Hsu et al., arXiv:2410.10989): no second
pass over the logits. The per-row math (`ce_z_rows`, `ce_z_grad_logits`) is shared with the
chunked linear cross-entropy of `chunked_ce.py`.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, overload

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from lightning_losses.losses._classification import ClassificationBatch, prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.language.zloss import z_loss_from_lse
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_number, check_reduction

__all__ = ["CrossEntropyWithZLoss", "LMLossOutput", "cross_entropy_with_z_loss"]


class LMLossOutput(NamedTuple):
    """What the language-model losses return with `return_z_loss=True`.

    Attributes:
        loss: the total objective (cross-entropy + z-loss), reduced as requested.
        z_loss: its z-loss part alone, reduced the same way and attached to the graph (log it
            with `.detach()`; do not add it to `loss` again).
    """

    loss: Tensor
    z_loss: Tensor


def _check_lm_ce_args(*, z_loss_coeff: Any, label_smoothing: Any, ignore_index: Any) -> dict:
    # The one validator of the LM cross-entropies' shared hyperparameters (fused and chunked).
    return {
        "z_loss_coeff": check_number("z_loss_coeff", z_loss_coeff, low=0.0),
        "label_smoothing": check_number("label_smoothing", label_smoothing, low=0.0, high=1.0),
        "ignore_index": check_ignore_index(ignore_index),
    }


def ce_z_rows(
    logits: Tensor, target: Tensor, label_smoothing: float, coeff: float
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Per-row `(ce, z_loss, lse)` of `[m, V]` logits from ONE log-sum-exp.

    $\ell^{CE} = \mathrm{lse} - (1-\varepsilon) z_y - \tfrac{\varepsilon}{V}\sum_k z_k$ (torch's
    label-smoothing convention) and $\ell^{z} = c\,\mathrm{lse}^2$.
    """
    lse = logits.logsumexp(-1)
    z_y = logits.gather(-1, target[:, None]).squeeze(-1)
    mean_z = logits.mean(-1) if label_smoothing > 0 else None
    ce, z = ce_z_from_lse(lse, z_y, mean_z, label_smoothing, coeff)
    return ce, z, lse


def ce_z_from_lse(
    lse: Tensor, z_y: Tensor, mean_z: Tensor | None, label_smoothing: float, coeff: float
) -> tuple[Tensor, Tensor]:
    r"""`(ce, z_loss)` rows from `lse`, the target logit `z_y` and (with smoothing) the row mean."""
    if label_smoothing > 0:
        assert mean_z is not None
        ce = lse - (1.0 - label_smoothing) * z_y - label_smoothing * mean_z
    else:
        ce = lse - z_y
    return ce, z_loss_from_lse(lse, coeff)


def softmax_rows_(
    logits: Tensor, target: Tensor, label_smoothing: float, coeff: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""`(p, ce, z_loss, lse)` of a fresh `[m, V]` chunk whose buffer becomes `p = softmax`.

    One fused `softmax` pass written over the logits (no second `[m, V]` buffer), then
    $\mathrm{lse} = \max_k z_k - \log \max_k p_k$: `logsumexp` followed by `exp` in the
    gradient costs two stand-alone `exp` passes instead, several times slower on CPU.
    """
    z_y = logits.gather(-1, target[:, None]).squeeze(-1)
    mean_z = logits.mean(-1) if label_smoothing > 0 else None
    z_max = logits.amax(-1)
    p = torch._softmax(logits, -1, False, out=logits)  # row-wise: safe in place
    lse = z_max.sub_(p.amax(-1).log_())
    ce, z = ce_z_from_lse(lse, z_y, mean_z, label_smoothing, coeff)
    return p, ce, z, lse


def ce_z_grad_logits(
    logits: Tensor,
    lse: Tensor,
    target: Tensor,
    g_ce: Tensor | None,
    g_z: Tensor | None,
    label_smoothing: float,
    coeff: float,
    *,
    inplace: bool = False,
    probs: bool = False,
) -> Tensor:
    r"""Gradient wrt `[m, V]` logits of $\sum_t g^{CE}_t \ell^{CE}_t + g^{z}_t \ell^{z}_t$.

    $\partial \ell^{CE}/\partial z = p - (1-\varepsilon) e_y - \varepsilon/V$ and
    $\partial \ell^{z}/\partial z = 2c\,\mathrm{lse}\,p$, so one `exp` pass gives both:
    $p\,(g^{CE} + 2c\,\mathrm{lse}\,g^{z}) - g^{CE}((1-\varepsilon)e_y + \varepsilon/V)$.
    With `inplace` the logits buffer becomes the gradient (the chunked path's fresh chunk);
    with `probs` it already holds $p$ (from `softmax_rows_`) and becomes the gradient.
    """
    if probs:
        p = logits
    else:
        p = logits.sub_(lse[:, None]) if inplace else logits - lse[:, None]
        p = p.exp_()
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    scale = g_ce if g_ce is not None else zero
    if g_z is not None and coeff > 0:
        scale = scale + (2.0 * coeff) * lse * g_z
    grad = p.mul_(scale[:, None] if scale.ndim else scale)
    if g_ce is not None:
        grad.scatter_add_(-1, target[:, None], (-(1.0 - label_smoothing) * g_ce)[:, None])
        if label_smoothing > 0:
            grad.sub_((label_smoothing / logits.shape[-1]) * g_ce[:, None])
    return grad


class _CrossEntropyZ(torch.autograd.Function):
    """`(ce_rows, z_rows)` of `[M, V]` logits; saves the logits (alive anyway) and `lse [M]`."""

    @staticmethod
    def forward(
        ctx: Any, logits: Tensor, target: Tensor, label_smoothing: float, coeff: float
    ) -> tuple[Tensor, Tensor]:
        ce, z, lse = ce_z_rows(logits, target, label_smoothing, coeff)
        ctx.save_for_backward(logits, target, lse)
        ctx.label_smoothing, ctx.coeff = label_smoothing, coeff
        ctx.set_materialize_grads(False)
        return ce, z

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_ce: Tensor | None, g_z: Tensor | None) -> tuple[Any, ...]:
        logits, target, lse = ctx.saved_tensors
        if g_ce is None and g_z is None:
            return None, None, None, None
        grad = ce_z_grad_logits(logits, lse, target, g_ce, g_z, ctx.label_smoothing, ctx.coeff)
        return grad, None, None, None


def _ce_z_batch(
    input: Tensor,
    target: Tensor,
    *,
    z_loss_coeff: float,
    label_smoothing: float,
    ignore_index: int | None,
    validate_args: bool,
) -> tuple[ClassificationBatch, Tensor, Tensor]:
    # Shared by the functional and the module: validated batch, total rows, z-loss rows.
    batch = prepare_classification(
        input, target, ignore_index=ignore_index, allow_soft=False, validate_args=validate_args
    )
    ce, z = _CrossEntropyZ.apply(batch.logits, batch.target, label_smoothing, z_loss_coeff)
    return batch, (ce + z if z_loss_coeff > 0 else ce), z


@overload
def cross_entropy_with_z_loss(
    input: Tensor,
    target: Tensor,
    *,
    z_loss_coeff: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_z_loss: Literal[False] = False,
    validate_args: bool = ...,
) -> Tensor: ...


@overload
def cross_entropy_with_z_loss(
    input: Tensor,
    target: Tensor,
    *,
    z_loss_coeff: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_z_loss: Literal[True],
    validate_args: bool = ...,
) -> LMLossOutput: ...


@overload
def cross_entropy_with_z_loss(
    input: Tensor,
    target: Tensor,
    *,
    z_loss_coeff: float = ...,
    label_smoothing: float = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    return_z_loss: bool,
    validate_args: bool = ...,
) -> Tensor | LMLossOutput: ...


def cross_entropy_with_z_loss(
    input: Tensor,
    target: Tensor,
    *,
    z_loss_coeff: float = 1e-4,
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    return_z_loss: bool = False,
    validate_args: bool = True,
) -> Tensor | LMLossOutput:
    r"""Token cross-entropy plus the logit z-loss, both from one log-sum-exp.

    $$
    \ell_t = \underbrace{\mathrm{lse}_t - (1-\varepsilon)\, z_{t,y_t}
        - \frac{\varepsilon}{V}\sum_{v} z_{t,v}}_{\text{cross-entropy}}
        + \underbrace{c\,\mathrm{lse}_t^2}_{\text{z-loss}},
    \qquad \mathrm{lse}_t = \log \sum_v e^{z_{t,v}}
    $$

    Liger Kernel's `LigerCrossEntropyLoss(lse_square_scale=c, label_smoothing=ε)` form
    (arXiv:2410.10989): the z-loss reuses the cross-entropy's $\mathrm{lse}$ instead of a second
    pass over the logits, and the backward is one `exp` pass,
    $p\,(1 + 2c\,\mathrm{lse}) - (1-\varepsilon)e_y - \varepsilon/V$. Autograd saves only the
    logits (already alive) and $\mathrm{lse}$ `[M]`, where `F.cross_entropy` also keeps an `[M, V]`
    log-softmax. With $c = 0$ it equals `F.cross_entropy(..., label_smoothing=ε)`.

    z-loss: *Small-scale proxies for large-scale Transformer training instabilities*,
    Wortsman et al. (arXiv:2309.14322), from PaLM (arXiv:2204.02311).
    Liger's kernel is Triton-only (GPU); this form was checked against a float64 reference of
    the same formula and against `F.cross_entropy` + `z_loss` (see tests/losses/test_language.py).

    Args:
        input: logits `[N, V, *]` (vocabulary at dimension 1; Hugging Face `[B, T, V]` logits go
            in as `logits.transpose(1, 2)`, a view).
        target: token ids `[N, *]`; positions equal to `ignore_index` count neither in the value,
            the mean nor the gradient.
        z_loss_coeff: $c \ge 0$ (default 1e-4, PaLM's value).
        label_smoothing: $\varepsilon \in [0, 1]$ (ignored positions are not smoothed).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]` per-token totals).
        return_z_loss: also return the z-loss part: an
            [LMLossOutput][lightning_losses.losses.LMLossOutput]
            `(loss, z_loss)`, both reduced by `reduction`.
        validate_args: check the token-id range of `target` (a host sync).

    Returns:
        The reduced total loss (or `[N, *]`), or `LMLossOutput(loss, z_loss)`.

    Raises:
        ValueError: bad shapes, `z_loss_coeff < 0`, `label_smoothing` outside `[0, 1]`, a token id
            outside `[0, V)`.
        TypeError: non-floating logits, non-integer `target`, `ignore_index` not an int.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import cross_entropy_with_z_loss
        >>> logits = torch.zeros(2, 4)  # lse = log 4 for both tokens
        >>> out = cross_entropy_with_z_loss(logits, torch.tensor([1, 2]), z_loss_coeff=1.0,
        ...                                 return_z_loss=True)
        >>> out.loss, out.z_loss  # log 4 + (log 4)^2, (log 4)^2
        (tensor(3.3081), tensor(1.9218))
    """
    check_reduction(reduction)
    hp = _check_lm_ce_args(
        z_loss_coeff=z_loss_coeff, label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    batch, total, z = _ce_z_batch(input, target, **hp, validate_args=validate_args)
    loss = reduce_loss(total, reduction, valid=batch.valid, out_shape=batch.out_shape)
    if not return_z_loss:
        return loss
    return LMLossOutput(
        loss, reduce_loss(z, reduction, valid=batch.valid, out_shape=batch.out_shape)
    )


@register_loss("cross_entropy_z_loss", aliases=("ce_z_loss", "ce_zloss"))
class CrossEntropyWithZLoss(Loss):
    r"""Token cross-entropy + logit z-loss from one log-sum-exp (arXiv:2309.14322, 2410.10989).

    See [cross_entropy_with_z_loss][lightning_losses.functional.cross_entropy_with_z_loss] for
    the formula. `forward(input, target)` returns the total (CE + z-loss) and leaves the
    detached z-loss part, averaged over the non-ignored tokens, in `last_z_loss` for logging
    (`None` before the first call), so a recipe logs it without a second pass.

    Args:
        z_loss_coeff: coefficient $c \ge 0$ (default 1e-4).
        label_smoothing: $\varepsilon \in [0, 1]$.
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check the token-id range of `target` on every call (a host sync).

    Shape:
        - input: `[N, V, *]` logits; target: `[N, *]` token ids.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CrossEntropyWithZLoss
        >>> loss = CrossEntropyWithZLoss(z_loss_coeff=1e-2)
        >>> loss(torch.zeros(3, 4), torch.tensor([0, 1, -100]))  # log 4 + 1e-2 (log 4)^2
        tensor(1.4055)
        >>> loss.last_z_loss
        tensor(0.0192)
    """

    functional = staticmethod(cross_entropy_with_z_loss)
    input_kind = InputKind.SEQUENCES

    # The hyperparameters, stored by the `Loss` base.
    z_loss_coeff: float
    label_smoothing: float
    ignore_index: int | None

    def __init__(
        self,
        z_loss_coeff: float = 1e-4,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
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
        )
        self.last_z_loss: Tensor | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Total (cross-entropy + z-loss) of logits `input [N, C, *]` against `target [N, *]`.

        The z-loss mean of the call is kept in `last_z_loss`.
        """
        check_reduction(self.reduction)  # an attribute set after construction is checked too
        batch, total, z = _ce_z_batch(
            input, target, **self.hparams, validate_args=self.validate_args
        )
        self.last_z_loss = reduce_loss(z.detach(), "mean", valid=batch.valid)
        return reduce_loss(total, self.reduction, valid=batch.valid, out_shape=batch.out_shape)
