"""The debiased Sinkhorn divergence against GeomLoss (test-only peer) and a naive float64 solver.

GeomLoss conventions matched here: `SamplesLoss("sinkhorn", p=2, blur=b, scaling=s)` uses the
cost $|x - y|^2 / 2$, $\\epsilon = b^2$, $\\epsilon$-scaling from the clouds' diameter, and
returns $\\langle\\alpha, f_{ab} - f_{aa}\\rangle + \\langle\\beta, g_{ab} - g_{bb}\\rangle$.
The naive reference runs plain (not log-domain) Sinkhorn matrix scaling at the final
$\\epsilon$ until convergence, in float64.
"""

from __future__ import annotations

import geomloss
import pytest
import torch

from lightning_losses.functional import sinkhorn_alignment_loss, sinkhorn_divergence


def _naive_ot(x, y, eps, iters=5000):
    c = torch.cdist(x, y) ** 2 / 2
    k = torch.exp(-c / eps)
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64)
    v = torch.ones_like(b)
    for _ in range(iters):
        u = a / (k @ v)
        v = b / (k.T @ u)
    f, g = eps * torch.log(u), eps * torch.log(v)
    return float(a @ f + b @ g)


def _naive_divergence(x, y, eps):
    return _naive_ot(x, y, eps) - 0.5 * _naive_ot(x, x, eps) - 0.5 * _naive_ot(y, y, eps)


@pytest.mark.parametrize(("blur", "scaling"), [(0.5, 0.5), (0.1, 0.7), (0.05, 0.9), (2.0, 0.5)])
def test_matches_geomloss_in_value_and_gradient(blur, scaling):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(15, 3, generator=g, dtype=torch.float64) + 1.0).requires_grad_(True)
    peer = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, backend="tensorized")
    want = peer(x, y)
    want_grads = torch.autograd.grad(want, (x, y))
    got = sinkhorn_divergence(x, y, blur=blur, scaling=scaling)
    got_grads = torch.autograd.grad(got, (x, y))
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_converges_to_the_naive_fixed_point_with_the_exact_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(9, 2, generator=g, dtype=torch.float64) * 0.5 + 0.7
    got = sinkhorn_divergence(x, y, blur=0.7, iterations=300)
    assert float(got.detach()) == pytest.approx(_naive_divergence(x.detach(), y, 0.49), rel=1e-8)
    # Converged, the envelope gradient is the gradient: central differences of the naive value.
    (grad,) = torch.autograd.grad(got, x)
    h = 1e-5
    for i, k in ((0, 0), (5, 1), (11, 0)):
        xp, xm = x.detach().clone(), x.detach().clone()
        xp[i, k] += h
        xm[i, k] -= h
        fd = (_naive_divergence(xp, y, 0.49) - _naive_divergence(xm, y, 0.49)) / (2 * h)
        assert float(grad[i, k]) == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_special_cases_identical_symmetric_nonnegative_and_two_diracs():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = torch.randn(25, 4, generator=g, dtype=torch.float64) * 2
    assert abs(float(sinkhorn_divergence(x, x))) < 1e-12  # 0 up to summation order
    torch.testing.assert_close(
        sinkhorn_divergence(x, y, blur=0.3, iterations=200),
        sinkhorn_divergence(y, x, blur=0.3, iterations=200),
    )
    for seed in range(5):
        gg = torch.Generator().manual_seed(seed)
        a, b = torch.randn(8, 3, generator=gg), torch.randn(11, 3, generator=gg)
        assert float(sinkhorn_divergence(a, b, blur=0.2)) >= 0.0
    # One point each: the only plan moves all mass, cost |x - y|^2 / 2, self terms 0.
    p, q = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(sinkhorn_divergence(p, q, blur=0.1), torch.tensor(12.5))


def test_low_precision_is_upcast_and_gradients_are_finite():
    x = torch.randn(16, 3, dtype=torch.bfloat16, requires_grad=True)
    y = torch.randn(16, 3, dtype=torch.bfloat16) + 1
    out = sinkhorn_divergence(x, y, blur=0.1)
    assert out.dtype == torch.float32
    out.backward()
    assert torch.isfinite(x.grad.float()).all()


def test_alignment_loss_over_domain_pairs():
    g = torch.Generator().manual_seed(3)
    doms = [torch.randn(n, 2, generator=g) + k for k, n in enumerate((10, 7, 12))]
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = torch.stack([sinkhorn_divergence(doms[i], doms[j]) for i, j in pairs])
    torch.testing.assert_close(sinkhorn_alignment_loss(doms, reduction="none"), want)
    torch.testing.assert_close(sinkhorn_alignment_loss(doms), want.mean())
    torch.testing.assert_close(sinkhorn_alignment_loss(doms, reduction="sum"), want.sum())


def test_bad_arguments_raise_naming_them():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="blur"):
        sinkhorn_divergence(x, x, blur=0.0)
    with pytest.raises(ValueError, match="scaling"):
        sinkhorn_divergence(x, x, scaling=1.0)
    with pytest.raises(ValueError, match="iterations"):
        sinkhorn_divergence(x, x, iterations=-1)
    with pytest.raises(ValueError, match="x and y"):
        sinkhorn_divergence(x, torch.randn(4, 3))
    with pytest.raises(TypeError, match="x"):
        sinkhorn_divergence(x.long(), x)
    with pytest.raises(ValueError, match="two domains"):
        sinkhorn_alignment_loss([x])
    with pytest.raises(TypeError, match="features"):
        sinkhorn_alignment_loss(x)
    with pytest.raises(ValueError, match="reduction"):
        sinkhorn_alignment_loss([x, x], reduction="avg")
