"""Gradient aggregators: parity with torchjd 0.18 / conflictfree, and their stated properties.

Peers (test-only): `torchjd.aggregation.{UPGrad, MGDA, PCGrad, ConFIG, Mean}` (UPGrad solves its
QPs with quadprog; ours with an active-set solver), `conflictfree.grad_operator.ConFIG_update`.
torchjd's `CAGrad` needs cvxpy (not installed), so CAGrad is checked against a float64
transcription of the authors' reference (scipy SLSQP on the same objective, written here).
Properties follow torchjd's own tests: non-conflict, equality with the mean when no gradients
conflict, permutation invariance, behaviour under scaling.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conflictfree.grad_operator import ConFIG_update
from scipy.optimize import minimize
from torchjd.aggregation import MGDA, PCGrad, UPGrad
from torchjd.aggregation import ConFIG as TJConFIG
from torchjd.aggregation import Mean as TJMean

from lightning_losses.multitask import (
    aggregate,
    aggregator_weights,
    cagrad_weights,
    config_weights,
    dual_cone_weights,
    gramian,
    mgda_weights,
    pcgrad_weights,
    per_sample_jacobian,
    upgrad_weights,
)

SHAPES = [(2, 7), (3, 10), (5, 20), (8, 30), (6, 4)]  # the last: more objectives than dims


def _jac(seed: int, m: int, n: int) -> torch.Tensor:
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- peer parity
@pytest.mark.parametrize(("m", "n"), SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_upgrad_matches_torchjd(m, n, seed):
    J = _jac(seed, m, n)
    torch.testing.assert_close(aggregate(J, "upgrad"), UPGrad()(J), atol=1e-8, rtol=1e-7)


def test_upgrad_pref_vector_matches_torchjd():
    J = _jac(3, 4, 9)
    pref = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    torch.testing.assert_close(
        aggregate(J, "upgrad", pref_vector=pref), UPGrad(pref_vector=pref)(J), atol=1e-8, rtol=1e-7
    )


@pytest.mark.parametrize(("m", "n"), SHAPES)
def test_mgda_mean_config_match_torchjd(m, n):
    J = _jac(m * n, m, n)
    torch.testing.assert_close(aggregate(J, "mgda"), MGDA()(J), atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(aggregate(J, "mean"), TJMean()(J), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(aggregate(J, "config"), TJConFIG()(J), atol=1e-9, rtol=1e-8)


@pytest.mark.parametrize(("m", "n"), SHAPES)
@pytest.mark.parametrize("least_squares", [True, False])
def test_config_matches_conflictfree(m, n, least_squares):
    J = _jac(10 + m, m, n)
    # ConFIG_update builds float32 equal weights, so it runs in float32 here.
    ref = ConFIG_update(J.float(), use_least_square=least_squares)
    torch.testing.assert_close(aggregate(J, "config").float(), ref, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_pcgrad_matches_torchjd_with_the_same_random_order(m):
    J = _jac(7, m, 12)
    torch.manual_seed(123)
    ref = PCGrad()(J)
    ours = J.T @ pcgrad_weights(gramian(J), generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=1e-10)


def _cagrad_reference(J: torch.Tensor, calpha: float, rescale: int) -> torch.Tensor:
    # The authors' cagrad_exact (Cranial-XIX/CAGrad; LibMTL's CAGrad), in float64 numpy.
    grads = J.numpy()
    m = grads.shape[0]
    GG = grads @ grads.T
    g0_norm = np.sqrt(GG.mean() + 1e-8)
    x_start = np.ones(m) / m
    c = calpha * g0_norm + 1e-8

    def objfn(x):
        return x @ GG @ x_start + c * np.sqrt(x @ GG @ x + 1e-8)

    res = minimize(
        objfn,
        x_start,
        bounds=[(0, 1)] * m,
        constraints=({"type": "eq", "fun": lambda x: 1 - x.sum()},),
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    gw = res.x @ grads
    g = grads.mean(0) + c / (np.linalg.norm(gw) + 1e-8) * gw
    return torch.from_numpy(g / {0: 1.0, 1: 1 + calpha**2, 2: 1 + calpha}[rescale])


@pytest.mark.parametrize(("m", "n"), [(2, 7), (3, 10), (5, 20)])
@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_matches_reference(m, n, rescale):
    J = _jac(40 + m, m, n)
    ours = J.T @ cagrad_weights(gramian(J), 0.5, rescale=rescale)
    torch.testing.assert_close(ours, _cagrad_reference(J, 0.5, rescale), atol=1e-5, rtol=1e-5)


def test_cagrad_zero_radius_is_the_mean():
    J = _jac(4, 3, 8)
    torch.testing.assert_close(aggregate(J, "cagrad", c=0.0), J.mean(0), atol=1e-7, rtol=0)


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize(("m", "n"), [s for s in SHAPES if s[0] <= s[1]])
@pytest.mark.parametrize("seed", [0, 1])
def test_upgrad_and_mgda_do_not_conflict(m, n, seed):
    J = _jac(seed + 100, m, n)
    for method in ("upgrad", "mgda"):
        kwargs = {"epsilon": 1e-9, "max_iters": 10000} if method == "mgda" else {}
        d = aggregate(J, method, **kwargs)
        # reg_eps / max_iters make the bound approximate: tolerate a tiny negative part. (With
        # m > n random rows span the space positively: the dual cone is {0}, d ~ reg_eps.)
        assert (J @ d >= -1e-3 * J.norm() * d.norm()).all(), method


def test_config_has_equal_cosines_and_positive_products():
    J = _jac(5, 4, 12)
    d = aggregate(J, "config")
    cos = (J @ d) / (J.norm(dim=1) * d.norm())
    torch.testing.assert_close(cos, cos.mean().expand(4), atol=1e-10, rtol=0)
    assert (J @ d > 0).all()


def test_non_conflicting_gradients_give_the_mean():
    # Rows with pairwise non-negative inner products: UPGrad and CAGrad-free mean coincide.
    J = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.1], [0.2, 0.1, 1.0]], dtype=torch.float64)
    assert (gramian(J) >= 0).all()
    mean = J.mean(0)
    # reg_eps perturbs the normalised Gramian only off the active set: exact here.
    torch.testing.assert_close(aggregate(J, "upgrad"), mean, atol=1e-12, rtol=0)
    # PCGrad projects nothing, so it is the sum.
    torch.testing.assert_close(aggregate(J, "pcgrad"), J.sum(0), atol=1e-12, rtol=0)


@pytest.mark.parametrize("method", ["upgrad", "mgda", "config", "mean", "cagrad"])
def test_permutation_invariance(method):
    J = _jac(9, 5, 11)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(
        aggregate(J[perm], method), aggregate(J, method), atol=1e-7, rtol=1e-6
    )


def test_scaling_behaviour():
    J = _jac(11, 3, 9)
    # Scaling all of J: UPGrad, MGDA, ConFIG, mean are positively homogeneous.
    for method in ("upgrad", "mgda", "config", "mean"):
        torch.testing.assert_close(aggregate(3.0 * J, method), 3.0 * aggregate(J, method))
    # Scaling one row: UPGrad's direction still does not conflict with any row.
    scaled = J * torch.tensor([[10.0], [1.0], [0.1]], dtype=torch.float64)
    d = aggregate(scaled, "upgrad")
    assert (scaled @ d >= -1e-3 * scaled.norm() * d.norm()).all()


def test_dual_cone_weights_kkt():
    J = _jac(12, 6, 5)
    G = gramian(J) + 1e-6 * torch.eye(6, dtype=torch.float64)
    u = torch.rand(6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = dual_cone_weights(u, G)
    grad = G @ v
    assert (v >= u - 1e-12).all()
    assert (grad >= -1e-9).all()  # dual feasibility
    torch.testing.assert_close(
        (v - u) * grad, torch.zeros(6, dtype=torch.float64), atol=1e-9, rtol=0
    )


def test_mgda_min_norm_two_tasks_closed_form():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # min_a |a g1 + (1-a) g2|^2: a = g2.(g2-g1)/|g1-g2|^2 = 4/5.
    w = mgda_weights(gramian(torch.stack([g1, g2]).double()), epsilon=1e-12, max_iters=1000)
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2], dtype=torch.float64), atol=1e-9, rtol=0)


def test_float32_input_and_zero_jacobian():
    J = _jac(1, 3, 5).float()
    assert aggregate(J, "upgrad").dtype == torch.float32
    zero = torch.zeros(3, 5)
    for method in ("upgrad", "mgda", "config", "mean", "pcgrad", "cagrad"):
        out = aggregate(zero, method)
        assert torch.isfinite(out).all() and (out == 0).all(), method
    assert torch.isfinite(config_weights(gramian(torch.tensor([[1.0, 0.0], [0.0, 0.0]])))).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="jacobian"):
        aggregate(torch.zeros(3))
    with pytest.raises(TypeError, match="jacobian"):
        aggregate(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="method"):
        aggregator_weights(torch.eye(2), "nope")
    with pytest.raises(ValueError, match="gramian"):
        upgrad_weights(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="finite"):
        upgrad_weights(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="pref_vector"):
        upgrad_weights(torch.eye(2), torch.ones(3))
    with pytest.raises(ValueError, match="epsilon"):
        mgda_weights(torch.eye(2), epsilon=0.0)
    with pytest.raises(ValueError, match="rescale"):
        cagrad_weights(torch.eye(2), rescale=3)


# ------------------------------------------------------------------------ IWRM (per sample)
def test_per_sample_jacobian_matches_a_loop_of_autograd_grads():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)
    ).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randint(3, (5,))
    J = per_sample_jacobian(net, torch.nn.functional.cross_entropy, x, y)
    params = list(net.parameters())
    rows = []
    for i in range(5):
        loss = torch.nn.functional.cross_entropy(net(x[i : i + 1]), y[i : i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    torch.testing.assert_close(J, torch.stack(rows), atol=1e-12, rtol=1e-10)
    # IWRM: the UPGrad step conflicts with no sample's loss.
    d = aggregate(J, "upgrad")
    assert (J @ d >= -1e-3 * J.norm() * d.norm()).all()


def test_per_sample_jacobian_bad_inputs():
    net = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="batch"):
        per_sample_jacobian(net, torch.nn.functional.mse_loss, torch.zeros(3, 2), torch.zeros(2, 1))
    frozen = torch.nn.Linear(2, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        per_sample_jacobian(
            frozen, torch.nn.functional.mse_loss, torch.zeros(3, 2), torch.zeros(3, 1)
        )
