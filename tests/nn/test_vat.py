"""VAT (Miyato et al., TPAMI 2018, arXiv:1704.03976) against a naive float64 reference.

Reference, written from the paper: $\\hat p$ = softmax of the clean logits (detached),
$d_0 \\sim N(0, I)$ normalised per sample, $K$ times $d \\leftarrow$
normalise$(\\nabla_r \\mathrm{KL}(\\hat p \\| p(x + r))|_{r = \\xi d})$, loss
$= \\frac1B \\sum_b \\mathrm{KL}(\\hat p_b \\| p(x_b + \\epsilon d_b))$. The direction must converge
to the dominant eigenvector of the Hessian $W^\\top(\\mathrm{diag}(p) - pp^\\top)W$
for a linear-softmax model (the quadratic approximation of the KL at $r = 0$).
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.nn import frozen_batchnorm_stats, vat_direction, vat_loss


def _normalize(d):
    flat = d.reshape(d.shape[0], -1)
    return (flat / flat.norm(dim=1, keepdim=True)).reshape(d.shape)


def _kl(p_logits, q_logits):
    p = torch.softmax(p_logits, -1)
    return (p * (torch.log_softmax(p_logits, -1) - torch.log_softmax(q_logits, -1))).sum(-1)


def _reference(model, x, seed, xi, eps, k):
    p_logits = model(x).detach()
    d = _normalize(
        torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    )
    for _ in range(k):
        r = (xi * d).requires_grad_(True)
        (g,) = torch.autograd.grad(_kl(p_logits, model(x + r)).sum(), r)
        d = _normalize(g)
    return _kl(p_logits, model(x + eps * d)).mean()


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 4)
    ).double()


@pytest.mark.parametrize("k", [1, 3])
def test_loss_and_parameter_gradient_match_the_reference(k):
    model = _mlp()
    x = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = list(model.parameters())
    ours = vat_loss(
        model, x, xi=1e-3, eps=0.5, power_iters=k, generator=torch.Generator().manual_seed(4)
    )
    ref = _reference(model, x, 4, 1e-3, 0.5, k)
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours, params)
    g_ref = torch.autograd.grad(ref, params)
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b)
    assert all(p.grad is None for p in params)  # the power iteration left .grad alone


def test_direction_converges_to_the_dominant_hessian_eigenvector():
    gen = torch.Generator().manual_seed(26)  # eigengap λ1/λ2 = 1.15: convergence takes steps
    w = torch.randn(5, 8, dtype=torch.float64, generator=gen)
    x = torch.randn(1, 8, dtype=torch.float64, generator=gen)

    def model(inp):
        return inp @ w.T

    p = torch.softmax(model(x)[0], -1)
    hessian = w.T @ (torch.diag(p) - torch.outer(p, p)) @ w
    evals, evecs = torch.linalg.eigh(hessian)
    top = evecs[:, -1]
    assert evals[-1] > 1.1 * evals[-2]  # an eigengap, so the power iteration converges
    d = vat_direction(model, x, xi=1e-4, power_iters=100, generator=gen)
    assert abs(float(d[0] @ top)) > 0.999
    torch.testing.assert_close(d.norm(dim=1), torch.ones(1, dtype=torch.float64))
    # one iteration from a random start is not yet there (the test can tell)
    d1 = vat_direction(model, x, xi=1e-4, power_iters=1, generator=torch.Generator().manual_seed(9))
    assert abs(float(d1[0] @ top)) < 0.999


def test_batchnorm_running_stats_are_untouched():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 3)
    )
    model(torch.randn(8, 5))  # some non-trivial running statistics first
    bn = model[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    loss = vat_loss(model, torch.randn(8, 5), eps=1.0, power_iters=2)
    loss.backward()
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(bn.num_batches_tracked, before[2]) and bn.momentum == 0.1
    assert model.training and float(loss.detach()) > 0
    # the context manager alone, for a module in training mode, and eval-mode BN is untouched
    with frozen_batchnorm_stats(model):
        model(torch.randn(8, 5) * 3 + 1)
    assert torch.equal(bn.running_mean, before[0])


def test_constant_model_and_zero_eps_give_zero():
    x = torch.randn(4, 5)
    const = torch.nn.Parameter(torch.randn(3))

    def constant(inp):
        return const.expand(inp.shape[0], 3) + 0 * inp.sum(1, keepdim=True)

    assert float(vat_loss(constant, x, eps=2.0).detach()) == 0.0
    model = _mlp().float()
    assert float(vat_loss(model, x, eps=0.0).detach()) == 0.0


def test_non_negative_reductions_and_reused_logits():
    model = _mlp().float()
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(3))
    logits = model(x)
    per = vat_loss(
        model, x, logits, eps=1.0, reduction="none", generator=torch.Generator().manual_seed(0)
    )
    assert per.shape == (6,) and bool((per >= 0).all())
    total = vat_loss(
        model, x, logits, eps=1.0, reduction="sum", generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(total, per.sum())
    # the given logits are detached: no gradient flows through the clean prediction
    logits.retain_grad()
    loss = vat_loss(model, x, logits, eps=1.0)
    loss.backward()
    assert logits.grad is None


def test_image_shaped_inputs_are_normalised_per_sample():
    conv = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)
    )
    d = vat_direction(conv, torch.randn(3, 1, 6, 6), xi=1e-3)
    assert d.shape == (3, 1, 6, 6)
    torch.testing.assert_close(d.flatten(1).norm(dim=1), torch.ones(3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": 3}, TypeError, "model"),
        ({"x": torch.ones(4)}, ValueError, "batched"),
        ({"x": torch.ones(4, 5, dtype=torch.long)}, TypeError, "x"),
        ({"logits": torch.ones(3, 4)}, ValueError, "logits"),
        ({"eps": -1.0}, ValueError, "eps"),
        ({"xi": 0.0}, ValueError, "xi"),
        ({"power_iters": 0}, ValueError, "power_iters"),
        ({"reduction": "batchmean"}, ValueError, "reduction"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    args = {"model": _mlp().float(), "x": torch.ones(4, 5), **kwargs}
    with pytest.raises(error, match=match):
        vat_loss(args.pop("model"), args.pop("x"), **args)
