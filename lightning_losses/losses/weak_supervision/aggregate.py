r"""Learning from aggregate responses: bag-level, instance-level and interpolating squared losses.

*Learning from Aggregate responses: Instance Level versus Bag Level Loss Functions*, Javanmard,
Chen, Mirrokni, Badanidiyuru & Fu, ICLR 2024 (arXiv:2401.11081).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.weak_supervision._bags import check_constant_in_bags, prepare_bags
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_number,
    check_reduction,
    check_same_shape,
    check_tensor,
)

__all__ = [
    "BagLevelLoss",
    "InstanceLevelLoss",
    "InterpolatingAggregateLoss",
    "bag_level_loss",
    "instance_level_loss",
    "interpolating_aggregate_loss",
]


def _check_rho(*, rho: Any) -> dict[str, Any]:
    # The one validator of interpolating_aggregate_loss's hyperparameter (functional and class).
    return {"rho": check_number("rho", rho, low=0.0, high=1.0)}


def _aggregate_terms(
    input: Tensor, target: Tensor, bag_ids: Tensor, validate_args: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-instance `(bag term, instance term, share)`, each `[N]`.

    Summed over a bag `b`, `share · bag term` is `N/m · (mean_b ŷ − ȳ_b)²` and `share ·
    instance term` is `N/m · mean_b (ŷ_i − ȳ_b)²`, so their means over the N instances are
    means over the m bags.
    """
    check_tensor("input", input, floating=True)
    check_tensor("target", target, floating=True)
    if input.ndim != 1:
        raise ValueError(f"input must have shape [N], got {tuple(input.shape)}")
    check_same_shape("input", input, "target", target)
    bags = prepare_bags(bag_ids, input.shape[0])
    x, y = upcast(input), upcast(target)
    if x.dtype != y.dtype:
        y = y.to(x.dtype)
    if validate_args:
        check_constant_in_bags("target", y, bags)
    bag_term = (bags.mean(x)[bags.index] - y).square()
    return bag_term, (x - y).square(), bags.instance_share(x.shape[0], x.dtype)


