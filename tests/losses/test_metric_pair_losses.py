"""The pair and triplet metric-learning losses: circle (`losses/metric/circle.py`),
multi-similarity (`multi_similarity.py`), contrastive pair margin (`pair_margin.py`) and triplet
margin (`triplet.py`), one section each, then their shared behaviour.

References: pytorch-metric-learning (PML, test-only dependency) for value and gradient, with its
`DoNothingReducer` returning the raw per-pair / per-triplet terms so that the per-anchor values
can be compared exactly; and naive float64 loops written from the papers' formulas.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import reducers as pml_reducers

import lightning_losses.functional as LF
from lightning_losses.losses import (
    CircleLoss,
    ContrastiveLoss,
    MultiSimilarityLoss,
    TripletMarginLoss,
)

LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 5])  # 4 and 5: no positive


def emb(n: int = 12, d: int = 5, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


def per_anchor(losses: torch.Tensor, anchors: torch.Tensor, n: int, nonzero: bool) -> torch.Tensor:
    """Per-anchor mean of PML's raw terms (over the non-zero ones when `nonzero`)."""
    total = torch.zeros(n, dtype=losses.dtype).index_add(0, anchors, losses)
    kept = (losses > 0) if nonzero else torch.ones_like(losses, dtype=torch.bool)
    count = torch.zeros(n, dtype=losses.dtype).index_add(0, anchors, kept.to(losses.dtype))
    return total / count.clamp_min(1)


