r"""Learning from label proportions: the proportion loss and MixBag's confidence-interval loss.

*MixBag: Bag-Level Data Augmentation for Learning from Label Proportions*, Asanomi et al.,
ICCV 2023 (arXiv:2308.08822).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.weak_supervision._bags import (
    Bags,
    check_constant_in_bags,
    prepare_bags,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_probability_target,
    check_reduction,
    check_same_shape,
    check_tensor,
)

__all__ = [
    "ConfidenceIntervalProportionLoss",
    "ProportionLoss",
    "confidence_interval_proportion_loss",
    "proportion_loss",
]


def _prepare(
    input: Tensor, target: Tensor, bag_ids: Tensor, validate_args: bool
) -> tuple[Tensor, Tensor, Bags]:
    """Checked `(log p̄ [m, C], π [m, C], bags)`: the log of each bag's mean probability."""
    check_tensor("input", input, floating=True)
    check_tensor("target", target, floating=True)
    if input.ndim != 2:
        raise ValueError(f"input must have shape [N, C], got {tuple(input.shape)}")
    check_same_shape("input", input, "target", target)
    bags = prepare_bags(bag_ids, input.shape[0])
    x = upcast(input)
    pi = upcast(target).to(x.dtype)
    if validate_args:
        check_probability_target("target", pi, validate_args=True)
        if pi.numel() and not bool(((pi.sum(1) - 1).abs() <= 1e-3).all()):
            raise ValueError("target must hold class proportions: each row must sum to 1")
        check_constant_in_bags("target", pi, bags)
    log_p = F.log_softmax(x, dim=1)
    # log of the bag mean of softmax, as a log-sum-exp over the bag: finite for any finite logit
    # (log(mean p + eps), as in the official code, is not needed). The max is a constant shift.
    shift = log_p.new_full((bags.num_bags, x.shape[1]), float("-inf"))
    shift = shift.scatter_reduce(
        0, bags.index[:, None].expand_as(log_p), log_p.detach(), "amax", include_self=False
    )
    shift = torch.nan_to_num(shift, nan=0.0, neginf=0.0, posinf=0.0)
    summed = log_p.new_zeros(shift.shape).index_add(
        0, bags.index, (log_p - shift[bags.index]).exp()
    )
    log_mean = summed.log() + shift - bags.counts.to(x.dtype).log()[:, None]
    bag_pi = log_p.new_zeros(shift.shape).index_copy(0, bags.index, pi)
    return log_mean, bag_pi, bags


def _per_instance(bag_loss: Tensor, bags: Bags, reduction: str) -> Tensor:
    # Shares N / (m |B|) of the bag losses: their mean over instances is the mean over bags.
    n = bags.index.shape[0]
    return reduce_loss(bag_loss[bags.index] * bags.instance_share(n, bag_loss.dtype), reduction)


