"""GradNorm against a float64 transcription of Algorithm 1 of the paper.

*GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks*
(Chen et al., ICML 2018, arXiv:1711.02257). The reference below writes the update of the task
weights by hand: the subgradient of $\\sum_i |w_i n_i - \\bar G r_i^\\alpha|$ with the target held
fixed is $\\mathrm{sign}(w_i n_i - t_i)\\, n_i$, then a renormalisation to $\\sum w = T$; the
network steps on $\\sum_i w_i L_i$ with the weights fixed.
"""

from __future__ import annotations

import pytest
import torch

from lightning_losses.multitask import GradNorm, gradnorm_update

LR, STEPS = 0.05, 6


def _setup():
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(6, 1), torch.nn.Linear(6, 1)]).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = torch.randn(16, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0]).double()
    return trunk, heads, x, y


def _losses(trunk, heads, x, y):
    h = trunk(x)
    return [(heads[i](h).squeeze(1) - y[:, i]).square().mean() for i in range(2)]


def _reference(alpha):
    trunk, heads, x, y = _setup()
    params = [*trunk.parameters(), *heads.parameters()]
    shared = list(trunk[0].parameters())
    w = torch.ones(2, dtype=torch.float64)
    l0 = None
    for _ in range(STEPS):
        w = 2 * w / w.sum()
        losses = _losses(trunk, heads, x, y)
        n = torch.stack(
            [
                torch.cat(
                    [g.reshape(-1) for g in torch.autograd.grad(li, shared, retain_graph=True)]
                ).norm()
                for li in losses
            ]
        )
        current = torch.stack([li.detach() for li in losses])
        l0 = current.clone() if l0 is None else l0
        ratio = current / l0
        r = ratio / ratio.mean()
        g_w = w * n
        target = g_w.mean() * r**alpha
        grad_w = torch.sign(g_w - target) * n
        grads = torch.autograd.grad(sum(wi * li for wi, li in zip(w, losses)), params)
        with torch.no_grad():
            for p, gp in zip(params, grads):
                p -= LR * gp
        w = w - LR * grad_w
    w = 2 * w / w.sum()
    return w, [p.detach().clone() for p in params]


@pytest.mark.parametrize("alpha", [0.0, 0.12, 1.5])
def test_matches_the_papers_update(alpha):
    trunk, heads, x, y = _setup()
    gn = GradNorm(2, alpha=alpha).double()
    params = [*trunk.parameters(), *heads.parameters()]
    opt = torch.optim.SGD([*params, *gn.parameters()], lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        total = gn(_losses(trunk, heads, x, y), trunk[0].parameters())
        total.backward()
        opt.step()
    gn.renormalize()
    w_ref, p_ref = _reference(alpha)
    torch.testing.assert_close(gn.weights(), w_ref)
    for got, exp in zip(params, p_ref):
        torch.testing.assert_close(got.detach(), exp)
    assert gn.initial_losses.shape == (2,) and gn.last_gradnorm_loss is not None


def test_value_is_the_weighted_sum_and_network_gradient_ignores_l_grad():
    trunk, heads, x, y = _setup()
    gn = GradNorm(2).double()
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([0.5, 1.5]))
    losses = _losses(trunk, heads, x, y)
    total = gn(losses, trunk[0].parameters())
    torch.testing.assert_close(total, 0.5 * losses[0] + 1.5 * losses[1])
    expected = torch.autograd.grad(
        0.5 * losses[0] + 1.5 * losses[1], list(trunk.parameters()), retain_graph=True
    )
    got = torch.autograd.grad(total, list(trunk.parameters()), retain_graph=True)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_alpha_zero_equalises_the_weighted_gradient_norms():
    # Fixed network (only the weights train): w_i n_i -> a common value, so w_i ∝ 1 / n_i.
    trunk, heads, x, y = _setup()
    gn = GradNorm(2, alpha=0.0).double()
    opt = torch.optim.SGD(gn.parameters(), lr=1e-3)
    for _ in range(3000):
        opt.zero_grad()
        gn(_losses(trunk, heads, x, y), trunk[0].parameters()).backward()
        opt.step()
    gn.renormalize()
    losses = _losses(trunk, heads, x, y)
    n = torch.stack(
        [
            torch.cat(
                [
                    g.reshape(-1)
                    for g in torch.autograd.grad(li, list(trunk[0].parameters()), retain_graph=True)
                ]
            ).norm()
            for li in losses
        ]
    )
    expected = 2 * (1 / n) / (1 / n).sum()
    torch.testing.assert_close(gn.weights(), expected, atol=5e-3, rtol=0.0)


def test_state_dict_keeps_the_initial_losses():
    trunk, heads, x, y = _setup()
    gn = GradNorm(2).double()
    gn(_losses(trunk, heads, x, y), trunk[0].parameters())
    other = GradNorm(2).double()
    other.load_state_dict(gn.state_dict())
    torch.testing.assert_close(other.initial_losses, gn.initial_losses)


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_tasks"):
        GradNorm(0)
    with pytest.raises(ValueError, match="alpha"):
        GradNorm(2, alpha=-1.0)
    trunk, heads, x, y = _setup()
    gn = GradNorm(2).double()
    with pytest.raises(ValueError, match="losses"):
        gn(_losses(trunk, heads, x, y)[:1], trunk.parameters())
    with pytest.raises(ValueError, match="shared_parameters"):
        gn(_losses(trunk, heads, x, y), [])
    with pytest.raises(ValueError, match="positive"):
        w = torch.ones(1, dtype=torch.float64, requires_grad=True)
        gn([0.0 * w.sum(), w.sum()], [w])


def test_explicit_update_equals_the_modules_autograd_step():
    trunk, heads, x, y = _setup()
    gn = GradNorm(2, alpha=1.5).double()
    with torch.no_grad():
        gn.task_weights.copy_(torch.tensor([0.7, 1.3]))
    losses = _losses(trunk, heads, x, y)
    shared = list(trunk[0].parameters())
    n = torch.stack(
        [
            torch.cat(
                [g.reshape(-1) for g in torch.autograd.grad(li, shared, retain_graph=True)]
            ).norm()
            for li in losses
        ]
    )
    current = torch.stack([li.detach() for li in losses])
    l0 = current * torch.tensor([1.5, 0.8], dtype=torch.float64)  # some earlier losses
    gn.initial_losses.copy_(l0)
    expected = gradnorm_update(gn.weights(), n, current, l0, alpha=1.5, lr=0.05)
    opt = torch.optim.SGD(gn.parameters(), lr=0.05)
    gn(losses, shared).backward()
    opt.step()
    gn.renormalize()
    torch.testing.assert_close(gn.weights(), expected)


def test_gradnorm_update_bad_inputs():
    one = torch.ones(2)
    with pytest.raises(ValueError, match="initial_losses"):
        gradnorm_update(one, one, one, torch.zeros(2), alpha=1.0, lr=0.1)
    with pytest.raises(ValueError, match="shape"):
        gradnorm_update(one, torch.ones(3), one, one, alpha=1.0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        gradnorm_update(one, one, one, one, alpha=1.0, lr=-0.1)