def bag_level_loss(
    input: Tensor,
    target: Tensor,
    bag_ids: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Bag-level squared loss: the bag's mean prediction against its aggregate response.

    $$
    \mathcal{L}_{bag} = \frac{1}{m}\sum_{b=1}^{m}\Big(\frac{1}{|B_b|}\sum_{i\in B_b}\hat y_i
        - \bar y_b\Big)^2
    $$

    over the $m$ bags of the batch; each bag counts once whatever its size (with equal bag
    sizes this is also the per-instance mean).

    **`reduction="none"`** returns `[N]` per-instance shares: instance $i$ of bag $b$ gets
    $\frac{N}{m|B_b|}(\bar{\hat y}_b - \bar y_b)^2$, so the shares of a bag sum to $N/m$ times
    its loss and their mean is $\mathcal{L}_{bag}$.

    Finding the bags costs one host sync (`torch.unique`).

    Paper: *Learning from Aggregate responses: Instance Level versus Bag Level Loss Functions*,
    Javanmard et al., ICLR 2024 (arXiv:2401.11081), the bag-level loss with the squared loss.

    Args:
        input: real-valued predictions, one per instance `[N]`.
        target: the aggregate response (mean label) of each instance's bag `[N]`: every
            instance of a bag carries the same value.
        bag_ids: integer bag id of each instance `[N]`; any integers (not necessarily
            contiguous or sorted).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` shares, see above).
        validate_args: check that `target` is constant within each bag (a host sync).

    Returns:
        The loss, or `[N]` per-instance shares with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, a non-constant `target` within a bag.
        TypeError: non-floating `input` / `target`, non-integer `bag_ids`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import bag_level_loss
        >>> pred = torch.tensor([1.0, 3.0, 0.0, 1.0])
        >>> bag_level_loss(pred, torch.tensor([2.0, 2.0, 1.0, 1.0]), torch.tensor([7, 7, 2, 2]))
        tensor(0.1250)
    """
    check_reduction(reduction)
    bag_term, _, share = _aggregate_terms(input, target, bag_ids, validate_args)
    return reduce_loss(share * bag_term, reduction)


def instance_level_loss(
    input: Tensor,
    target: Tensor,
    bag_ids: Tensor,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Instance-level squared loss: every prediction against its bag's aggregate response.

    $$
    \mathcal{L}_{ins} = \frac{1}{m}\sum_{b=1}^{m}\frac{1}{|B_b|}\sum_{i\in B_b}
        (\hat y_i - \bar y_b)^2
        = \mathcal{L}_{bag} + \frac{1}{m}\sum_{b}\frac{1}{|B_b|}\sum_{i\in B_b}
        (\hat y_i - \bar{\hat y}_b)^2
    $$

    The identity (exact, by expanding the square around the bag mean $\bar{\hat y}_b$) is
    the paper's observation: the instance-level loss is the bag-level loss regularised by the
    within-bag variance of the predictions. Each bag counts once; with equal bag sizes this is
    the plain mean over instances of $(\hat y_i - \bar y_b)^2$.

    **`reduction="none"`** returns `[N]` per-instance shares
    $\frac{N}{m|B_b|}(\hat y_i - \bar y_b)^2$, whose mean is $\mathcal{L}_{ins}$. Finding the
    bags costs one host sync (`torch.unique`).

    Paper: *Learning from Aggregate responses: Instance Level versus Bag Level Loss Functions*,
    Javanmard et al., ICLR 2024 (arXiv:2401.11081), the instance-level (event-level) loss with
    the squared loss.

    Args:
        input: real-valued predictions, one per instance `[N]`.
        target: the aggregate response of each instance's bag `[N]` (constant within a bag).
        bag_ids: integer bag id of each instance `[N]` (any integers).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` shares).
        validate_args: check that `target` is constant within each bag (a host sync).

    Returns:
        The loss, or `[N]` per-instance shares with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, a non-constant `target` within a bag.
        TypeError: non-floating `input` / `target`, non-integer `bag_ids`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import instance_level_loss
        >>> pred = torch.tensor([1.0, 3.0, 0.0, 1.0])
        >>> y, bags = torch.tensor([2.0, 2.0, 1.0, 1.0]), torch.tensor([7, 7, 2, 2])
        >>> instance_level_loss(pred, y, bags)
        tensor(0.7500)
    """
    check_reduction(reduction)
    _, instance_term, share = _aggregate_terms(input, target, bag_ids, validate_args)
    return reduce_loss(share * instance_term, reduction)


def interpolating_aggregate_loss(
    input: Tensor,
    target: Tensor,
    bag_ids: Tensor,
    *,
    rho: float = 0.5,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Interpolation between the bag-level and the instance-level squared losses.

    $$
    \mathcal{L}_{\rho} = \rho\,\mathcal{L}_{bag} + (1 - \rho)\,\mathcal{L}_{ins}
        = \mathcal{L}_{bag} + (1 - \rho)\,\frac{1}{m}\sum_b\frac{1}{|B_b|}
        \sum_{i\in B_b}(\hat y_i - \bar{\hat y}_b)^2
    $$

    `rho=1` is the bag-level loss (unbiased, high variance), `rho=0` the instance-level loss
    (the within-bag variance acts as a regulariser: lower variance, biased). The paper's
    interpolating estimator is this family: the bag-level loss plus a tunable multiple of the
    within-bag-variance regulariser, here $1 - \rho$; tune `rho` on validation data.

    **`reduction="none"`**: `[N]` per-instance shares, $\rho$ times the bag-level share plus
    $1 - \rho$ times the instance-level one; their mean is $\mathcal{L}_\rho$. One host sync
    (`torch.unique`).

    Paper: *Learning from Aggregate responses: Instance Level versus Bag Level Loss Functions*,
    Javanmard et al., ICLR 2024 (arXiv:2401.11081), the interpolating estimator.

    Args:
        input: real-valued predictions, one per instance `[N]`.
        target: the aggregate response of each instance's bag `[N]` (constant within a bag).
        bag_ids: integer bag id of each instance `[N]` (any integers).
        rho: weight of the bag-level loss in $[0, 1]$ (0.5).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` shares).
        validate_args: check that `target` is constant within each bag (a host sync).

    Returns:
        The loss, or `[N]` per-instance shares with `reduction="none"`.

    Raises:
        ValueError: shapes that differ, a non-constant `target` within a bag, `rho` outside
            $[0, 1]$.
        TypeError: non-floating `input` / `target`, non-integer `bag_ids`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import interpolating_aggregate_loss
        >>> pred = torch.tensor([1.0, 3.0, 0.0, 1.0])
        >>> y, bags = torch.tensor([2.0, 2.0, 1.0, 1.0]), torch.tensor([7, 7, 2, 2])
        >>> interpolating_aggregate_loss(pred, y, bags, rho=0.5)
        tensor(0.4375)
    """
    check_reduction(reduction)
    rho = _check_rho(rho=rho)["rho"]
    bag_term, instance_term, share = _aggregate_terms(input, target, bag_ids, validate_args)
    return reduce_loss(share * (rho * bag_term + (1.0 - rho) * instance_term), reduction)


