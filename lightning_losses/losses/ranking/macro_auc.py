r"""Macro-AUC surrogate losses for multi-label learning: pairwise and reweighted univariate.

*Towards Understanding Generalization of Macro-AUC in Multi-label Learning*, Wu, Li & Yin,
ICML 2023 (arXiv:2305.05248).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_choice,
    check_number,
    check_reduction,
    check_same_shape,
    check_tensor,
)

__all__ = [
    "PairwiseMacroAUCLoss",
    "ReweightedUnivariateAUCLoss",
    "pairwise_macro_auc_loss",
    "reweighted_univariate_auc_loss",
]

SURROGATES = ("squared_hinge", "hinge", "logistic")

# Elements of one [N, N, labels] block of pair terms. Larger problems are cut into label chunks
# recomputed in backward (activation checkpointing), so memory stays O(N² · chunk), not O(N² L).
_PAIR_BLOCK_ELEMENTS = 1 << 22


def _check_pairwise_args(*, surrogate: Any, margin: Any) -> dict[str, Any]:
    # The one validator of pairwise_macro_auc_loss's hyperparameters (functional and class).
    return {
        "surrogate": check_choice("surrogate", surrogate, SURROGATES),
        "margin": check_number("margin", margin, low=0.0),
    }


def _prepare_multilabel(
    input: Tensor, target: Tensor, validate_args: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`(x [N, L], y [N, L] bool, valid [L] bool, n_pos [L])` after the shape / value checks."""
    check_tensor("input", input, floating=True)
    check_tensor("target", target)
    if input.ndim not in (1, 2):
        raise ValueError(f"input must have shape [N, L] or [N], got {tuple(input.shape)}")
    check_same_shape("input", input, "target", target)
    if validate_args and target.numel():
        binary = (target == 0) | (target == 1)
        if not bool(binary.all()):
            bad = target[~binary][0].item()
            raise ValueError(f"target must be binary (0 or 1), got a value {bad}")
    x = upcast(input)
    y = target != 0
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    n_pos = y.sum(0)
    # A label without a positive or without a negative has no pair: it is skipped.
    valid = (n_pos > 0) & (n_pos < y.shape[0])
    return x, y, valid, n_pos


def _macro_scale(n: int, valid: Tensor, like: Tensor) -> Tensor:
    # N / |K_valid|, so that the mean over the N per-sample terms is the macro average over the
    # valid labels; 0 when no label is valid (the loss is then exactly 0 with zero gradient).
    k = valid.sum().to(like.dtype)
    return torch.where(
        k > 0, n / k.clamp_min(1), torch.zeros((), dtype=like.dtype, device=like.device)
    )


def _surrogate_fn(surrogate: str) -> Callable[[Tensor], Tensor]:
    if surrogate == "squared_hinge":
        return lambda t: F.relu(t).square()
    if surrogate == "hinge":
        return F.relu
    return F.softplus


def _pair_block(x: Tensor, y: Tensor, w: Tensor, surrogate: str, margin: float) -> Tensor:
    # Per-sample half-shares of the weighted pair terms of a block of labels: [N].
    # diff[i, j, k] = f_k(x_i) − f_k(x_j), used where i is a positive and j a negative of k.
    pair = y[:, None, :] & ~y[None, :, :]
    phi = _surrogate_fn(surrogate)(margin - (x[:, None, :] - x[None, :, :]))
    terms = torch.where(pair, phi, torch.zeros((), dtype=x.dtype, device=x.device)) * w
    return 0.5 * (terms.sum((1, 2)) + terms.sum((0, 2)))


