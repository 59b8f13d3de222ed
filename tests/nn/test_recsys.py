"""MF and LightGCN against dense references written from the papers' formulas."""

from __future__ import annotations

import pytest
import torch

from lightning_losses.nn import LightGCN, MatrixFactorization, normalized_adjacency


def interactions():
    users = torch.tensor([0, 0, 1, 2, 2, 2, 0])  # last one duplicates (0, 1)
    items = torch.tensor([1, 3, 0, 0, 2, 3, 1])
    return users, items


def dense_adjacency(users, items, nu, ni):
    r = torch.zeros(nu, ni)
    r[users, items] = 1.0
    a = torch.zeros(nu + ni, nu + ni)
    a[:nu, nu:] = r
    a[nu:, :nu] = r.T
    d = a.sum(1).clamp_min(1).rsqrt()
    return d[:, None] * a * d[None, :]


def test_normalized_adjacency_matches_dense_formula():
    users, items = interactions()
    ours = normalized_adjacency(users, items, 4, 5).to_dense()  # user 3 and item 4 isolated
    torch.testing.assert_close(ours, dense_adjacency(users, items, 4, 5))
    assert ours[3].abs().sum() == 0 and ours[:, 4 + 4].abs().sum() == 0


def test_lightgcn_is_the_mean_of_propagated_layers_with_gradients():
    torch.manual_seed(0)
    users, items = interactions()
    gcn = LightGCN(3, 4, dim=5, num_layers=3).double()
    gcn.set_graph(users, items)
    u, i = gcn.embeddings()
    a = dense_adjacency(users, items, 3, 4).double()
    e0 = torch.cat([gcn.user_embedding.weight, gcn.item_embedding.weight])
    layers = [e0]
    for _ in range(3):
        layers.append(a @ layers[-1])
    ref = torch.stack(layers).mean(0)
    torch.testing.assert_close(torch.cat([u, i]), ref)
    g1 = torch.autograd.grad((u.sum() + (i**2).sum()), gcn.user_embedding.weight)[0]
    g2 = torch.autograd.grad((ref[:3].sum() + (ref[3:] ** 2).sum()), gcn.user_embedding.weight)[0]
    torch.testing.assert_close(g1, g2)


def test_lightgcn_without_layers_equals_mf_and_needs_a_graph():
    torch.manual_seed(0)
    gcn = LightGCN(3, 4, dim=2, num_layers=0)
    with pytest.raises(RuntimeError, match="set_graph"):
        gcn.embeddings()
    gcn.set_graph(*interactions()[:2])
    u, _ = gcn.embeddings()
    torch.testing.assert_close(u, gcn.user_embedding.weight)


def test_mf_scores_are_dot_products_and_cosine_is_bounded():
    torch.manual_seed(0)
    mf = MatrixFactorization(3, 6, dim=4)
    users, items = torch.tensor([0, 2]), torch.tensor([[1, 5, 0], [2, 2, 3]])
    ref = torch.einsum(
        "bd,bkd->bk", mf.user_embedding.weight[users], mf.item_embedding.weight[items]
    )
    torch.testing.assert_close(mf(users, items), ref)
    torch.testing.assert_close(mf(users, items[:, 0]), ref[:, 0])
    full = mf.full_scores(*mf.embeddings(), users)
    torch.testing.assert_close(full.gather(1, items), ref)
    cos = MatrixFactorization(3, 6, dim=4, similarity="cosine")
    assert cos(users, items).abs().max() <= 1 + 1e-6


def test_bad_arguments_raise():
    mf = MatrixFactorization(3, 6)
    with pytest.raises(ValueError, match="items"):
        mf(torch.tensor([0]), torch.tensor([6]))
    with pytest.raises(TypeError, match="users"):
        mf(torch.tensor([0.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="similarity"):
        MatrixFactorization(3, 6, similarity="l2")
    with pytest.raises(ValueError, match="num_layers"):
        LightGCN(3, 6, num_layers=-1)
    with pytest.raises(ValueError, match="num_users"):
        MatrixFactorization(0, 6)


@pytest.mark.parametrize("model_cls", [MatrixFactorization, LightGCN])
def test_l2_penalty_is_the_per_batch_layer0_form(model_cls):
    torch.manual_seed(0)
    model = model_cls(3, 5, dim=4, l2_reg=0.3)
    if isinstance(model, LightGCN):
        users_g, items_g = interactions()
        model.set_graph(users_g.clamp_max(2), items_g)
    users, pos = torch.tensor([0, 2, 2]), torch.tensor([1, 4, 0])
    neg = torch.tensor([[3, 2], [0, 0], [1, 3]])  # K = 2 negatives, a duplicate counts twice
    out = model.l2_penalty(users, pos, neg)
    u, v = model.user_embedding.weight, model.item_embedding.weight  # layer 0, not propagated
    ref = sum(
        u[users[b]].square().sum() + v[pos[b]].square().sum() + v[neg[b]].square().sum()
        for b in range(3)
    )
    torch.testing.assert_close(out, 0.3 * ref / 3)
    out.backward()
    # Only the touched rows get a gradient: 2 λ / B · e per occurrence.
    grad_u = torch.zeros_like(u)
    for b in range(3):
        grad_u[users[b]] += 2 * 0.3 / 3 * u[users[b]].detach()
    torch.testing.assert_close(model.user_embedding.weight.grad, grad_u)
    assert model.user_embedding.weight.grad[1].abs().sum() == 0  # user 1 is not in the batch


def test_l2_penalty_is_zero_by_default_and_checked():
    mf = MatrixFactorization(2, 2, dim=2)
    assert mf.l2_penalty(torch.tensor([0]), torch.tensor([1]), torch.tensor([0])) == 0
    with pytest.raises(ValueError, match="l2_reg"):
        MatrixFactorization(2, 2, l2_reg=-1.0)
    with pytest.raises(ValueError, match="l2_reg"):
        LightGCN(2, 2, l2_reg=float("nan"))
