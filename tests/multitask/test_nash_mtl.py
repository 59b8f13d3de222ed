"""Nash-MTL weights: the defining equation and the properties the paper proves.

torchjd's `NashMTL` needs cvxpy (not installed, not a dependency), so there is no peer here; the
weights are checked on the equation of Theorem 5.1 of *Multi-Task Learning as a Bargaining Game*
(Navon et al., ICML 2022, arXiv:2202.01017), $(G\\alpha)_i = 1/\\alpha_i$ with $\\alpha > 0$,
computed in float64 from the Jacobian itself, and on closed forms.
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.multitask import aggregate, aggregator_weights, nash_mtl_weights

SHAPES = [(2, 7), (3, 10), (5, 20), (8, 30), (10, 10)]


def _jac(seed: int, m: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scales = 10.0 ** (2 * torch.rand(m, 1, generator=g, dtype=torch.float64) - 1)
    return scales * torch.randn(m, n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(("m", "n"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solves_the_bargaining_equation(m, n, seed):
    J = _jac(seed, m, n)
    alpha = nash_mtl_weights(J @ J.T, max_norm=0.0, reg_eps=0.0)
    assert (alpha > 0).all()
    # Each task's directional derivative along d = J^T alpha is 1 / alpha_i.
    torch.testing.assert_close(J @ (J.T @ alpha), 1.0 / alpha, rtol=1e-9, atol=0.0)


def test_per_task_scale_invariance():
    J = _jac(3, 4, 12)
    c = torch.tensor([0.1, 3.0, 1.0, 25.0], dtype=torch.float64)
    d = aggregate(J, "nash_mtl", max_norm=0.0, reg_eps=0.0)
    d_scaled = aggregate(c[:, None] * J, "nash_mtl", max_norm=0.0, reg_eps=0.0)
    torch.testing.assert_close(d_scaled, d, rtol=1e-9, atol=1e-12)


def test_orthogonal_gradients_give_the_sum_of_unit_vectors():
    q, _ = torch.linalg.qr(torch.randn(9, 3, generator=torch.Generator().manual_seed(0)).double())
    norms = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    J = norms[:, None] * q.T
    alpha = nash_mtl_weights(J @ J.T, max_norm=0.0, reg_eps=0.0)
    torch.testing.assert_close(alpha, 1.0 / norms)
    # Equal norms: the direction of the mean gradient.
    J_eq = 2.0 * q.T
    d = aggregate(J_eq, "nash_mtl", max_norm=0.0)
    mean = J_eq.mean(0)
    torch.testing.assert_close(d / d.norm(), mean / mean.norm())


def test_two_tasks_closed_form():
    # m = 2, G = [[a, c], [c, b]]: a x^2 + c x y = 1 and b y^2 + c x y = 1 give
    # x^2 = (1 - c x y) / a, y = x sqrt(a / b) (since a x^2 = b y^2), so
    # x^2 (a + c sqrt(a / b)) = 1.
    a, b, c = 2.0, 5.0, -1.3
    G = torch.tensor([[a, c], [c, b]], dtype=torch.float64)
    x = (a + c * (a / b) ** 0.5) ** -0.5
    expected = torch.tensor([x, x * (a / b) ** 0.5], dtype=torch.float64)
    torch.testing.assert_close(nash_mtl_weights(G, max_norm=0.0, reg_eps=0.0), expected)


def test_max_norm_caps_the_direction():
    J = 0.01 * _jac(4, 3, 8)  # small gradients: large alpha, a long direction
    d = aggregate(J, "nash_mtl")
    assert abs(float(d.norm()) - 1.0) < 1e-9
    free = aggregate(J, "nash_mtl", max_norm=0.0)
    torch.testing.assert_close(d, free / free.norm())
    short = aggregate(100.0 * J, "nash_mtl", max_norm=1e6)
    torch.testing.assert_close(short, free, rtol=1e-6, atol=1e-9)  # below the cap: unchanged


def test_zero_gradient_and_degenerate_inputs():
    J = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    alpha = nash_mtl_weights(J @ J.T, max_norm=0.0, reg_eps=0.0)
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))
    zero = nash_mtl_weights(torch.zeros(3, 3))
    assert zero.dtype == torch.float32 and not zero.any()
    # More tasks than dimensions, zero in the gradients' convex hull: no bargaining solution;
    # the regularised weights stay finite and the capped step is short.
    J = _jac(12, 6, 4)
    w = aggregator_weights(J @ J.T, "nash_mtl")
    assert torch.isfinite(w).all() and float((J.T @ w).norm()) <= 1.0 + 1e-9


def test_bad_arguments():
    G = torch.eye(2)
    with pytest.raises(ValueError, match="max_norm"):
        nash_mtl_weights(G, max_norm=-1.0)
    with pytest.raises(ValueError, match="reg_eps"):
        nash_mtl_weights(G, reg_eps=-1.0)
    with pytest.raises(ValueError, match="max_iters"):
        nash_mtl_weights(G, max_iters=0)
    with pytest.raises(ValueError, match="gramian"):
        nash_mtl_weights(torch.ones(2, 3))


@pytest.mark.parametrize(("m", "n"), [(2, 7), (3, 10), (5, 20)])
def test_asymmetric_bargaining_equation(m, n):
    # Shamsian et al. (arXiv:2301.13501): (G alpha)_i = p_i / alpha_i, p clamped at 1e-4 and
    # rescaled to sum to m as in the authors' AuxiNash.set_p.
    J = _jac(7 + m, m, n)
    raw = torch.linspace(0.0, 2.0, m, dtype=torch.float64)
    p = raw.clamp_min(1e-4)
    p = p / p.sum() * m
    alpha = nash_mtl_weights(J @ J.T, raw, max_norm=0.0, reg_eps=0.0)
    torch.testing.assert_close(J @ (J.T @ alpha), p / alpha, rtol=1e-9, atol=0.0)
    # Equal powers (any scale) are Nash-MTL.
    torch.testing.assert_close(
        nash_mtl_weights(J @ J.T, torch.full((m,), 3.0, dtype=torch.float64), max_norm=0.0),
        nash_mtl_weights(J @ J.T, max_norm=0.0),
    )
    # The implicit derivative the authors use, d alpha / d p = (G + diag(p / a^2))^-1 diag(1/a),
    # against a finite difference (p rescaled to sum m, so perturb within that set).
    G = J @ J.T
    p = torch.linspace(0.5, 2.0, m, dtype=torch.float64)
    p = p / p.sum() * m  # away from the clamp, already summing to m
    alpha = nash_mtl_weights(G, p, max_norm=0.0, reg_eps=0.0)
    direction = torch.zeros(m, dtype=torch.float64)
    direction[0], direction[-1] = 1.0, -1.0
    eps = 1e-6
    plus = nash_mtl_weights(G, p + eps * direction, max_norm=0.0, reg_eps=0.0)
    minus = nash_mtl_weights(G, p - eps * direction, max_norm=0.0, reg_eps=0.0)
    implicit = torch.linalg.solve(G + torch.diag(p / alpha**2), direction / alpha)
    torch.testing.assert_close((plus - minus) / (2 * eps), implicit, rtol=1e-5, atol=1e-7)


def test_bargaining_powers_bad_input():
    with pytest.raises(ValueError, match="bargaining_powers"):
        nash_mtl_weights(torch.eye(2), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="bargaining_powers"):
        nash_mtl_weights(torch.eye(2), torch.ones(3))