def proportion_loss(
    input: Tensor,
    target: Tensor,
    bag_ids: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Proportion loss: cross-entropy between a bag's label proportions and its mean prediction.

    $$
    \mathcal{L} = \frac{1}{m}\sum_{b=1}^{m} -\sum_{c} \pi_{b,c}\log\bar p_{b,c},\qquad
    \bar p_{b} = \frac{1}{|B_b|}\sum_{i\in B_b}\operatorname{softmax}(z_i)
    $$

    over the $m$ bags of the batch, each counting once. $\log\bar p$ is computed as a
    log-sum-exp of the log-softmax over the bag, so it stays finite at logits of $\pm 10^4$
    where the official `-π · log(p̄ + 1e-8)` needs its `eps`; the two agree to about `1e-8`
    elsewhere (tested).

    **`reduction="none"`** returns `[N]` per-instance shares: instance $i$ of bag $b$ gets
    $\frac{N}{m|B_b|}$ times its bag's loss, so the mean is $\mathcal{L}$. Finding the bags
    costs one host sync (`torch.unique`).

    Paper: *MixBag: Bag-Level Data Augmentation for Learning from Label Proportions*, Asanomi
    et al., ICCV 2023 (arXiv:2308.08822), the proportion loss it builds on; checked against the
    official `ProportionLoss` (`asanomitakanori/Mixbag`, `utils/losses.py`: mean over bags of
    `-(π · log(p̄ + eps)).sum(-1)`).

    Args:
        input: instance logits `[N, C]`.
        target: the label proportions of each instance's bag `[N, C]` (rows sum to 1; every
            instance of a bag carries the same row).
        bag_ids: integer bag id of each instance `[N]` (any integers, not necessarily contiguous).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` shares, see above).
        validate_args: check `target` (in $[0, 1]$, rows summing to 1, constant within bags;
            host syncs).

    Returns:
        The loss, or `[N]` per-instance shares with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, invalid or non-constant proportions.
        TypeError: non-floating `input` / `target`, non-integer `bag_ids`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import proportion_loss
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> pi = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
        >>> proportion_loss(logits, pi, torch.tensor([4, 4, 9]))  # both bags predict (0.5, 0.5)
        tensor(0.6931)
    """
    check_reduction(reduction)
    log_mean, pi, bags = _prepare(input, target, bag_ids, validate_args)
    return _per_instance(-(pi * log_mean).sum(1), bags, reduction)


def confidence_interval_proportion_loss(
    input: Tensor,
    target: Tensor,
    bag_ids: Tensor,
    lower: Tensor,
    upper: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""MixBag's confidence-interval proportion loss: no penalty inside the interval.

    $$
    \mathcal{L} = \frac{1}{m}\sum_b\sum_c \begin{cases}
        -\pi_{b,c}\log\pi_{b,c} & \text{if } l_{b,c} \le \bar p_{b,c} \le u_{b,c}\\
        -\pi_{b,c}\log\bar p_{b,c} & \text{otherwise}
    \end{cases}
    $$

    The official implementation replaces $\bar p$ by $\pi$ wherever $\bar p$ lies inside the
    interval $[l, u]$, so those classes contribute the constant $-\pi\log\pi$ and no gradient;
    outside, the term is the proportion loss's. MixBag builds the interval for a mixed bag from
    the proportions and sizes of the two sub-bags it was drawn from (data side, not here); for
    an original bag it passes $l = u = -1$, an empty interval, which gives exactly
    [proportion_loss][lightning_losses.functional.proportion_loss]. We compute
    $-\pi\log\pi$ as `xlogy` (0 for $\pi = 0$) where the code uses `log(π + 1e-8)`.

    **`reduction="none"`**: `[N]` per-instance shares, as in `proportion_loss`. One host sync
    (`torch.unique`).

    Paper: *MixBag: Bag-Level Data Augmentation for Learning from Label Proportions*, Asanomi
    et al., ICCV 2023 (arXiv:2308.08822), the confidence-interval loss; verified against the
    official `ProportionLoss_CI` (`asanomitakanori/Mixbag`, `utils/losses.py`), reproduced in
    the tests.

    Args:
        input: instance logits `[N, C]`.
        target: the label proportions of each instance's bag `[N, C]` (constant within a bag).
        bag_ids: integer bag id of each instance `[N]` (any integers).
        lower: lower ends $l$ of the per-class intervals `[N, C]`, each instance carrying its
            bag's row.
        upper: upper ends $u$, `[N, C]`, like `lower`.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` shares).
        validate_args: check `target` as `proportion_loss` does, and that `lower` / `upper` are
            constant within bags (host syncs).

    Returns:
        The loss, or `[N]` per-instance shares with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, invalid or non-constant proportions or bounds.
        TypeError: non-floating tensors, non-integer `bag_ids`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import confidence_interval_proportion_loss
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
        >>> pi = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
        >>> bags = torch.tensor([0, 0])
        >>> lo, hi = torch.full((2, 2), 0.3), torch.full((2, 2), 0.8)
        >>> # p̄ = (0.69, 0.31) lies inside [0.3, 0.8] for both classes: the loss is −Σ π log π.
        >>> confidence_interval_proportion_loss(logits, pi, bags, lo, hi)
        tensor(0.6730)
    """
    check_reduction(reduction)
    log_mean, pi, bags = _prepare(input, target, bag_ids, validate_args)
    bounds = []
    for name, bound in (("lower", lower), ("upper", upper)):
        check_tensor(name, bound, floating=True)
        check_same_shape("input", input, name, bound)
        bound = upcast(bound).to(log_mean.dtype)
        if validate_args:
            check_constant_in_bags(name, bound, bags)
        bounds.append(log_mean.new_zeros(log_mean.shape).index_copy(0, bags.index, bound))
    p_mean = log_mean.exp()
    inside = (p_mean >= bounds[0]) & (p_mean <= bounds[1])
    terms = torch.where(inside, -torch.xlogy(pi, pi), -(pi * log_mean))
    return _per_instance(terms.sum(1), bags, reduction)


@register_loss("proportion", aliases=("llp_proportion",))
class ProportionLoss(Loss):
    r"""Proportion loss, $-\sum_c \pi_{b,c}\log\bar p_{b,c}$ averaged over bags (LLP).

    See [proportion_loss][lightning_losses.functional.proportion_loss] (arXiv:2308.08822).

    Args:
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` per-instance shares).
        validate_args: check `target` on every call.

    Shape:
        - input `[N, C]` logits, target `[N, C]` (each instance's bag proportions), bag_ids
          `[N]` integers.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ProportionLoss
        >>> pi = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
        >>> ProportionLoss()(torch.zeros(2, 2), pi, torch.tensor([3, 3]))
        tensor(0.6931)
    """

    functional = staticmethod(proportion_loss)
    input_kind = InputKind.CLASSIFICATION
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor, bag_ids: Tensor) -> Tensor:
        """Loss of logits `input [N, C]` against bag proportions `target [N, C]`, `bag_ids [N]`."""
        return self._call_functional(input, target, bag_ids)


@register_loss("confidence_interval_proportion", aliases=("ci_proportion",))
class ConfidenceIntervalProportionLoss(Loss):
    r"""MixBag's proportion loss with no penalty where $\bar p$ lies inside a given interval.

    See
    [confidence_interval_proportion_loss][lightning_losses.functional.confidence_interval_proportion_loss]
    (arXiv:2308.08822).

    Args:
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` per-instance shares).
        validate_args: check `target`, `lower` and `upper` on every call.

    Shape:
        - input `[N, C]` logits; target, lower, upper `[N, C]` (each instance's bag rows);
          bag_ids `[N]` integers.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ConfidenceIntervalProportionLoss
        >>> pi = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
        >>> no_interval = torch.full((2, 2), -1.0)  # MixBag's value for an original bag
        >>> loss = ConfidenceIntervalProportionLoss()
        >>> loss(torch.zeros(2, 2), pi, torch.tensor([3, 3]), no_interval, no_interval)
        tensor(0.6931)
    """

    functional = staticmethod(confidence_interval_proportion_loss)
    input_kind = InputKind.CLASSIFICATION
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(
        self, input: Tensor, target: Tensor, bag_ids: Tensor, lower: Tensor, upper: Tensor
    ) -> Tensor:
        """Loss of logits `input [N, C]` against `target [N, C]` with bounds `[N, C]`."""
        return self._call_functional(input, target, bag_ids, lower, upper)
