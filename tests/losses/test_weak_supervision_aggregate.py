"""Aggregate-response losses (Javanmard et al., ICLR 2024, arXiv:2401.11081).

References: naive float64 loops over bags written from the paper's definitions, and the exact
identity instance-level = bag-level + mean within-bag variance of the predictions.
"""

from __future__ import annotations

import pytest
import torch

import lightning_losses.functional as LF
from lightning_losses import get_loss
from lightning_losses.losses import BagLevelLoss, InstanceLevelLoss, InterpolatingAggregateLoss
from tests.losses._helpers import assert_value_and_grad


def _bags(seed: int = 0):
    """Unequal, non-contiguous, interleaved bags (sizes 1, 2, 3, 4) and float64 predictions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([40, -3, 40, 9, 1000, 9, 40, 1000, 9, 1000, 1000])[
        torch.randperm(11, generator=g)
    ]
    ids[0] = 5  # one singleton bag
    pred = torch.randn(11, generator=g, dtype=torch.float64)
    values = {int(b): float(torch.randn(1, generator=g)) for b in ids.unique()}
    target = torch.tensor([values[int(b)] for b in ids], dtype=torch.float64)
    return pred, target, ids


def naive(pred, target, ids, kind, rho=0.5):
    """Mean over bags of the per-bag loss, by a Python loop."""
    per_bag = []
    for b in ids.unique():
        members = (ids == b).nonzero().flatten()
        p, y = pred[members], target[members[0]]
        bag = (p.mean() - y) ** 2
        ins = ((p - y) ** 2).mean()
        per_bag.append({"bag": bag, "ins": ins, "rho": rho * bag + (1 - rho) * ins}[kind])
    return torch.stack(per_bag).mean()


@pytest.mark.parametrize(
    ("kind", "fn"),
    [
        ("bag", LF.bag_level_loss),
        ("ins", LF.instance_level_loss),
        ("rho", LF.interpolating_aggregate_loss),
    ],
)
def test_matches_naive_loop_over_bags(kind, fn):
    pred, target, ids = _bags()
    assert_value_and_grad(lambda x: fn(x, target, ids), lambda x: naive(x, target, ids, kind), pred)


def test_instance_equals_bag_plus_within_bag_variance_exactly():
    pred, target, ids = _bags(seed=1)
    bag = LF.bag_level_loss(pred, target, ids, reduction="none")
    ins = LF.instance_level_loss(pred, target, ids, reduction="none")
    # Per bag: the shares of a bag sum to N/m times its loss; the identity holds bag by bag.
    n, m = pred.shape[0], ids.unique().numel()
    for b in ids.unique():
        members = ids == b
        var = pred[members].var(unbiased=False)
        torch.testing.assert_close(ins[members].sum() - bag[members].sum(), var * n / m)
    variance = torch.stack([pred[ids == b].var(unbiased=False) for b in ids.unique()]).mean()
    torch.testing.assert_close(
        LF.instance_level_loss(pred, target, ids), LF.bag_level_loss(pred, target, ids) + variance
    )


def test_rho_endpoints_and_linearity():
    pred, target, ids = _bags(seed=2)
    bag = LF.bag_level_loss(pred, target, ids)
    ins = LF.instance_level_loss(pred, target, ids)
    torch.testing.assert_close(LF.interpolating_aggregate_loss(pred, target, ids, rho=1.0), bag)
    torch.testing.assert_close(LF.interpolating_aggregate_loss(pred, target, ids, rho=0.0), ins)
    out = InterpolatingAggregateLoss(rho=0.3)(pred, target, ids)
    torch.testing.assert_close(out, 0.3 * bag + 0.7 * ins)
    assert type(get_loss("interpolating_aggregate")) is InterpolatingAggregateLoss


def test_equal_bags_give_the_per_instance_mean_of_the_paper():
    # Bags of equal size k: the instance-level loss is (1/n) Σ_i (ŷ_i − ȳ_b(i))².
    g = torch.Generator().manual_seed(3)
    ids = torch.arange(4).repeat_interleave(3)
    pred = torch.randn(12, generator=g, dtype=torch.float64)
    target = torch.randn(4, generator=g, dtype=torch.float64)[ids]
    torch.testing.assert_close(
        InstanceLevelLoss()(pred, target, ids), ((pred - target) ** 2).mean()
    )
    torch.testing.assert_close(
        InstanceLevelLoss(reduction="none")(pred, target, ids), (pred - target) ** 2
    )


def test_bag_ids_need_not_be_contiguous_or_sorted():
    pred, target, ids = _bags(seed=4)
    relabelled = ids * 1000 - 77  # same partition, other ids
    for cls in (BagLevelLoss, InstanceLevelLoss, InterpolatingAggregateLoss):
        a = cls(reduction="none")(pred, target, ids)
        torch.testing.assert_close(cls(reduction="none")(pred, target, relabelled), a)
        perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(
            cls(reduction="none")(pred[perm], target[perm], ids[perm]), a[perm]
        )


def test_bag_loss_ignores_how_a_bag_mean_is_spread():
    ids = torch.tensor([1, 1, 2, 2])
    target = torch.tensor([0.5, 0.5, 2.0, 2.0])
    pred = torch.tensor([-1.0, 2.0, 1.0, 3.0])  # bag means 0.5 and 2.0: exact
    assert LF.bag_level_loss(pred, target, ids) == 0
    torch.testing.assert_close(
        LF.instance_level_loss(pred, target, ids), torch.tensor((2.25 + 1.0) / 2)
    )


@pytest.mark.parametrize(
    "fn", [LF.bag_level_loss, LF.instance_level_loss, LF.interpolating_aggregate_loss]
)
def test_bad_inputs_raise_naming_the_argument(fn):
    pred, target, ids = (
        torch.randn(4),
        torch.tensor([1.0, 1.0, 2.0, 2.0]),
        torch.tensor([0, 0, 1, 1]),
    )
    with pytest.raises(ValueError, match="target must be the same for every instance"):
        fn(pred, torch.tensor([1.0, 1.5, 2.0, 2.0]), ids)
    fn(pred, torch.tensor([1.0, 1.5, 2.0, 2.0]), ids, validate_args=False)
    with pytest.raises(TypeError, match="bag_ids"):
        fn(pred, target, ids.float())
    with pytest.raises(TypeError, match="bag_ids"):
        fn(pred, target, ids.bool())
    with pytest.raises(ValueError, match="bag_ids"):
        fn(pred, target, ids[:3])
    with pytest.raises(ValueError, match="input"):
        fn(pred[:, None], target[:, None], ids)
    with pytest.raises(ValueError, match="target"):
        fn(pred, target[:3], ids)
    with pytest.raises(ValueError, match="rho"):
        LF.interpolating_aggregate_loss(pred, target, ids, rho=2.0)
