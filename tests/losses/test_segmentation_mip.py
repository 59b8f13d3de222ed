"""MaxIntensityProjectionLoss against a naive float64 loop over samples and axes (the formula of
the authors' focal Tversky loss on `torch.amax` projections), its limits and its errors."""

from __future__ import annotations

import pytest
import torch

from lightning_losses import get_loss
from lightning_losses.functional import max_intensity_projection_loss


def naive_mip(logits, target, axes, alpha=0.7, gamma=0.75, smooth=1.0):
    """One sample and one axis at a time, the projections flattened, as the authors' loop."""
    out = []
    for n in range(logits.shape[0]):
        total = logits.new_zeros(())
        p = torch.sigmoid(logits[n])
        g = target[n]
        for axis in axes:
            pp = p.amax(dim=axis).flatten()
            gg = g.amax(dim=axis).flatten()
            tp = (pp * gg).sum()
            fn = ((1 - pp) * gg).sum()
            fp = (pp * (1 - gg)).sum()
            t = (tp + smooth) / (tp + alpha * fn + (1 - alpha) * fp + smooth)
            total = total + (1 - t) ** gamma
        out.append(total)
    return torch.stack(out)


def volume(seed=0, shape=(3, 2, 4, 5, 3)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = (torch.rand(shape, generator=g) < 0.2).double()
    return x, y


@pytest.mark.parametrize("axes", [(-1,), (-2,), (-3,), (-3, -2, -1)])
@pytest.mark.parametrize(("alpha", "gamma", "smooth"), [(0.7, 0.75, 1.0), (0.3, 2.0, 1e-6)])
def test_matches_naive_loop_value_and_gradient(axes, alpha, gamma, smooth):
    x, y = volume()
    kw = dict(alpha=alpha, gamma=gamma, smooth=smooth)
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ours = max_intensity_projection_loss(a, y, axes=axes, reduction="none", **kw)
    ref = naive_mip(b, y, axes, **kw)
    torch.testing.assert_close(ours, ref)
    (ga,) = torch.autograd.grad(ours.sum(), a)
    (gb,) = torch.autograd.grad(ref.sum(), b)
    torch.testing.assert_close(ga, gb)
    assert ga.abs().sum() > 0
    torch.testing.assert_close(
        max_intensity_projection_loss(x, y, axes=axes, **kw), ref.mean().detach()
    )


def test_gradcheck_and_single_channel_index_shaped_target():
    x, y = volume(seed=1, shape=(2, 1, 3, 3, 2))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: max_intensity_projection_loss(z, y, axes=(-3, -1), reduction="none"), (x,)
    )
    torch.testing.assert_close(
        max_intensity_projection_loss(x, y[:, 0]), max_intensity_projection_loss(x, y)
    )


def test_identical_projections_give_zero_with_finite_gradient():
    y = torch.zeros(2, 1, 5, 5, 5)
    y[0, 0, 2, 2, :] = 1  # a vessel along the last axis
    y[1, 0, :, 1, 3] = 1
    x = (30 * (2 * y - 1)).requires_grad_(True)
    out = max_intensity_projection_loss(x, y, axes=(-3, -2, -1), reduction="none")
    assert (out < 1e-6).all()
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.isfinite(grad).all()
    # Projections only: a wrong voxel hidden behind a right one along the axis costs nothing.
    x2 = x.detach().clone()
    x2[0, 0, 2, 2, 0] = -30.0  # the vessel loses one voxel; the z-projection keeps its maximum
    z_only = max_intensity_projection_loss(x2, y, axes=(-1,), reduction="none")
    assert z_only[0] < 1e-6


def test_registry_and_errors():
    x, y = volume(seed=2)
    loss = get_loss("mip", axes=(-3, -2, -1))
    torch.testing.assert_close(loss(x, y), naive_mip(x, y, (-3, -2, -1)).mean())
    with pytest.raises(ValueError, match="input"):
        max_intensity_projection_loss(x[:, :, 0], y[:, :, 0])
    with pytest.raises(ValueError, match="target"):
        max_intensity_projection_loss(x, y[:, :1])
    with pytest.raises(ValueError, match="target"):
        max_intensity_projection_loss(x, 2 * y)
    with pytest.raises(ValueError, match="axes"):
        max_intensity_projection_loss(x, y, axes=(-4,))