def value_and_grad(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    proj = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad((out * proj).sum(), x)
    return out.detach(), grad


def assert_same(ours, ref, x, **tol):
    a, ga = value_and_grad(ours, x)
    b, gb = value_and_grad(ref, x)
    tol = tol or {"rtol": 1e-10, "atol": 1e-12}
    torch.testing.assert_close(a, b, **tol)
    torch.testing.assert_close(ga, gb, **tol)


# ----------------------------------------------------------------------------- naive references


def cos_matrix(x: torch.Tensor) -> list[list[torch.Tensor]]:
    z = [x[i] / x[i].norm() for i in range(x.shape[0])]
    return [[torch.dot(a, b) for b in z] for a in z]


def naive_circle(x, labels, m, gamma):
    s = cos_matrix(x)
    out = []
    for i in range(x.shape[0]):
        lp, ln = [], []
        for j in range(x.shape[0]):
            if j == i:
                continue
            if labels[j] == labels[i]:
                a_p = max(0.0, 1 + m - s[i][j].item())  # detached
                lp.append(-gamma * a_p * (s[i][j] - (1 - m)))
            else:
                a_n = max(0.0, s[i][j].item() + m)
                ln.append(gamma * a_n * (s[i][j] - m))
        if not lp or not ln:
            out.append(x.sum() * 0)
            continue
        out.append(
            F.softplus(torch.logsumexp(torch.stack(lp), 0) + torch.logsumexp(torch.stack(ln), 0))
        )
    return torch.stack(out)


def naive_ms(x, labels, alpha, beta, base):
    s = cos_matrix(x)
    out = []
    for i in range(x.shape[0]):
        pos = sum(
            (
                torch.exp(-alpha * (s[i][j] - base))
                for j in range(x.shape[0])
                if j != i and labels[j] == labels[i]
            ),
            x.sum() * 0,
        )
        neg = sum(
            (
                torch.exp(beta * (s[i][j] - base))
                for j in range(x.shape[0])
                if labels[j] != labels[i]
            ),
            x.sum() * 0,
        )
        out.append(torch.log1p(pos) / alpha + torch.log1p(neg) / beta)
    return torch.stack(out)


def dist(a, b, normalize=True):
    if normalize:
        a, b = a / a.norm(), b / b.norm()
    return (a - b).pow(2).sum().sqrt()


def naive_triplet(x, labels, margin, nonzero=True, normalize=True):
    out = []
    n = x.shape[0]
    for i in range(n):
        terms = []
        for p, k in itertools.product(range(n), range(n)):
            if p != i and labels[p] == labels[i] and labels[k] != labels[i]:
                terms.append(
                    F.relu(dist(x[i], x[p], normalize) - dist(x[i], x[k], normalize) + margin)
                )
        kept = [t for t in terms if t > 0] if nonzero else terms
        out.append(torch.stack(terms).sum() / max(len(kept), 1) if terms else x.sum() * 0)
    return torch.stack(out)


def naive_contrastive(x, labels, pos_margin, neg_margin):
    out = []
    n = x.shape[0]
    for i in range(n):
        pos = [
            F.relu(dist(x[i], x[j]) - pos_margin)
            for j in range(n)
            if j != i and labels[j] == labels[i]
        ]
        neg = [F.relu(neg_margin - dist(x[i], x[j])) for j in range(n) if labels[j] != labels[i]]
        v = x.sum() * 0
        for terms in (pos, neg):
            if terms:
                v = v + torch.stack(terms).sum() / max(sum(bool(t > 0) for t in terms), 1)
        out.append(v)
    return torch.stack(out)


# ----------------------------------------------------------------------------- Circle


@pytest.mark.parametrize(("m", "gamma"), [(0.25, 256.0), (0.4, 80.0)])
def test_circle_matches_pml_per_anchor_value_and_gradient(m, gamma):
    pml = pml_losses.CircleLoss(m=m, gamma=gamma, reducer=pml_reducers.DoNothingReducer())
    assert_same(
        lambda x: LF.circle_loss(x, LABELS, margin=m, gamma=gamma, reduction="none"),
        lambda x: pml(x, LABELS)["loss"]["losses"].reshape(-1),
        emb(),
    )


def test_circle_pml_default_reducer_is_the_mean_over_non_zero_anchors():
    x = emb(seed=1)
    ours = LF.circle_loss(x, LABELS, margin=0.4, gamma=80.0, reduction="none")
    pml = pml_losses.CircleLoss(m=0.4, gamma=80)(x, LABELS)
    torch.testing.assert_close(ours[ours > 0].mean(), pml)
    assert (ours[LABELS >= 4] == 0).all()  # no positive: defined as 0


def test_circle_equals_pml_with_a_mean_reducer_at_our_defaults():
    # The docstring's claim: PML's CircleLoss(m=0.25, gamma=256, reducer=MeanReducer()) is ours,
    # anchors without a positive (labels 4 and 5) included as zeros.
    pml = pml_losses.CircleLoss(m=0.25, gamma=256, reducer=pml_reducers.MeanReducer())
    assert_same(lambda x: CircleLoss().double()(x, LABELS), lambda x: pml(x, LABELS), emb(seed=12))
    x = emb(seed=12)
    assert not torch.allclose(
        CircleLoss()(x, LABELS), pml_losses.CircleLoss(m=0.25, gamma=256)(x, LABELS)
    )


def test_circle_matches_naive_reference_with_detached_weights():
    # The naive reference detaches alpha too: the gradient matches, the value/derivative
    # relation does not (which is why the contract gradcheck is off for circle).
    assert_same(
        lambda x: LF.circle_loss(x, LABELS, margin=0.25, gamma=32.0, reduction="none"),
        lambda x: naive_circle(x, LABELS, 0.25, 32.0),
        emb(seed=2),
    )


def test_circle_default_is_the_papers_face_setting():
    loss = CircleLoss()
    assert (loss.margin, loss.gamma) == (0.25, 256.0)


# ----------------------------------------------------------------------------- multi-similarity


@pytest.mark.parametrize(("alpha", "beta", "base"), [(2.0, 50.0, 0.5), (1.0, 10.0, 0.2)])
def test_multi_similarity_matches_pml_default_reducer(alpha, beta, base):
    pml = pml_losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
    assert_same(
        lambda x: LF.multi_similarity_loss(x, LABELS, alpha=alpha, beta=beta, base=base),
        lambda x: pml(x, LABELS),
        emb(),
    )


def test_multi_similarity_matches_naive_reference():
    assert_same(
        lambda x: LF.multi_similarity_loss(x, LABELS, reduction="none"),
        lambda x: naive_ms(x, LABELS, 2.0, 50.0, 0.5),
        emb(seed=3),
    )


# ----------------------------------------------------------------------------- contrastive


@pytest.mark.parametrize(("pos_margin", "neg_margin"), [(0.0, 1.0), (0.3, 1.2)])
def test_contrastive_matches_pml_per_anchor(pos_margin, neg_margin):
    pml = pml_losses.ContrastiveLoss(
        pos_margin=pos_margin, neg_margin=neg_margin, reducer=pml_reducers.DoNothingReducer()
    )

    def ref(x):
        out = pml(x, LABELS)
        p, ng = out["pos_loss"], out["neg_loss"]
        return per_anchor(p["losses"], p["indices"][0], 12, True) + per_anchor(
            ng["losses"], ng["indices"][0], 12, True
        )

    ours = lambda x: LF.contrastive_loss(  # noqa: E731
        x, LABELS, pos_margin=pos_margin, neg_margin=neg_margin, reduction="none"
    )
    assert_same(ours, ref, emb())
    assert_same(ours, lambda x: naive_contrastive(x, LABELS, pos_margin, neg_margin), emb(seed=4))


def _nonzero_row_mean(x: torch.Tensor, num_per_row: torch.Tensor) -> torch.Tensor:
    # A PerAnchorReducer aggregation: the mean of each anchor's non-zero pair terms.
    return x.sum(1) / (x > 0).sum(1).clamp_min(1)


@pytest.mark.parametrize(("pos_margin", "neg_margin"), [(0.0, 1.0), (0.3, 1.2)])
def test_contrastive_equals_pml_with_the_per_anchor_reducer_of_the_docstring(
    pos_margin, neg_margin
):
    reducer = pml_reducers.PerAnchorReducer(
        pml_reducers.MeanReducer(), aggregation_func=_nonzero_row_mean
    )
    pml = pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin, reducer=reducer)
    assert_same(
        lambda x: ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)(x, LABELS),
        lambda x: pml(x, LABELS),
        emb(seed=13),
    )


