"""MomentumConFIG against the authors' `conflictfree.momentum_operator.PseudoMomentumOperator`."""

from __future__ import annotations

import pytest
import torch
from conflictfree.momentum_operator import PseudoMomentumOperator

from lightning_losses.multitask import MomentumConFIG


@pytest.fixture
def float64_default():
    # conflictfree builds its buffers and ConFIG weights in the default dtype.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _grads(seed, steps, m, n):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m, n, generator=g, dtype=torch.float64)
    return [base + 0.5 * torch.randn(m, n, generator=g, dtype=torch.float64) for _ in range(steps)]


@pytest.mark.parametrize(("m", "n"), [(2, 6), (3, 10), (4, 7)])
@pytest.mark.parametrize("alternate", [True, False])
def test_matches_conflictfree_step_by_step(m, n, alternate, float64_default):
    ours = MomentumConFIG(m, beta_1=0.8, beta_2=0.99)
    ref = PseudoMomentumOperator(m, beta_1=0.8, beta_2=0.99)
    for step, jac in enumerate(_grads(m * n, 12, m, n)):
        if alternate:
            i = step % m
            got, exp = ours.update(i, jac[i]), ref.calculate_gradient(i, jac[i])
        else:
            idx = list(range(m))
            got, exp = ours.update(idx, jac), ref.calculate_gradient(idx, list(jac))
        torch.testing.assert_close(got, exp.to(got), rtol=1e-7, atol=1e-9)


def test_state_round_trip_continues_identically():
    grads = _grads(0, 10, 3, 5)
    a = MomentumConFIG(3)
    for step in range(5):
        a.update(step % 3, grads[step][step % 3])
    b = MomentumConFIG(3)
    b.load_state_dict(a.state_dict())
    for step in range(5, 10):
        torch.testing.assert_close(
            b.update(step % 3, grads[step][step % 3]), a.update(step % 3, grads[step][step % 3])
        )


def test_bad_inputs():
    with pytest.raises(ValueError, match="beta_1"):
        MomentumConFIG(2, beta_1=1.0)
    with pytest.raises(ValueError, match="num_tasks"):
        MomentumConFIG(0)
    op = MomentumConFIG(2)
    with pytest.raises(ValueError, match="indexes"):
        op.update(2, torch.ones(3))
    with pytest.raises(ValueError, match="grads"):
        op.update([0, 1], torch.ones(3))
    op.update(0, torch.ones(3))
    with pytest.raises(ValueError, match="entries"):
        op.update(1, torch.ones(4))
    with pytest.raises(ValueError, match="losses"):
        MomentumConFIG(3).load_state_dict(op.state_dict())
