"""ELLE / ELLE-A (Abad Rocamora et al., ICLR 2024, arXiv:2401.11618) against naive references.

References written from the paper's formula and the authors' training loop: per-sample losses at
$x_a, x_b, x_c = (1-\\alpha)x_a + \\alpha x_b$ computed one sample at a time in float64, the
squared linearity error averaged over the batch; the ELLE-A weight from the list-based rule of
the authors' code (`np.mean` / `np.std` over every earlier error).
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch
import torch.nn.functional as F

from lightning_losses.nn import ElleAdaptiveWeight, elle_loss, elle_points


def _naive_elle(model, x, y, eps, seed):
    """The authors' snippet, one sample at a time, with the same draws (offsets, then alpha)."""
    g = torch.Generator().manual_seed(seed)
    b = x.shape[0]
    u = torch.rand((2 * b, *x.shape[1:]), generator=g, dtype=x.dtype)
    alpha = torch.rand(b, generator=g, dtype=x.dtype)
    total = 0.0
    for i in range(b):
        xa = x[i] + eps * (2 * u[i] - 1)
        xb = x[i] + eps * (2 * u[b + i] - 1)
        a = float(alpha[i])
        xc = (1 - a) * xa + a * xb

        def loss_at(p, i=i):
            with torch.no_grad():
                return float(F.cross_entropy(model(p[None]), y[i : i + 1]))

        total += (loss_at(xc) - (1 - a) * loss_at(xa) - a * loss_at(xb)) ** 2
    return total / b


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)
    ).double()


def test_matches_the_naive_reference_and_reaches_the_parameters():
    net = _mlp()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (6,), generator=g)
    got = elle_loss(net, x, y, eps=0.7, generator=torch.Generator().manual_seed(3))
    ref = _naive_elle(net, x, y, 0.7, seed=3)
    assert math.isclose(float(got.detach()), ref, rel_tol=1e-10)
    assert float(got.detach()) > 0
    got.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_a_loss_linear_in_the_input_has_zero_linearity_error():
    lin = torch.nn.Linear(5, 3).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.long)

    def linear_loss(out, target):  # the first output: affine in x
        return out[:, 0]

    r = elle_loss(lin, x, y, eps=2.0, criterion=linear_loss, reduction="none")
    torch.testing.assert_close(r, torch.zeros(8, dtype=torch.float64), atol=1e-24, rtol=0)


def test_a_quadratic_loss_gives_the_closed_form():
    # L(x) = |x|^2: L(x_c) - (1-a) L(x_a) - a L(x_b) = -a (1-a) |x_a - x_b|^2.
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.zeros(5, dtype=torch.long)

    def square(out, target):
        return out.pow(2).sum(1)

    got = elle_loss(
        torch.nn.Identity(),
        x,
        y,
        eps=0.3,
        criterion=square,
        reduction="none",
        generator=torch.Generator().manual_seed(7),
    )
    xa, xb, _, a = elle_points(x, 0.3, generator=torch.Generator().manual_seed(7))
    expected = (a * (1 - a) * (xa - xb).pow(2).sum(1)).pow(2)
    torch.testing.assert_close(got, expected)


def test_points_lie_in_the_ball_and_the_segment():
    x = torch.randn(16, 2, 3)
    xa, xb, xc, a = elle_points(x, 0.05, generator=torch.Generator().manual_seed(0))
    assert (xa - x).abs().max() <= 0.05 + 1e-7 and (xb - x).abs().max() <= 0.05 + 1e-7
    assert ((a > 0) & (a < 1)).all()
    torch.testing.assert_close(xc, (1 - a[:, None, None]) * xa + a[:, None, None] * xb)


def test_reductions_and_zero_radius():
    net = _mlp()
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 4, (4,))
    none = elle_loss(
        net, x, y, eps=1.0, reduction="none", generator=torch.Generator().manual_seed(0)
    )
    s = elle_loss(net, x, y, eps=1.0, reduction="sum", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s, none.sum())
    # Zero radius: the three points coincide (zero up to the batched forward's round-off).
    assert float(elle_loss(net, x, y, eps=0.0).detach()) < 1e-25


def test_batchnorm_statistics_update_like_the_authors_unless_frozen():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    before = net[1].running_mean.clone()
    elle_loss(net, x, y, eps=0.1, freeze_batchnorm=True)
    torch.testing.assert_close(net[1].running_mean, before)
    assert int(net[1].num_batches_tracked) == 0
    elle_loss(net, x, y, eps=0.1)
    assert not torch.equal(net[1].running_mean, before)


def test_bad_arguments_raise_naming_them():
    net = _mlp()
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randint(0, 4, (4,))
    with pytest.raises(ValueError, match="eps"):
        elle_loss(net, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="target"):
        elle_loss(net, x, y[:3], eps=0.1)
    with pytest.raises(TypeError, match="x"):
        elle_loss(net, x.long(), y, eps=0.1)
    with pytest.raises(TypeError, match="model"):
        elle_loss("net", x, y, eps=0.1)
    with pytest.raises(ValueError, match="criterion"):
        elle_loss(net, x, y, eps=0.1, criterion=lambda out, t: out)
    with pytest.raises(ValueError, match="reduction"):
        elle_loss(net, x, y, eps=0.1, reduction="avg")
    with pytest.raises(ValueError, match="decay"):
        ElleAdaptiveWeight(decay=0.0)
    with pytest.raises(ValueError, match="lin_err"):
        ElleAdaptiveWeight().update(float("nan"))


def _authors_schedule(errors, lambda_max, decay, sensitivity):
    """The authors' `onoff` rule with the full list of earlier errors."""
    lam, hist, out = 0.0, [], []
    for e in errors:
        if len(hist) > 2 and e > statistics.fmean(hist) + sensitivity * statistics.pstdev(hist):
            lam = lambda_max
        else:
            lam *= decay
        hist.append(e)
        out.append(lam)
    return out


def test_adaptive_weight_follows_the_authors_rule_and_resumes_from_a_checkpoint():
    g = torch.Generator().manual_seed(0)
    errors = (torch.rand(200, generator=g) * 0.1).tolist()
    for k in (40, 90, 91, 150):  # spikes
        errors[k] = 1.0 + k / 100
    ref = _authors_schedule(errors, 4000.0, 0.99, 2.0)
    w = ElleAdaptiveWeight()
    got = [w.update(e) for e in errors[:120]]
    state = w.state_dict()
    resumed = ElleAdaptiveWeight()
    resumed.load_state_dict(state)
    got += [resumed.update(torch.tensor(e)) for e in errors[120:]]
    for a, b in zip(got, ref, strict=True):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    assert max(got) == 4000.0 and got[0] == 0.0
