"""Loss weighting: uncertainty weighting (arXiv:1705.07115) and DWA (arXiv:1803.10704).

References: LibMTL's `UW` (`(losses / (2 * s.exp()) + s / 2).sum()`, init -0.5) and `DWA`
(`T * softmax(L(t-1)/L(t-2) / T)`), written out here in float64.
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.multitask import UncertaintyWeighting, dwa_weights


def test_matches_libmtl_uw_by_default():
    uw = UncertaintyWeighting(3).double()
    losses = torch.tensor([0.3, 1.7, 4.0], dtype=torch.float64, requires_grad=True)
    s = torch.full((3,), -0.5, dtype=torch.float64, requires_grad=True)
    ref = (losses / (2 * s.exp()) + s / 2).sum()
    out = uw(losses)
    torch.testing.assert_close(out, ref)
    g_ours = torch.autograd.grad(out, [losses, uw.log_vars])
    g_ref = torch.autograd.grad(ref, [losses, s])
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(uw.weights(), 1 / (2 * s.detach().exp()))


@pytest.mark.parametrize(("kind", "optimum"), [("regression", 1.0), ("classification", 2.0)])
def test_gradient_vanishes_at_the_optimum(kind, optimum):
    # Fixed L_i: d/ds [c e^{-s} L + s/2] = 0 at e^s = 2 c L (L for regression, 2L for softmax).
    losses = torch.tensor([0.4, 2.5], dtype=torch.float64)
    uw = UncertaintyWeighting(2, task_types=[kind, kind]).double()
    with torch.no_grad():
        uw.log_vars.copy_((optimum * losses).log())
    (grad,) = torch.autograd.grad(uw(losses), uw.log_vars)
    torch.testing.assert_close(grad, torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    with torch.no_grad():
        uw.log_vars.add_(0.1)
    (grad,) = torch.autograd.grad(uw(losses), uw.log_vars)
    assert (grad > 0).all()  # past the optimum the objective rises in s


def test_mixed_task_types_and_sequence_input():
    uw = UncertaintyWeighting(2, init=0.0, task_types=["regression", "classification"])
    out = uw([torch.tensor(2.0), torch.tensor(3.0)])
    torch.testing.assert_close(out, torch.tensor(0.5 * 2.0 + 3.0))


def test_log_vars_are_trained_by_the_optimizer():
    uw = UncertaintyWeighting(2)
    opt = torch.optim.SGD(uw.parameters(), lr=0.1)
    losses = torch.tensor([0.5, 3.0])
    for _ in range(2000):
        opt.zero_grad()
        uw(losses).backward()
        opt.step()
    torch.testing.assert_close(uw.log_vars.exp(), losses, atol=1e-3, rtol=1e-3)


def test_uw_bad_inputs():
    with pytest.raises(ValueError, match="num_tasks"):
        UncertaintyWeighting(0)
    with pytest.raises(ValueError, match="task_types"):
        UncertaintyWeighting(2, task_types=["regression"])
    with pytest.raises(ValueError, match="task_types"):
        UncertaintyWeighting(1, task_types=["other"])
    uw = UncertaintyWeighting(2)
    with pytest.raises(ValueError, match="losses"):
        uw(torch.ones(3))
    with pytest.raises(TypeError, match="losses"):
        uw("a")


def test_dwa_matches_formula():
    hist = torch.tensor([[2.0, 1.0, 4.0], [1.0, 0.9, 2.0], [0.8, 0.5, 1.9]], dtype=torch.float64)
    r = hist[-1] / hist[-2]
    ref = 3 * torch.exp(r / 2.0) / torch.exp(r / 2.0).sum()
    torch.testing.assert_close(dwa_weights(hist), ref)
    torch.testing.assert_close(dwa_weights(hist[:1]), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(dwa_weights(hist[:0]), torch.ones(3, dtype=torch.float64))
    # A large temperature tends to equal weights.
    torch.testing.assert_close(
        dwa_weights(hist, 1e6), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_dwa_bad_inputs():
    with pytest.raises(ValueError, match="history"):
        dwa_weights(torch.ones(3))
    with pytest.raises(ValueError, match="temperature"):
        dwa_weights(torch.ones(2, 2), 0.0)
    with pytest.raises(ValueError, match="positive"):
        dwa_weights(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
