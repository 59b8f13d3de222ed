"""DeepSupervisionLoss: MONAI's level weights, nearest target resizing, parity, per sample."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_losses import get_loss
from lightning_losses.functional import (
    deep_supervision_loss,
    deep_supervision_weights,
    dice_ce_loss,
    dice_loss,
)
from lightning_losses.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss

monai_losses = pytest.importorskip("monai.losses")


def heads(shapes, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype) for s in shapes]


@pytest.mark.parametrize("mode", ["same", "exp", "two"])
@pytest.mark.parametrize("levels", [1, 2, 5, 7])
def test_weights_match_monai(mode, levels):
    ref = monai_losses.DeepSupervisionLoss(monai_losses.DiceLoss(), weight_mode=mode)
    assert deep_supervision_weights(levels, mode) == ref.get_weights(levels)
    explicit = [0.4, 0.3, 0.2, 0.1, 0.05, 0.05, 0.01]
    ref = monai_losses.DeepSupervisionLoss(monai_losses.DiceLoss(), mode, weights=explicit)
    assert deep_supervision_weights(levels, mode, explicit) == ref.get_weights(levels)


def test_exp_weights_are_the_documented_sequence():
    assert deep_supervision_weights(6) == [1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625]
    # Too few explicit weights: the mode's weights are used, as in MONAI.
    assert deep_supervision_weights(3, "two", [0.9]) == [1.0, 0.5, 0.5]


@pytest.mark.parametrize(
    "shapes",
    [
        [(2, 3, 8, 8), (2, 3, 4, 4), (2, 3, 2, 2)],
        [(2, 3, 8, 6, 4), (2, 3, 4, 3, 2)],
    ],
    ids=["2d", "3d"],
)
@pytest.mark.parametrize("mode", ["same", "exp", "two"])
def test_matches_monai_deep_supervision(shapes, mode):
    xs = heads(shapes)
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (shapes[0][0], *shapes[0][2:]), generator=g)
    ours = DeepSupervisionLoss(DiceCELoss(softmax=True), weight_mode=mode)
    ref = monai_losses.DeepSupervisionLoss(
        monai_losses.DiceCELoss(softmax=True, to_onehot_y=True), weight_mode=mode
    )
    a = [x.clone().requires_grad_(True) for x in xs]
    b = [x.clone().requires_grad_(True) for x in xs]
    v1, v2 = ours(a, y), ref(b, y[:, None].float())
    torch.testing.assert_close(v1, v2, rtol=1e-5, atol=1e-6)
    g1 = torch.autograd.grad(v1, a)
    g2 = torch.autograd.grad(v2, b)
    for u, v in zip(g1, g2, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-7)
        assert u.abs().sum() > 0


def test_is_the_weighted_sum_over_nearest_resized_targets():
    xs = heads([(2, 4, 8, 8), (2, 4, 4, 4)], dtype=torch.float64)
    y = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(2))
    y[0, :3] = 255
    kw = dict(ignore_index=255)
    low = y[:, 1::2, 1::2]  # nearest-exact halving keeps the centre pixel of each 2x2 block
    expected = dice_ce_loss(xs[0], y, **kw, reduction="none") + 0.5 * dice_ce_loss(
        xs[1], low, **kw, reduction="none"
    )
    crit = DeepSupervisionLoss(DiceCELoss(**kw), reduction="none")
    torch.testing.assert_close(crit(xs, y), expected)
    assert crit(xs, y).shape == (2,)
    torch.testing.assert_close(DeepSupervisionLoss(DiceCELoss(**kw))(xs, y), expected.mean())


def test_resized_index_targets_stay_labels_and_one_hot_targets_work():
    xs = heads([(1, 3, 9, 7, 5), (1, 3, 4, 3, 2)], dtype=torch.float64)
    y = torch.randint(0, 3, (1, 9, 7, 5), generator=torch.Generator().manual_seed(3))
    y[0, 0] = 255
    ours = deep_supervision_loss(xs, y, loss=DiceLoss(ignore_index=255), weight_mode="same")
    small = F.interpolate(y[:, None].double(), size=(4, 3, 2), mode="nearest-exact")[:, 0].long()
    assert set(small.unique().tolist()) <= {0, 1, 2, 255}
    expected = dice_loss(xs[0], y, ignore_index=255) + dice_loss(xs[1], small, ignore_index=255)
    torch.testing.assert_close(ours, expected)
    oh = F.one_hot(y.clamp(max=2), 3).movedim(-1, 1).double()
    v = deep_supervision_loss(xs, oh, loss="dice")
    oh_small = F.interpolate(oh, size=(4, 3, 2), mode="nearest-exact")
    torch.testing.assert_close(v, dice_loss(xs[0], oh) + 0.5 * dice_loss(xs[1], oh_small))


def test_registry_string_inner_loss_and_single_head():
    x = heads([(2, 3, 4, 4)])[0]
    y = torch.randint(0, 3, (2, 4, 4))
    crit = get_loss("deep_supervision", loss="tversky")
    torch.testing.assert_close(crit(x, y), get_loss("tversky")(x, y))
    torch.testing.assert_close(crit([x], y), get_loss("tversky")(x, y))


def test_bad_inputs_raise_named_errors():
    y = torch.randint(0, 3, (2, 4, 4))
    crit = DeepSupervisionLoss()
    with pytest.raises(TypeError, match="input"):
        crit([], y)
    with pytest.raises(ValueError, match=r"input\[1\]"):
        crit([torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 2, 2)], y)
    with pytest.raises(TypeError, match=r"input\[0\]"):
        crit([torch.zeros(2, 3, 4, 4, dtype=torch.long)], y)
    with pytest.raises(ValueError, match="loss"):
        DeepSupervisionLoss("nope")
    with pytest.raises(TypeError, match="loss"):
        DeepSupervisionLoss(torch.nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        DeepSupervisionLoss(weights=[1.0, -1.0])
