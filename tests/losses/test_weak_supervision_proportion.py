"""Label-proportion losses (MixBag, Asanomi et al., ICCV 2023, arXiv:2308.08822).

References written from the official code (asanomitakanori/Mixbag, `utils/losses.py`):

    def cross_entropy_loss(input, target, eps=1e-8):
        return -target * torch.log(input + eps)

    ProportionLoss.forward(input, target):          # input: bag-mean probabilities [B, C]
        cross_entropy_loss(input, target).sum(-1).mean()

    ProportionLoss_CI.forward(pred, target, min_value, max_value):
        mask = torch.where((pred <= max_value) & (pred >= min_value), target, pred)
        cross_entropy_loss(mask, target).sum(-1).mean()

MixBag feeds the bag-mean softmax of the model's instance outputs as `input` / `pred`, and
`min_value = max_value = -1` for a bag that was not mixed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import ConfidenceIntervalProportionLoss, ProportionLoss
from tests.losses._helpers import assert_value_and_grad

EPS = 1e-8


def official_proportion(bag_probs, props):
    return (-props * torch.log(bag_probs + EPS)).sum(-1).mean()


def official_ci(bag_probs, props, lo, hi):
    mask = torch.where((bag_probs <= hi) & (bag_probs >= lo), props, bag_probs)
    return (-props * torch.log(mask + EPS)).sum(-1).mean()


def _bags(seed=0, c=4):
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([8, 8, 8, 2, 2, 50, 50, 50, 50, 8])  # sizes 4, 2, 4; unsorted
    logits = torch.randn(10, c, generator=g, dtype=torch.float64) * 2
    uniq = ids.unique()
    props = torch.rand(len(uniq), c, generator=g, dtype=torch.float64) + 0.05
    props = props / props.sum(1, keepdim=True)
    inverse = torch.searchsorted(uniq, ids)
    return logits, props, ids, uniq, inverse


def bag_means(logits, ids, uniq):
    return torch.stack([logits[ids == b].softmax(1).mean(0) for b in uniq])


def test_proportion_loss_matches_the_official_code():
    logits, props, ids, uniq, inverse = _bags()
    per_instance = props[inverse]
    assert_value_and_grad(
        lambda z: LF.proportion_loss(z, per_instance, ids),
        lambda z: official_proportion(bag_means(z, ids, uniq), props),
        logits,
        rtol=1e-6,
        atol=1e-7,
    )
    # Without the official eps the match is exact.
    exact = (-props * bag_means(logits, ids, uniq).log()).sum(1).mean()
    torch.testing.assert_close(ProportionLoss()(logits, per_instance, ids), exact)


def test_singleton_bags_with_one_hot_proportions_are_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (6,), generator=g)
    one_hot = F.one_hot(labels, 5).double()
    ids = torch.tensor([10, 3, 99, 4, 0, 7])
    assert_value_and_grad(
        lambda z: LF.proportion_loss(z, one_hot, ids), lambda z: F.cross_entropy(z, labels), logits
    )
    torch.testing.assert_close(
        LF.proportion_loss(logits, one_hot, ids, reduction="none"),
        F.cross_entropy(logits, labels, reduction="none"),
    )


def test_none_shares_average_to_the_mean_over_bags():
    logits, props, ids, uniq, inverse = _bags(seed=2)
    none = LF.proportion_loss(logits, props[inverse], ids, reduction="none")
    per_bag = (-props * bag_means(logits, ids, uniq).log()).sum(1)
    for k, b in enumerate(uniq):
        torch.testing.assert_close(none[ids == b].sum(), per_bag[k] * 10 / 3)
    torch.testing.assert_close(none.mean(), per_bag.mean())


def test_finite_where_the_official_eps_is_needed():
    # A bag whose mean probability underflows for a class with positive proportion.
    logits = torch.tensor([[1e4, -1e4], [1e4, -1e4]], requires_grad=True)
    props = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    out = LF.proportion_loss(logits, props, torch.tensor([1, 1]))
    out.backward()
    torch.testing.assert_close(out, torch.tensor(0.5 * 2e4), rtol=1e-6, atol=0)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ci_loss_matches_the_official_code(seed):
    logits, props, ids, uniq, inverse = _bags(seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    p_bar = bag_means(logits, ids, uniq)
    # Intervals that contain some bag means and miss others.
    centre = p_bar + 0.1 * torch.randn(p_bar.shape, generator=g, dtype=torch.float64)
    lo, hi = centre - 0.08, centre + 0.08
    inside = (p_bar >= lo) & (p_bar <= hi)
    assert inside.any() and (~inside).any()
    assert_value_and_grad(
        lambda z: LF.confidence_interval_proportion_loss(
            z, props[inverse], ids, lo[inverse], hi[inverse]
        ),
        lambda z: official_ci(bag_means(z, ids, uniq), props, lo, hi),
        logits,
        rtol=1e-6,
        atol=1e-7,
    )


def test_ci_loss_with_mixbags_empty_interval_is_the_proportion_loss():
    logits, props, ids, _, inverse = _bags(seed=5)
    none = torch.full((10, 4), -1.0, dtype=torch.float64)
    torch.testing.assert_close(
        ConfidenceIntervalProportionLoss()(logits, props[inverse], ids, none, none),
        LF.proportion_loss(logits, props[inverse], ids),
    )


def test_ci_loss_gives_no_gradient_inside_the_interval():
    logits, props, ids, _, inverse = _bags(seed=6)
    lo = torch.zeros(10, 4, dtype=torch.float64)
    hi = torch.ones(10, 4, dtype=torch.float64)  # every bag mean is inside
    x = logits.clone().requires_grad_(True)
    out = LF.confidence_interval_proportion_loss(x, props[inverse], ids, lo, hi)
    (grad,) = torch.autograd.grad(out, x)
    assert (grad == 0).all()
    torch.testing.assert_close(out, (-torch.xlogy(props, props)).sum(1).mean())


@pytest.mark.parametrize("ci", [False, True], ids=["proportion", "ci"])
def test_bad_inputs_raise_naming_the_argument(ci):
    logits = torch.randn(4, 2)
    props = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.2, 0.8], [0.2, 0.8]])
    ids = torch.tensor([0, 0, 1, 1])
    bounds = (torch.zeros(4, 2), torch.ones(4, 2)) if ci else ()
    fn = LF.confidence_interval_proportion_loss if ci else LF.proportion_loss
    with pytest.raises(ValueError, match="sum to 1"):
        fn(logits, torch.full((4, 2), 0.3), ids, *bounds)
    with pytest.raises(ValueError, match=r"target must hold probabilities"):
        fn(logits, torch.tensor([[1.5, -0.5]] * 4), ids, *bounds)
    with pytest.raises(ValueError, match="same for every instance"):
        fn(logits, props, torch.tensor([0, 0, 0, 1]), *bounds)
    with pytest.raises(TypeError, match="bag_ids"):
        fn(logits, props, ids.float(), *bounds)
    with pytest.raises(ValueError, match="input"):
        fn(logits[:, 0], props[:, 0], ids, *bounds)
    if ci:
        with pytest.raises(ValueError, match="upper"):
            fn(logits, props, ids, bounds[0], bounds[1][:, :1])
        with pytest.raises(ValueError, match="lower must be the same"):
            fn(logits, props, ids, torch.rand(4, 2), bounds[1])
