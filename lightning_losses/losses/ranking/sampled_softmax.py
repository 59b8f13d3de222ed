r"""Sampled softmax over a positive and K sampled negatives, with optional logQ correction.

Sampled softmax: *On Using Very Large Target Vocabulary for Neural Machine Translation*, Jean et
al., ACL 2015 (arXiv:1412.2007). logQ correction: *Sampling-Bias-Corrected Neural Modeling for
Large Corpus Item Recommendations*, Yi et al., RecSys 2019.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.ranking._scores import prepare_scores
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_bool,
    check_finite_tensor,
    check_number,
    check_reduction,
    check_tensor,
)

__all__ = ["SampledSoftmaxLoss", "sampled_softmax_loss"]


def _check_sampled_softmax_args(*, temperature: Any, logq_correction: Any) -> dict[str, Any]:
    # The one validator of sampled_softmax_loss's hyperparameters (functional and class).
    return {
        "temperature": check_number("temperature", temperature, low=0.0, low_inclusive=False),
        "logq_correction": check_bool("logq_correction", logq_correction),
    }


def _sampled_softmax_expr(
    pos: Tensor, neg: Tensor, log_q: Tensor | None, inv_tau: float, reduction: str
) -> Tensor:
    # The textbook expression through autograd: the twice-differentiable path (create_graph=True).
    neg = neg - log_q if log_q is not None else neg
    logits = torch.cat([pos[:, None], neg], 1) * inv_tau
    return reduce_loss(logits.logsumexp(1) - logits[:, 0], reduction)


class _SampledSoftmax(torch.autograd.Function):
    r"""$\log\big(e^{z_0} + \sum_j e^{z_j}\big) - z_0$ with $z = [s^+, s^- - \log Q] / \tau$.

    The same value and gradient as `F.cross_entropy(cat([s⁺, s⁻ − log Q], 1) / τ, 0)`, without
    materialising the concatenation. The negatives go through one `softmax`,
    $q_j = e^{z_j - m} / S$ with $m = \max_j z_j$ (ATen's fused kernel: its `exp` is several
    times cheaper on CPU than a stand-alone `torch.exp`, most of all where $e^{z_j - m}$ is
    subnormal, as at $\tau = 0.1$), and $\log S = -\log \max_j q_j$ (the largest $q_j$ is
    $1/S$). With $d = m + \log S - z_0$ (the negatives' log-sum-exp minus the positive's
    logit), the row loss is $\operatorname{softplus}(d)$, $1 - p_0 = \sigma(d)$, and the
    gradients are $\partial\ell/\partial s^-_j = \sigma(d)\,q_j/\tau$ and
    $\partial\ell/\partial s^+ = -\sigma(d)/\tau$: one `[N, K]` tensor ($q$) is saved and
    the backward is one multiply. Under `create_graph=True` the backward differentiates the
    expression itself, so higher-order gradients are right (at autograd's cost).
    """

    @staticmethod
    def forward(
        ctx: Any,
        pos: Tensor,
        neg: Tensor,
        log_q: Tensor | None,
        inv_tau: float,
        reduction: str,
    ) -> Tensor:
        logits = neg - log_q if log_q is not None else neg
        if inv_tau != 1.0:
            logits = logits * inv_tau if log_q is None else logits.mul_(inv_tau)
        q = logits.softmax(1)
        # d = m + log S - z₀ = m - log max_j q_j - s⁺/τ (two value-only row maxima, [N] math).
        d = logits.amax(1).sub_(q.amax(1).log_()).sub_(pos * inv_tau)
        rows = F.softplus(d)
        ctx.save_for_backward(q, d, pos, neg, log_q)
        ctx.inv_tau, ctx.reduction, ctx.has_log_q = inv_tau, reduction, log_q is not None
        if reduction == "none":
            return rows
        out = rows.sum()
        return out.div_(max(rows.shape[0], 1)) if reduction == "mean" else out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        q, d, pos, neg, log_q = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            with torch.enable_grad():
                out = _sampled_softmax_expr(pos, neg, log_q, ctx.inv_tau, ctx.reduction)
            inputs = (pos, neg, log_q)
            wrt = [x for x, need in zip(inputs, ctx.needs_input_grad[:3]) if need]
            got = iter(torch.autograd.grad(out, wrt, grad, create_graph=True))
            return *(next(got) if need else None for need in ctx.needs_input_grad[:3]), None, None
        scale = torch.sigmoid(d).mul_(ctx.inv_tau)  # (1 − p₀)/τ, [N]
        if ctx.reduction == "none":
            scale = scale * grad
        else:
            n = max(d.shape[0], 1) if ctx.reduction == "mean" else 1
            scale = scale * (grad / n)
        grad_pos = scale.neg() if ctx.needs_input_grad[0] else None  # (p₀ − 1)/τ · g
        grad_neg = q * scale[:, None]
        grad_log_q = -grad_neg if ctx.has_log_q and ctx.needs_input_grad[2] else None
        return grad_pos, grad_neg if ctx.needs_input_grad[1] else None, grad_log_q, None, None


def sampled_softmax_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    neg_log_q: Tensor | None = None,
    *,
    temperature: float = 1.0,
    logq_correction: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Sampled softmax over the positive and K sampled negatives, with optional logQ correction.

    $$
    \ell_{ui} = -\log\frac{e^{s_{ui}/\tau}}
    {e^{s_{ui}/\tau} + \sum_{j} e^{(s_{uj} - \log Q_j)/\tau}}
    $$

    Without correction ($\log Q = 0$) this is
    `F.cross_entropy(torch.cat([s⁺[:, None], s⁻], 1) / τ, 0)`, same value and gradient; it is
    computed without building the concatenated `[N, K + 1]` logits (one `[N, K]` tensor is saved
    for backward). The correction subtracts the log
    sampling probability of each negative (Yi et al., RecSys 2019), which removes the
    popularity bias of non-uniform negative sampling; a gradient flows into `neg_log_q` if it
    requires one.

    Ranking losses take no class target (the positive is always column 0), so they keep the
    recommendation names `pos_score` / `neg_score` instead of `input` / `target`.

    Papers: *On Using Very Large Target Vocabulary for Neural Machine Translation*, Jean et al.,
    ACL 2015 (arXiv:1412.2007) for sampled softmax; logQ correction from
    *Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations*, Yi et al.,
    RecSys 2019.

    Args:
        pos_score: scores of the observed items `[N]`.
        neg_score: scores of the negatives `[N]` or `[N, K]`.
        neg_log_q: log sampling probabilities of the negatives, shaped like `neg_score`;
            required with `logq_correction=True` and rejected otherwise.
        temperature: $\tau > 0$.
        logq_correction: subtract `neg_log_q` from the negative scores.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: check that `neg_log_q` is finite (a host sync); shapes are always checked.

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: bad shapes, `temperature ≤ 0`, `neg_log_q` missing / unexpected / non-finite.
        TypeError: non-floating scores, `logq_correction` not a bool.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sampled_softmax_loss
        >>> sampled_softmax_loss(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]))
        tensor(0.4076)
        >>> sampled_softmax_loss(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]), temperature=0.5)
        tensor(0.1429)
    """
    check_reduction(reduction)
    hp = _check_sampled_softmax_args(temperature=temperature, logq_correction=logq_correction)
    pos, neg = prepare_scores(pos_score, neg_score)
    log_q = None
    if hp["logq_correction"]:
        if neg_log_q is None:
            raise ValueError("neg_log_q is required when logq_correction=True, got None")
        check_tensor("neg_log_q", neg_log_q, floating=True)
        log_q = neg_log_q.unsqueeze(1) if neg_log_q.ndim == 1 else neg_log_q
        if log_q.shape != neg.shape:
            raise ValueError(
                f"neg_log_q must have the shape of neg_score {tuple(neg_score.shape)}, "
                f"got {tuple(neg_log_q.shape)}"
            )
        if validate_args:
            check_finite_tensor("neg_log_q", neg_log_q)
        log_q = upcast(log_q).to(neg.dtype)
    elif neg_log_q is not None:
        raise ValueError("neg_log_q was given but logq_correction=False; set logq_correction=True")
    return _SampledSoftmax.apply(pos, neg, log_q, 1.0 / hp["temperature"], reduction)


@register_loss("sampled_softmax", aliases=("ssm",))
class SampledSoftmaxLoss(Loss):
    r"""Sampled softmax $-\log\mathrm{softmax}([s^+, s^- - \log Q]/\tau)_0$.

    See [sampled_softmax_loss][lightning_losses.functional.sampled_softmax_loss] for the formula
    (arXiv:1412.2007). `forward(pos_score, neg_score, neg_log_q=None)`: no class target, so the
    arguments keep their recommendation names (`target_arg` is `None`).

    Args:
        temperature: $\tau > 0$ (default 1).
        logq_correction: subtract the negatives' log sampling probability (`neg_log_q`).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that `neg_log_q` is finite on every call (a host sync).

    Shape:
        - pos_score: `[N]`; neg_score: `[N]` or `[N, K]`; neg_log_q: like neg_score.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SampledSoftmaxLoss
        >>> SampledSoftmaxLoss()(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]))
        tensor(0.4076)
        >>> SampledSoftmaxLoss(temperature=0.1)
        SampledSoftmaxLoss(temperature=0.1, logq_correction=False, reduction='mean')
    """

    functional = staticmethod(sampled_softmax_loss)
    input_kind = InputKind.RANKING
    target_arg = None

    def __init__(
        self,
        temperature: float = 1.0,
        logq_correction: bool = False,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_sampled_softmax_args(temperature=temperature, logq_correction=logq_correction),
        )

    def forward(
        self,
        pos_score: Tensor,
        neg_score: Tensor,
        neg_log_q: Tensor | None = None,
    ) -> Tensor:
        """Loss of `pos_score [N]`, `neg_score [N, K]`; `neg_log_q [N, K]`: log sampling probs."""
        return self._call_functional(pos_score, neg_score, neg_log_q)