def pairwise_macro_auc_loss(
    input: Tensor,
    target: Tensor,
    *,
    surrogate: str = "squared_hinge",
    margin: float = 1.0,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Pairwise surrogate of one minus the macro-AUC of a multi-label scorer.

    $$
    \mathcal{L} = \frac{1}{|\mathcal{K}|}\sum_{k\in\mathcal{K}}
        \frac{1}{|P_k|\,|N_k|}\sum_{p\in P_k}\sum_{n\in N_k}
        \phi\big(m - (f_k(x_p) - f_k(x_n))\big)
    $$

    with $P_k$ / $N_k$ the positives / negatives of label $k$ in the batch, $m$ = `margin`, and
    $\phi(t) = \max(0, t)^2$ (`"squared_hinge"`), $\max(0, t)$ (`"hinge"`) or
    $\log(1 + e^{t})$ (`"logistic"`; with `margin=0` it is the pairwise logistic / RankNet
    loss $\log(1 + e^{-(f_k(x_p) - f_k(x_n))})$). Each label's term is a surrogate of
    $1 - \mathrm{AUC}_k$; the losses are averaged over the labels (macro).

    **Degenerate labels.** A label with no positive or no negative in the batch has no pair and
    is skipped: $\mathcal{K}$ is the set of labels that have both. A batch where every label is
    degenerate gives exactly 0 with zero gradient.

    **`reduction="none"`** returns one value per sample `[N]`: each pair's term is split in
    half between its positive and its negative, scaled by $N$ so that the mean of the `[N]`
    values is $\mathcal{L}$ (and `"sum"` is $N\mathcal{L}$). The shares depend on the whole
    batch, as the loss does.

    **Cost.** $O(N^2 L)$ time. The pair terms are built per block of labels; when $N^2 L$
    exceeds $2^{22}$ elements the blocks are recomputed in backward (activation
    checkpointing), so memory is $O(N^2)$ per block, never the full $[N, N, L]$ tensor.

    Paper: *Towards Understanding Generalization of Macro-AUC in Multi-label Learning*, Wu,
    Li & Yin, ICML 2023 (arXiv:2305.05248): the pairwise-loss algorithm (their $\mathcal{A}^{pa}$).

    Args:
        input: scores (logits) `[N, L]`, or `[N]` for one label.
        target: binary labels `[N, L]` (0 / 1, any dtype), the shape of `input`.
        surrogate: `"squared_hinge" | "hinge" | "logistic"`.
        margin: $m \ge 0$; pairs ranked apart by at least $m$ cost 0 under the hinges.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`, see above).
        validate_args: check that `target` is binary (a host sync).

    Returns:
        The loss, or `[N]` per-sample shares with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, an input that is not `[N, L]` or `[N]`, a non-binary
            target (with `validate_args`), a bad `surrogate` or `margin`.
        TypeError: non-floating `input`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import pairwise_macro_auc_loss
        >>> x = torch.tensor([[2.0, 0.0], [0.5, 2.5], [-1.0, 3.0]])
        >>> y = torch.tensor([[1, 0], [0, 0], [0, 1]])
        >>> pairwise_macro_auc_loss(x, y)
        tensor(0.0625)
        >>> pairwise_macro_auc_loss(x, y, surrogate="hinge", margin=0.0)  # both labels ranked
        tensor(0.)
    """
    check_reduction(reduction)
    hp = _check_pairwise_args(surrogate=surrogate, margin=margin)
    x, y, valid, n_pos = _prepare_multilabel(input, target, validate_args)
    n, num_labels = x.shape
    n_neg = n - n_pos
    w = torch.where(valid, 1.0 / (n_pos * n_neg).clamp_min(1).to(x.dtype), 0.0).to(x.dtype)
    block = max(1, _PAIR_BLOCK_ELEMENTS // max(n * n, 1))
    chunked = n * n * num_labels > _PAIR_BLOCK_ELEMENTS and torch.is_grad_enabled()
    shares = x.new_zeros(n)
    for lo in range(0, num_labels, block):
        args = (x[:, lo : lo + block], y[:, lo : lo + block], w[lo : lo + block])
        if chunked:
            part = checkpoint(
                _pair_block, *args, hp["surrogate"], hp["margin"], use_reentrant=False
            )
        else:
            part = _pair_block(*args, hp["surrogate"], hp["margin"])
        shares = shares + part
    return reduce_loss(shares * _macro_scale(n, valid, x), reduction)


def reweighted_univariate_auc_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Binary cross-entropy reweighted per label by the inverse class counts (a macro-AUC loss).

    $$
    \mathcal{L} = \frac{1}{|\mathcal{K}|}\sum_{k\in\mathcal{K}}\Big(
        \frac{1}{|P_k|}\sum_{p\in P_k}\ell\big(f_k(x_p)\big)
        + \frac{1}{|N_k|}\sum_{n\in N_k}\ell\big(-f_k(x_n)\big)\Big),\qquad
    \ell(t) = \log(1 + e^{-t})
    $$

    i.e. `binary_cross_entropy_with_logits` with positives of label $k$ weighted $1/|P_k|$ and
    negatives $1/|N_k|$, summed over the batch and averaged over the labels. It equals the
    pairwise form $\frac{1}{|P_k||N_k|}\sum_{p,n}[\ell(f_k(x_p)) + \ell(-f_k(x_n))]$ of the
    paper (the reweighted loss is the pairwise average of a univariate loss), computed in
    $O(NL)$. A constant score 0 gives $2\log 2$. Unlike plain BCE, every label contributes
    equally whatever its imbalance, as in the macro-AUC.

    **Degenerate labels** (no positive or no negative in the batch) are skipped, as in
    [pairwise_macro_auc_loss][lightning_losses.functional.pairwise_macro_auc_loss]; an
    all-degenerate batch gives exactly 0 with zero gradient. **`reduction="none"`** returns
    $N/|\mathcal{K}|\sum_k w_{ik}\,\mathrm{BCE}_{ik}$ per sample `[N]`, whose mean is
    $\mathcal{L}$.

    Paper: *Towards Understanding Generalization of Macro-AUC in Multi-label Learning*, Wu,
    Li & Yin, ICML 2023 (arXiv:2305.05248): the reweighted-loss algorithm (their $\mathcal{A}^{rw}$)
    with the logistic base loss.

    Args:
        input: logits `[N, L]`, or `[N]` for one label.
        target: binary labels `[N, L]` (0 / 1, any dtype), the shape of `input`.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: check that `target` is binary (a host sync).

    Returns:
        The loss, or `[N]` per-sample terms with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, an input that is not `[N, L]` or `[N]`, a non-binary
            target (with `validate_args`).
        TypeError: non-floating `input`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import reweighted_univariate_auc_loss
        >>> y = torch.tensor([[1, 0], [0, 0], [0, 1], [0, 1]])
        >>> reweighted_univariate_auc_loss(torch.zeros(4, 2), y)  # constant scores: 2 log 2
        tensor(1.3863)
    """
    check_reduction(reduction)
    x, y, valid, n_pos = _prepare_multilabel(input, target, validate_args)
    n = x.shape[0]
    yf = y.to(x.dtype)
    n_neg = n - n_pos
    w = yf / n_pos.clamp_min(1).to(x.dtype) + (1 - yf) / n_neg.clamp_min(1).to(x.dtype)
    bce = F.binary_cross_entropy_with_logits(x, yf, reduction="none")
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    rows = torch.where(valid[None, :], w * bce, zero).sum(1)
    return reduce_loss(rows * _macro_scale(n, valid, x), reduction)


@register_loss("pairwise_macro_auc")
class PairwiseMacroAUCLoss(Loss):
    r"""Pairwise macro-AUC surrogate: per label, mean of $\phi(m - (f(p) - f(n)))$ over pairs.

    See [pairwise_macro_auc_loss][lightning_losses.functional.pairwise_macro_auc_loss] for the
    formula, the handling of labels without positives or negatives (skipped) and what
    `reduction="none"` returns. Paper: Wu, Li & Yin, ICML 2023 (arXiv:2305.05248).

    Args:
        surrogate: `"squared_hinge"` (default), `"hinge"` or `"logistic"`.
        margin: $m \ge 0$ (default 1.0).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that `target` is binary on every call.

    Shape:
        - input: `[N, L]` or `[N]`; target: the same shape, 0 / 1.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PairwiseMacroAUCLoss
        >>> x = torch.tensor([[2.0, 0.0], [0.5, 2.5], [-1.0, 3.0]])
        >>> PairwiseMacroAUCLoss()(x, torch.tensor([[1, 0], [0, 0], [0, 1]]))
        tensor(0.0625)
        >>> PairwiseMacroAUCLoss()
        PairwiseMacroAUCLoss(surrogate='squared_hinge', margin=1.0, reduction='mean')
    """

    functional = staticmethod(pairwise_macro_auc_loss)
    input_kind = InputKind.MULTILABEL
    target_arg = None

    def __init__(
        self,
        surrogate: str = "squared_hinge",
        margin: float = 1.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_pairwise_args(surrogate=surrogate, margin=margin),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of scores `input [N, L]` against binary labels `target [N, L]`."""
        return self._call_functional(input, target)


@register_loss("reweighted_univariate_auc")
class ReweightedUnivariateAUCLoss(Loss):
    r"""BCE with positives weighted $1/|P_k|$ and negatives $1/|N_k|$, averaged over labels.

    See [reweighted_univariate_auc_loss][lightning_losses.functional.reweighted_univariate_auc_loss]
    for the formula and the handling of degenerate labels. Paper: Wu, Li & Yin, ICML 2023
    (arXiv:2305.05248).

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check that `target` is binary on every call.

    Shape:
        - input: `[N, L]` or `[N]`; target: the same shape, 0 / 1.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ReweightedUnivariateAUCLoss
        >>> ReweightedUnivariateAUCLoss()(torch.zeros(3, 1), torch.tensor([[1], [0], [0]]))
        tensor(1.3863)
    """

    functional = staticmethod(reweighted_univariate_auc_loss)
    input_kind = InputKind.MULTILABEL
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, L]` against binary labels `target [N, L]`."""
        return self._call_functional(input, target)
