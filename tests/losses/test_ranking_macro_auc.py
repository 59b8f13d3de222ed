"""Macro-AUC losses (Wu, Li & Yin, ICML 2023, arXiv:2305.05248): pairwise and reweighted BCE.

References: a naive float64 loop over labels and (positive, negative) pairs written from the
paper's formulas, `F.binary_cross_entropy_with_logits` with an explicit per-element weight for
the reweighted loss, and torchmetrics' `multilabel_auroc` on a toy whose optimum is known.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multilabel_auroc

import lightning_losses.functional as LF
from lightning_losses import get_loss
from lightning_losses.losses import PairwiseMacroAUCLoss, ReweightedUnivariateAUCLoss
from lightning_losses.losses.ranking import macro_auc
from tests.losses._helpers import assert_value_and_grad

PHI = {
    "squared_hinge": lambda t: max(t, 0.0) ** 2,
    "hinge": lambda t: max(t, 0.0),
    "logistic": lambda t: math.log1p(math.exp(t)),
}


def _data(n: int = 9, labels: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, labels, generator=g, dtype=torch.float64) * 1.5
    y = (torch.rand(n, labels, generator=g) < 0.3).to(torch.float64)
    y[:, 0] = 0.0  # no positive: skipped
    y[:, 1] = 1.0  # no negative: skipped
    y[0, 2], y[1, 2] = 1.0, 0.0  # labels 2.. have both
    y[2:, 2] = 0.0  # label 2: one positive only (extreme imbalance)
    return x, y


def naive_pairwise(x, y, surrogate, margin):
    """Total loss and per-sample half-shares ×N, by a Python loop over labels and pairs."""
    n, labels = x.shape
    shares = [0.0] * n
    per_label = []
    for k in range(labels):
        pos = [i for i in range(n) if y[i, k] == 1]
        neg = [j for j in range(n) if y[j, k] == 0]
        if not pos or not neg:
            continue
        total = 0.0
        for p in pos:
            for q in neg:
                v = PHI[surrogate](margin - (float(x[p, k]) - float(x[q, k])))
                v /= len(pos) * len(neg)
                total += v
                shares[p] += v / 2
                shares[q] += v / 2
        per_label.append(total)
    k_valid = len(per_label)
    loss = sum(per_label) / k_valid if k_valid else 0.0
    none = [s * n / k_valid if k_valid else 0.0 for s in shares]
    return loss, torch.tensor(none, dtype=torch.float64)


def torch_pairwise_reference(x, y, surrogate, margin):
    """A differentiable float64 pair loop (per label, explicit index lists) for gradients."""
    per_label = []
    for k in range(x.shape[1]):
        pos = (y[:, k] == 1).nonzero().flatten()
        neg = (y[:, k] == 0).nonzero().flatten()
        if len(pos) == 0 or len(neg) == 0:
            continue
        d = x[pos, k][:, None] - x[neg, k][None, :]
        t = margin - d
        phi = {"squared_hinge": F.relu(t) ** 2, "hinge": F.relu(t), "logistic": F.softplus(t)}
        per_label.append(phi[surrogate].mean())
    return torch.stack(per_label).mean() if per_label else x.sum() * 0


@pytest.mark.parametrize("surrogate", ["squared_hinge", "hinge", "logistic"])
@pytest.mark.parametrize("margin", [0.0, 1.0, 2.5])
def test_pairwise_matches_naive_pair_loop(surrogate, margin):
    x, y = _data()
    loss, none = naive_pairwise(x, y, surrogate, margin)
    kw = {"surrogate": surrogate, "margin": margin}
    torch.testing.assert_close(
        LF.pairwise_macro_auc_loss(x, y, **kw), torch.tensor(loss, dtype=torch.float64)
    )
    torch.testing.assert_close(LF.pairwise_macro_auc_loss(x, y, **kw, reduction="none"), none)
    assert_value_and_grad(
        lambda z: LF.pairwise_macro_auc_loss(z, y, **kw),
        lambda z: torch_pairwise_reference(z, y, surrogate, margin),
        x,
    )


def test_pairwise_module_and_registry_match_the_function():
    x, y = _data(seed=3)
    ref = LF.pairwise_macro_auc_loss(x, y, surrogate="logistic", margin=0.5)
    torch.testing.assert_close(PairwiseMacroAUCLoss("logistic", 0.5)(x, y), ref)
    torch.testing.assert_close(
        get_loss("pairwise_macro_auc", surrogate="logistic", margin=0.5)(x, y), ref
    )


def test_logistic_margin_zero_is_ranknet_on_one_label():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(7, generator=g, dtype=torch.float64)
    y = torch.tensor([1, 0, 0, 1, 0, 1, 0])
    pos, neg = s[y == 1], s[y == 0]
    ranknet = F.binary_cross_entropy_with_logits(
        pos[:, None] - neg[None, :], torch.ones(3, 4, dtype=torch.float64)
    )
    out = LF.pairwise_macro_auc_loss(s, y, surrogate="logistic", margin=0.0)
    torch.testing.assert_close(out, ranknet)


def test_skipped_labels_equal_the_loss_on_the_valid_labels_only():
    x, y = _data()
    full = LF.pairwise_macro_auc_loss(x, y)
    torch.testing.assert_close(full, LF.pairwise_macro_auc_loss(x[:, 2:], y[:, 2:]))
    full = LF.reweighted_univariate_auc_loss(x, y)
    torch.testing.assert_close(full, LF.reweighted_univariate_auc_loss(x[:, 2:], y[:, 2:]))


@pytest.mark.parametrize(
    "fn", [LF.pairwise_macro_auc_loss, LF.reweighted_univariate_auc_loss], ids=["pair", "rw"]
)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_all_degenerate_batch_gives_zero_with_zero_gradient(fn, reduction):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1, 0, 1]] * 5)  # every label all-positive or all-negative
    out = fn(x, y, reduction=reduction)
    assert (out == 0).all()
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert (grad == 0).all()
    # One sample: no label can have both classes.
    one = fn(x[:1], torch.tensor([[1, 0, 1]]))
    assert one == 0


def test_perfect_separation_with_margin_gives_zero_and_auroc_one():
    y = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
    x = 3.0 * y.double() - 1.0  # positives at 2, negatives at −1: separated by 3 > margin
    x.requires_grad_(True)
    for surrogate in ("squared_hinge", "hinge"):
        out = LF.pairwise_macro_auc_loss(x, y, surrogate=surrogate, margin=1.0)
        (grad,) = torch.autograd.grad(out, x)
        assert out == 0 and (grad == 0).all()
    assert multilabel_auroc(x.detach(), y, num_labels=3) == 1.0
    # Separated by less than the margin: a positive loss under both hinges.
    assert LF.pairwise_macro_auc_loss(x.detach(), y, margin=3.5) > 0


def test_descent_on_the_pairwise_loss_reaches_the_known_optimum():
    # Free scores for a fixed imbalanced toy: the optimum ranks every positive of every label
    # above its negatives by the margin (loss 0), where torchmetrics' macro AUROC is 1.
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(40, 4, generator=g) < torch.tensor([0.5, 0.2, 0.1, 0.05])).long()
    y[0] = 1
    scores = torch.randn(40, 4, generator=g).requires_grad_(True)
    before = multilabel_auroc(scores.detach(), y, num_labels=4)
    opt = torch.optim.SGD([scores], lr=20.0)
    for _ in range(300):
        opt.zero_grad()
        loss = LF.pairwise_macro_auc_loss(scores, y, margin=1.0)
        loss.backward()
        opt.step()
    assert before < 0.8
    assert LF.pairwise_macro_auc_loss(scores, y, margin=1.0) < 1e-6
    assert multilabel_auroc(scores.detach(), y, num_labels=4) == 1.0


def test_chunked_path_with_checkpointing_matches_the_direct_path(monkeypatch):
    x, y = _data(n=12, labels=7, seed=5)
    direct = LF.pairwise_macro_auc_loss(x, y, reduction="none")
    monkeypatch.setattr(macro_auc, "_PAIR_BLOCK_ELEMENTS", 12 * 12 * 2)  # blocks of 2 labels
    x1 = x.clone().requires_grad_(True)
    chunked = LF.pairwise_macro_auc_loss(x1, y, reduction="none")
    torch.testing.assert_close(chunked, direct)
    (g1,) = torch.autograd.grad(chunked.mean(), x1)
    x2 = x.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(torch_pairwise_reference(x2, y, "squared_hinge", 1.0), x2)
    torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradcheck(
        lambda z: LF.pairwise_macro_auc_loss(z, y[:4, :3]), x[:4, :3].clone().requires_grad_(True)
    )


def naive_reweighted(x, y):
    n, labels = x.shape
    per_label = []
    for k in range(labels):
        pos = [i for i in range(n) if y[i, k] == 1]
        neg = [j for j in range(n) if y[j, k] == 0]
        if not pos or not neg:
            continue
        # The paper's form: the pairwise average of a univariate loss.
        total = 0.0
        for p in pos:
            for q in neg:
                total += math.log1p(math.exp(-float(x[p, k]))) + math.log1p(
                    math.exp(float(x[q, k]))
                )
        per_label.append(total / (len(pos) * len(neg)))
    return sum(per_label) / len(per_label)


def test_reweighted_matches_the_paper_pairwise_form_and_weighted_bce():
    x, y = _data(seed=7)
    ours = LF.reweighted_univariate_auc_loss(x, y)
    torch.testing.assert_close(ours, torch.tensor(naive_reweighted(x, y), dtype=torch.float64))
    # Peer: torch's weighted BCE with w = 1/|P_k| on positives, 1/|N_k| on negatives, summed,
    # over the labels that have both classes.
    n_pos = y.sum(0)
    valid = (n_pos > 0) & (n_pos < y.shape[0])
    w = y / n_pos.clamp_min(1) + (1 - y) / (y.shape[0] - n_pos).clamp_min(1)

    def peer(z):
        bce = F.binary_cross_entropy_with_logits(
            z[:, valid], y[:, valid], weight=w[:, valid], reduction="sum"
        )
        return bce / valid.sum()

    assert_value_and_grad(lambda z: LF.reweighted_univariate_auc_loss(z, y), peer, x)
    none = LF.reweighted_univariate_auc_loss(x, y, reduction="none")
    rows = F.binary_cross_entropy_with_logits(
        x[:, valid], y[:, valid], weight=w[:, valid], reduction="none"
    ).sum(1)
    torch.testing.assert_close(none, rows * x.shape[0] / valid.sum())
    torch.testing.assert_close(ReweightedUnivariateAUCLoss()(x, y), ours)


def test_reweighted_gives_each_label_equal_weight_unlike_bce():
    # Zero scores: plain BCE's value is log 2 whatever the imbalance; here each valid label
    # contributes log 2 for its positives and log 2 for its negatives.
    y = torch.tensor([[1, 1], [0, 1], [0, 1], [0, 0]])
    out = LF.reweighted_univariate_auc_loss(torch.zeros(4, 2), y)
    torch.testing.assert_close(out, torch.tensor(2 * math.log(2)))


@pytest.mark.parametrize(
    "fn", [LF.pairwise_macro_auc_loss, LF.reweighted_univariate_auc_loss], ids=["pair", "rw"]
)
def test_bad_inputs_raise_naming_the_argument(fn):
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="target must be binary"):
        fn(x, torch.full((4, 3), 0.5))
    fn(x, torch.full((4, 3), 0.5), validate_args=False)  # the check is the host-sync one
    with pytest.raises(ValueError, match="target"):
        fn(x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="input"):
        fn(torch.randn(2, 3, 4), torch.zeros(2, 3, 4))
    with pytest.raises(TypeError, match="input"):
        fn(x.long(), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="reduction"):
        fn(x, torch.zeros(4, 3), reduction="avg")


def test_pairwise_bad_hyperparameters():
    with pytest.raises(ValueError, match="surrogate"):
        PairwiseMacroAUCLoss(surrogate="exponential")
    with pytest.raises(ValueError, match="margin"):
        LF.pairwise_macro_auc_loss(torch.randn(3, 2), torch.zeros(3, 2), margin=-0.1)