def test_contrastive_mean_differs_from_pml_default_reducer():
    # The docstring's numbers: PML's default AvgNonZeroReducer averages the non-zero terms over
    # the whole batch, ours per anchor; value and gradient differ.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 32, generator=g, dtype=torch.float64)
    y = torch.randint(0, 20, (256,), generator=g)
    ours, g_ours = value_and_grad(lambda e: LF.contrastive_loss(e, y), x)
    pml, g_pml = value_and_grad(lambda e: pml_losses.ContrastiveLoss()(e, y), x)
    assert (round(ours.item(), 3), round(pml.item(), 3)) == (1.417, 1.453)
    assert not torch.allclose(g_ours, g_pml, rtol=1e-3, atol=0)
    # PML's value is the batch-wide mean of the non-zero positive terms plus that of the negative
    # terms, both recomputed here from the pair distances.
    d = torch.cdist(F.normalize(x), F.normalize(x))
    same = y[:, None] == y[None, :]
    pos_terms = d[same & ~torch.eye(256, dtype=torch.bool)]
    neg_terms = F.relu(1.0 - d[~same])
    expected = pos_terms[pos_terms > 0].mean() + neg_terms[neg_terms > 0].mean()
    torch.testing.assert_close(pml, expected)


def test_contrastive_equals_pml_default_when_every_term_is_active():
    # Balanced classes and margins that keep every pair term non-zero: PML's batch-wide
    # average-non-zero reducer and our per-anchor mean coincide.
    labels = torch.arange(12) % 4
    x = emb(seed=5)
    ours = LF.contrastive_loss(x, labels, pos_margin=0.0, neg_margin=4.0)
    ref = pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=4.0)(x, labels)
    torch.testing.assert_close(ours, ref)