class _AggregateLoss(Loss):
    input_kind = InputKind.REGRESSION
    target_arg = None


@register_loss("bag_level")
class BagLevelLoss(_AggregateLoss):
    r"""Bag-level squared loss, $\frac{1}{m}\sum_b(\mathrm{mean}_{i\in B_b}\hat y_i - \bar y_b)^2$.

    See [bag_level_loss][lightning_losses.functional.bag_level_loss] (arXiv:2401.11081).

    Args:
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` per-instance shares).
        validate_args: check that `target` is constant within each bag on every call.

    Shape:
        - input `[N]`, target `[N]` (each instance's bag response), bag_ids `[N]` integers.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import BagLevelLoss
        >>> pred = torch.tensor([1.0, 3.0, 0.0, 1.0])
        >>> BagLevelLoss()(pred, torch.tensor([2.0, 2.0, 1.0, 1.0]), torch.tensor([7, 7, 2, 2]))
        tensor(0.1250)
    """

    functional = staticmethod(bag_level_loss)

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor, bag_ids: Tensor) -> Tensor:
        """Loss of predictions `input [N]` against bag responses `target [N]` in `bag_ids [N]`."""
        return self._call_functional(input, target, bag_ids)


@register_loss("instance_level")
class InstanceLevelLoss(_AggregateLoss):
    r"""Instance-level squared loss: every prediction against its bag's response.

    Equals the bag-level loss plus the mean within-bag variance of the predictions. See
    [instance_level_loss][lightning_losses.functional.instance_level_loss] (arXiv:2401.11081).

    Args:
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` per-instance shares).
        validate_args: check that `target` is constant within each bag on every call.

    Shape:
        - input `[N]`, target `[N]` (each instance's bag response), bag_ids `[N]` integers.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import InstanceLevelLoss
        >>> pred = torch.tensor([1.0, 3.0, 0.0, 1.0])
        >>> y, bags = torch.tensor([2.0, 2.0, 1.0, 1.0]), torch.tensor([7, 7, 2, 2])
        >>> InstanceLevelLoss()(pred, y, bags)
        tensor(0.7500)
    """

    functional = staticmethod(instance_level_loss)

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(self, input: Tensor, target: Tensor, bag_ids: Tensor) -> Tensor:
        """Loss of predictions `input [N]` against bag responses `target [N]` in `bag_ids [N]`."""
        return self._call_functional(input, target, bag_ids)


@register_loss("interpolating_aggregate")
class InterpolatingAggregateLoss(_AggregateLoss):
    r"""$\rho\cdot$ bag-level $+ (1 - \rho)\cdot$ instance-level squared loss.

    See [interpolating_aggregate_loss][lightning_losses.functional.interpolating_aggregate_loss]
    (arXiv:2401.11081).

    Args:
        rho: weight of the bag-level loss in $[0, 1]$ (0.5); 1 = bag-level, 0 = instance-level.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]` per-instance shares).
        validate_args: check that `target` is constant within each bag on every call.

    Shape:
        - input `[N]`, target `[N]` (each instance's bag response), bag_ids `[N]` integers.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import InterpolatingAggregateLoss
        >>> pred = torch.tensor([1.0, 3.0, 0.0, 1.0])
        >>> y, bags = torch.tensor([2.0, 2.0, 1.0, 1.0]), torch.tensor([7, 7, 2, 2])
        >>> InterpolatingAggregateLoss(rho=0.5)(pred, y, bags)
        tensor(0.4375)
        >>> InterpolatingAggregateLoss()
        InterpolatingAggregateLoss(rho=0.5, reduction='mean')
    """

    functional = staticmethod(interpolating_aggregate_loss)

    def __init__(
        self, rho: float = 0.5, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args, **_check_rho(rho=rho))

    def forward(self, input: Tensor, target: Tensor, bag_ids: Tensor) -> Tensor:
        """Loss of predictions `input [N]` against bag responses `target [N]` in `bag_ids [N]`."""
        return self._call_functional(input, target, bag_ids)
