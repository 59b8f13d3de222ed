r"""Bayesian personalised ranking (BPR) loss with RecBole's `gamma` guard.

*BPR: Bayesian Personalized Ranking from Implicit Feedback*, Rendle et al., UAI 2009
(arXiv:1205.2618).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import softplus_from_sigmoid
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.ranking._scores import prepare_scores
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction

__all__ = ["BPRLoss", "bpr_loss"]


def _check_bpr_args(*, gamma: Any) -> dict[str, Any]:
    # The one validator of bpr_loss's hyperparameters: the functional and the class use it.
    return {"gamma": check_number("gamma", gamma, low=0.0)}


def _guarded_bpr_expr(pos: Tensor, neg: Tensor, gamma: float, reduction: str) -> Tensor:
    # RecBole's expression through autograd: the twice-differentiable path (create_graph=True).
    diff = pos[:, None] - neg if neg.ndim == 2 else pos - neg
    rows = -F.softplus(-diff) if gamma == 0 else torch.log(torch.sigmoid(diff) + gamma)
    rows = (rows.mean(1) if neg.ndim == 2 else rows).neg()
    return reduce_loss(rows, reduction)


class _FusedBPR(torch.autograd.Function):
    r"""$\sum$ or per-row mean over $K$ of $-\log(\sigma(s^+ - s^-) + \gamma)$.

    $\gamma = 0$ is $\operatorname{softplus}(s^- - s^+)$, computed stably with its slope
    $\sigma(s^- - s^+)$ from one sigmoid and one log (`softplus_from_sigmoid`).

    Forward and backward are fused by hand: autograd of the RecBole expression saves two
    `[N, K]` tensors (the sigmoid output and the log input) and runs five `[N, K]` passes in
    backward. Here the forward computes the closed-form slope
    $\partial\ell/\partial\Delta = -\sigma(\Delta)(1 - \sigma(\Delta)) / (\sigma(\Delta) + \gamma)$
    (the same expression autograd evaluates for RecBole's formula) in place, saves only it, and
    the backward is one multiply (and a row sum for the positive). $\sigma(\Delta) + \gamma \ge
    \gamma > 0$, so value and gradient are finite for any finite score. Under
    `create_graph=True` the backward differentiates the expression itself, so higher-order
    gradients are right (at autograd's cost).
    """

    @staticmethod
    def forward(ctx: Any, pos: Tensor, neg: Tensor, gamma: float, reduction: str) -> Tensor:
        # neg is [N, K] or [N] (K = 1: no broadcast, no sum over negatives).
        k = neg.shape[1] if neg.ndim == 2 else 1
        n = max(pos.shape[0], 1) if reduction == "mean" else 1
        scale = 1.0 / k if reduction == "none" else 1.0 / (k * n)
        pos_b = pos[:, None] if neg.ndim == 2 else pos
        if gamma == 0:
            # softplus(−Δ) with its slope σ(−Δ) = ∂ℓ/∂s⁻ from one sigmoid and one log
            # (`F.softplus` and its backward each evaluate an `exp`, several times slower on CPU).
            minus_diff = torch.sub(neg, pos_b)
            slope = torch.sigmoid(minus_diff)
            log_t = softplus_from_sigmoid(minus_diff, slope).neg_()  # log σ(Δ), stable
            del minus_diff
            slope.mul_(scale)
        else:
            sig = torch.sub(pos_b, neg).sigmoid_()
            shifted = torch.add(sig, gamma)
            # The one saved tensor: scale · σ(Δ)(1 − σ(Δ)) / (σ(Δ) + γ) = scale · ∂ℓ/∂s⁻.
            log_t = shifted.log()
            slope = sig.addcmul_(sig, sig, value=-1.0).div_(shifted).mul_(scale)
        ctx.save_for_backward(slope, pos, neg)
        ctx.gamma, ctx.reduction = gamma, reduction
        if reduction == "none":
            return log_t.sum(1).mul_(-scale) if neg.ndim == 2 else log_t.neg_()
        return log_t.sum().mul_(-scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        slope, pos, neg = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            with torch.enable_grad():
                out = _guarded_bpr_expr(pos, neg, ctx.gamma, ctx.reduction)
            wrt = [x for x, need in zip((pos, neg), ctx.needs_input_grad[:2]) if need]
            got = iter(torch.autograd.grad(out, wrt, grad, create_graph=True))
            g_pos, g_neg = (next(got) if need else None for need in ctx.needs_input_grad[:2])
            return g_pos, g_neg, None, None
        # d loss / d neg = +slope · grad ; d loss / d pos = −Σ_j of it.
        grad_neg = slope * (grad[:, None] if ctx.reduction == "none" and slope.ndim == 2 else grad)
        grad_pos = None
        if ctx.needs_input_grad[0]:
            grad_pos = grad_neg.sum(1).neg_() if slope.ndim == 2 else grad_neg.neg()
        return grad_pos, grad_neg if ctx.needs_input_grad[1] else None, None, None


def bpr_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    gamma: float = 1e-10,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Bayesian personalised ranking loss, averaged over the sampled negatives.

    $$
    \ell_{ui} = \frac{1}{K}\sum_{j=1}^{K} -\log\big(\sigma(s_{ui} - s_{uj}) + \gamma\big)
    $$

    `gamma` is RecBole's guard (`recbole.model.loss.BPRLoss`, default `1e-10`): with it the
    loss is RecBole's expression, evaluated by a fused forward/backward that saves one `[N, K]`
    tensor instead of two; a hopeless pair ($s_{ui} - s_{uj} = -10^4$) costs $-\log\gamma$ and
    gets zero gradient, as in RecBole. `gamma=0` is exactly
    $\operatorname{softplus}(-(s_{ui} - s_{uj}))$, computed stably, so scores of $\pm 10^4$
    stay finite either way.

    Ranking losses take no class target, so they keep the recommendation names `pos_score` /
    `neg_score` (RecBole's) instead of `input` / `target`: both arguments are predictions and
    both receive a gradient.

    Paper: *BPR: Bayesian Personalized Ranking from Implicit Feedback*, Rendle et al., UAI 2009
    (arXiv:1205.2618).

    Args:
        pos_score: scores of the observed items `[N]`.
        neg_score: scores of the sampled negatives `[N]` or `[N, K]`.
        gamma: additive guard inside the log, $\ge 0$.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`, one loss per interaction).
        validate_args: accepted for the common signature; this loss has no host-syncing data
            check (shapes and dtypes are always checked).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: bad shapes or `gamma < 0`.
        TypeError: non-floating scores.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import bpr_loss
        >>> bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
        tensor(0.4100)
        >>> bpr_loss(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]), reduction="none")
        tensor([0.8133])
    """
    check_reduction(reduction)
    gamma = _check_bpr_args(gamma=gamma)["gamma"]
    pos, neg = prepare_scores(pos_score, neg_score, as_2d=False)
    return _FusedBPR.apply(pos, neg, gamma, reduction)


@register_loss("bpr")
class BPRLoss(Loss):
    r"""Bayesian personalised ranking: $-\log(\sigma(s^+ - s^-) + \gamma)$, mean over negatives.

    See [bpr_loss][lightning_losses.functional.bpr_loss] for the formula (arXiv:1205.2618).
    `forward(pos_score, neg_score)`: ranking losses have no class target, so the arguments keep
    their recommendation names (`target_arg` is `None`).

    Args:
        gamma: guard inside the log (RecBole default `1e-10`; `0` gives pure softplus).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Shape:
        - pos_score: `[N]`; neg_score: `[N]` or `[N, K]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import BPRLoss
        >>> BPRLoss(gamma=0.0)(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
        tensor(0.4100)
        >>> BPRLoss()
        BPRLoss(gamma=1e-10, reduction='mean')
    """

    functional = staticmethod(bpr_loss)
    input_kind = InputKind.RANKING
    target_arg = None

    def __init__(
        self, gamma: float = 1e-10, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_bpr_args(gamma=gamma)
        )

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        """Loss of positive scores `pos_score [N]` against negatives `neg_score [N, K]` or `[N]`."""
        return self._call_functional(pos_score, neg_score)