# ----------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("margin", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("nonzero", [True, False])
def test_triplet_matches_pml_per_anchor(margin, nonzero):
    pml = pml_losses.TripletMarginLoss(margin=margin, reducer=pml_reducers.DoNothingReducer())

    def ref(x):
        out = pml(x, LABELS)["loss"]
        return per_anchor(out["losses"], out["indices"][0], 12, nonzero)

    assert_same(
        lambda x: LF.triplet_margin_loss(
            x, LABELS, margin=margin, average_nonzero=nonzero, reduction="none"
        ),
        ref,
        emb(),
    )


def test_triplet_pml_mean_reducer_is_the_count_weighted_mean_of_ours():
    # The docstring's recipe: no PML reducer averages triplets per anchor, but PML's MeanReducer
    # value is ours with average_nonzero=False, weighted by each anchor's triplet count.
    x = emb(seed=14)
    rows = LF.triplet_margin_loss(x, LABELS, margin=0.3, average_nonzero=False, reduction="none")
    same = LABELS[:, None] == LABELS[None, :]
    count = ((same.sum(1) - 1) * (~same).sum(1)).to(rows.dtype)  # |P_i| * |N_i|
    pml = pml_losses.TripletMarginLoss(margin=0.3, reducer=pml_reducers.MeanReducer())(x, LABELS)
    torch.testing.assert_close((rows * count).sum() / count.sum(), pml)
    # Unbalanced classes: neither our "mean" nor PML's default is the other's.
    assert not torch.allclose(rows.mean(), pml)
    ours = LF.triplet_margin_loss(x, LABELS, margin=0.3)
    assert not torch.allclose(ours, pml_losses.TripletMarginLoss(margin=0.3)(x, LABELS))


def test_triplet_equals_pml_reducers_on_balanced_batches():
    labels = torch.arange(12) % 4  # every anchor: 2 positives x 9 negatives
    x = emb(seed=6)
    mean_all = pml_losses.TripletMarginLoss(margin=0.3, reducer=pml_reducers.MeanReducer())
    torch.testing.assert_close(
        LF.triplet_margin_loss(x, labels, margin=0.3, average_nonzero=False), mean_all(x, labels)
    )
    # A margin above the largest distance gap (2) keeps every triplet active.
    torch.testing.assert_close(
        LF.triplet_margin_loss(x, labels, margin=2.5),
        pml_losses.TripletMarginLoss(margin=2.5)(x, labels),
    )


@pytest.mark.parametrize("normalize", [True, False])
def test_triplet_matches_naive_reference_normalized_and_not(normalize):
    def ours(x):
        return LF.triplet_margin_loss(
            x, LABELS, margin=0.5, normalize_embeddings=normalize, reduction="none"
        )

    assert_same(ours, lambda x: naive_triplet(x, LABELS, 0.5, normalize=normalize), emb(seed=7))


def test_triplet_one_triplet_per_anchor_is_torch_triplet_margin_loss():
    # Labels [0, 0, 1]: anchor 0 has exactly (p=1, n=2), anchor 1 (p=0, n=2); 2 has none.
    x = emb(n=3, d=4, seed=8)
    labels = torch.tensor([0, 0, 1])

    def ours(e):
        out = LF.triplet_margin_loss(
            e, labels, normalize_embeddings=False, average_nonzero=False, reduction="none"
        )
        return out[:2]

    # torch adds eps=1e-6 inside the difference; eps=0 gives the plain Euclidean distance.
    torch_loss = torch.nn.TripletMarginLoss(margin=1.0, eps=0.0, reduction="none")
    ref = lambda e: torch_loss(e[[0, 1]], e[[1, 0]], e[[2, 2]])  # noqa: E731
    assert_same(ours, ref, x)


def test_triplet_default_margin_and_mining_are_documented():
    loss = TripletMarginLoss()
    assert loss.margin == 1.0 and loss.average_nonzero and loss.normalize_embeddings


# ----------------------------------------------------------------------------- shared behaviour

PAIR_FNS = {
    "circle": LF.circle_loss,
    "multi_similarity": LF.multi_similarity_loss,
    "contrastive": LF.contrastive_loss,
    "triplet_margin": LF.triplet_margin_loss,
}


