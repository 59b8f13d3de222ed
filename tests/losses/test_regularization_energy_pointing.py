"""The model-guidance energy loss against the authors' per-image rule, naively in float64."""

from __future__ import annotations

import pytest
import torch

from lightning_losses import get_loss
from lightning_losses.functional import energy_pointing_loss
from lightning_losses.losses import EnergyPointingLoss


def _box_mask(boxes, h, w):
    """Union of `(xmin, ymin, xmax, ymax)` boxes as a bool `[h, w]` mask (the authors' slicing)."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for xmin, ymin, xmax, ymax in boxes:
        mask[ymin:ymax, xmin:xmax] = True
    return mask


def _naive_energy(attr, boxes):
    """One image's loss from the formula with the authors' empty-map branch, in Python floats."""
    h, w = attr.shape
    mask = _box_mask(boxes, h, w)
    num = den = 0.0
    for y in range(h):
        for x in range(w):
            a = max(float(attr[y, x]), 0.0)
            den += a
            if mask[y, x]:
                num += a
    return 1.0 - num if den < 1e-7 else 1.0 - num / den


def test_matches_the_naive_reference_with_several_boxes_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    attr = torch.randn(3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    boxes = [[(0, 0, 3, 2)], [(1, 1, 4, 5), (3, 2, 7, 6)], [(6, 5, 7, 6)]]
    mask = torch.stack([_box_mask(b, 6, 7) for b in boxes])
    ref = torch.tensor(
        [_naive_energy(attr[i].detach(), boxes[i]) for i in range(3)], dtype=torch.float64
    )
    got = energy_pointing_loss(attr, mask, reduction="none")
    torch.testing.assert_close(got, ref)
    # The authors sum the per-image losses over the batch.
    torch.testing.assert_close(energy_pointing_loss(attr, mask, reduction="sum"), ref.sum())
    # Gradient from the quotient rule: d/dA+ of 1 - S_in/S = -(m S - S_in)/S^2 where A > 0.
    got.sum().backward()
    a = attr.detach()
    pos = a.clamp_min(0)
    s = pos.flatten(1).sum(1)[:, None, None]
    s_in = (pos * mask).flatten(1).sum(1)[:, None, None]
    expected = torch.where(a > 0, -(mask * s - s_in) / s**2, torch.zeros_like(a))
    torch.testing.assert_close(attr.grad, expected)


def test_all_positive_energy_inside_the_box_gives_zero_and_none_inside_gives_one():
    box = torch.zeros(1, 4, 4, dtype=torch.bool)
    box[0, 1:3, 1:3] = True
    inside = torch.where(box, torch.rand(1, 4, 4) + 0.1, -torch.rand(1, 4, 4))
    assert float(energy_pointing_loss(inside, box)) == 0.0
    outside = torch.where(box, -torch.rand(1, 4, 4), torch.rand(1, 4, 4) + 0.1)
    assert float(energy_pointing_loss(outside, box)) == 1.0


def test_negative_attribution_is_ignored():
    box = torch.tensor([[True, False, False]])
    base = torch.tensor([[1.0, 1.0, 0.0]])
    more_negative = torch.tensor([[1.0, 1.0, -50.0]])
    torch.testing.assert_close(energy_pointing_loss(base, box), torch.tensor(0.5))
    torch.testing.assert_close(energy_pointing_loss(more_negative, box), torch.tensor(0.5))


def test_an_all_zero_map_gives_one_and_a_zero_gradient():
    box = torch.zeros(2, 3, 3, dtype=torch.bool)
    box[:, 0, :2] = True
    attr = torch.zeros(2, 3, 3, requires_grad=True)
    out = energy_pointing_loss(attr, box, reduction="none")
    torch.testing.assert_close(out, torch.ones(2))
    out.sum().backward()
    # Empty branch: 1 - sum(m * A+); max(A, 0) has gradient 0 at exactly 0 (as in the authors'
    # clamp), so an exactly-zero map gets no push from this term.
    torch.testing.assert_close(attr.grad, torch.zeros_like(attr))
    # A tiny positive value inside the box is pushed up (gradient -1 there).
    small = torch.zeros(1, 2, requires_grad=True)
    with torch.no_grad():
        small[0, 0] = 1e-9
    energy_pointing_loss(small, torch.tensor([[True, False]])).backward()
    torch.testing.assert_close(small.grad, torch.tensor([[-1.0, 0.0]]))
    # An all-negative map is empty too.
    torch.testing.assert_close(energy_pointing_loss(-torch.rand(2, 3, 3), box), torch.tensor(1.0))


def test_soft_masks_weigh_the_energy_and_bad_masks_are_rejected():
    attr = torch.tensor([[2.0, 2.0]])
    torch.testing.assert_close(
        energy_pointing_loss(attr, torch.tensor([[0.5, 1.0]])), torch.tensor(0.25)
    )
    with pytest.raises(ValueError, match="target"):
        energy_pointing_loss(attr, torch.tensor([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="target"):
        energy_pointing_loss(attr, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="input"):
        energy_pointing_loss(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps"):
        EnergyPointingLoss(eps=-1.0)


def test_registered_under_its_aliases():
    assert isinstance(get_loss("energy_pointing"), EnergyPointingLoss)
    assert isinstance(get_loss("model_guidance_energy"), EnergyPointingLoss)