@pytest.mark.parametrize("name", list(PAIR_FNS))
def test_no_positive_in_batch_is_defined_and_finite(name):
    fn = PAIR_FNS[name]
    x = emb(n=5, seed=9).requires_grad_(True)
    labels = torch.arange(5)  # every label unique: no positive pair anywhere
    none = fn(x, labels, reduction="none")
    assert torch.isfinite(none).all()
    if name == "contrastive":  # only negative terms remain: relu(1 - d)
        d = torch.cdist(F.normalize(x), F.normalize(x))
        off = ~torch.eye(5, dtype=torch.bool)
        expected = torch.stack(
            [
                F.relu(1 - d[i][off[i]]).sum() / max(int((F.relu(1 - d[i][off[i]]) > 0).sum()), 1)
                for i in range(5)
            ]
        )
        torch.testing.assert_close(none, expected)
    elif name == "multi_similarity":  # positive term log(1 + 0) = 0; negative term remains
        torch.testing.assert_close(none, naive_ms(x, labels, 2.0, 50.0, 0.5))
    else:  # no positive pair: no circle pair term / no triplet => exactly 0
        assert (none == 0).all()
    mean = fn(x, labels)
    (g,) = torch.autograd.grad(mean, x)
    assert torch.isfinite(mean) and torch.isfinite(g).all()
    # A single sample: no pairs at all.
    one = fn(x[:1], labels[:1], reduction="none")
    assert one.shape == (1,) and torch.isfinite(one).all()


@pytest.mark.parametrize("name", list(PAIR_FNS))
def test_ref_emb_scores_every_reference(name):
    fn = PAIR_FNS[name]
    x, ref = emb(n=6, seed=10), emb(n=7, seed=11)
    labels, ref_labels = torch.tensor([0, 0, 1, 1, 2, 3]), torch.tensor([0, 1, 2, 3, 3, 4, 0])
    ours = fn(x, labels, ref, ref_labels, reduction="none")
    # Equivalent single batch: anchors + references, rows of the anchors, with the anchors'
    # own labels made unique so they neither pair with each other nor with the references
    # except through the reference set -> emulate by looping per anchor.
    rows = []
    for i in range(6):
        both = torch.cat([x[i : i + 1], ref])
        lab = torch.cat([labels[i : i + 1], ref_labels])
        rows.append(fn(both, lab, reduction="none")[0])
    # The reference rows among themselves do not affect row 0, so row 0 of each equals ours[i].
    torch.testing.assert_close(ours, torch.stack(rows))


def test_ref_emb_and_ref_labels_must_come_together():
    x = emb(n=4)
    with pytest.raises(ValueError, match="ref_labels"):
        LF.circle_loss(x, torch.arange(4), ref_emb=x)
    with pytest.raises(ValueError, match="ref_labels"):
        LF.triplet_margin_loss(x, torch.arange(4), ref_labels=torch.arange(4))
    with pytest.raises(ValueError, match="ref_emb"):
        LF.multi_similarity_loss(x, torch.arange(4), emb(n=4, d=3), torch.arange(4))


@pytest.mark.parametrize(
    "cls", [CircleLoss, MultiSimilarityLoss, ContrastiveLoss, TripletMarginLoss]
)
def test_pair_losses_declare_gather_semantics(cls):
    from lightning_losses.losses import DistributedSemantics

    assert cls.distributed_semantics == DistributedSemantics.GATHER
    assert cls(gather_distributed=True).gather_distributed is True
    # Not distributed: gathering is the identity.
    x, y = emb(n=6, dtype=torch.float32), torch.tensor([0, 0, 1, 1, 2, 2])
    torch.testing.assert_close(cls(gather_distributed=True)(x, y), cls()(x, y))


def test_triplet_large_values_stay_finite():
    x = (torch.sign(emb(n=8, d=6, dtype=torch.float32)) * 1e4).requires_grad_(True)
    labels = torch.arange(8) % 3
    out = LF.triplet_margin_loss(x, labels, normalize_embeddings=False)
    (g,) = torch.autograd.grad(out, x)
    assert torch.isfinite(out) and torch.isfinite(g).all()
    assert math.isfinite(out.item())
