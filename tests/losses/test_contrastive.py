"""The contrastive losses (`losses/contrastive/`), one section per module.

References, each independent of our code:

* pytorch-metric-learning (test-only dependency): `NTXentLoss(temperature=τ)` and
  `SupConLoss(temperature=τ)` on the views concatenated along the batch, value and gradient.
  PML's SupCon has no base-temperature scaling (ours is equal at `base_temperature=τ`) and its
  default τ is 0.1 (the official code's is 0.07).
* The official SupCon code (`HobbitLong/SupContrast`, `losses.py`) reproduced below as
  `official_supcon`, for the τ/τ_base scale and `contrast_mode="one"`.
* open_clip `SigLipLoss` (`open_clip/loss.py`), reproduced as `open_clip_siglip`:
  `logits = logit_scale * img @ txt.T + logit_bias`, labels `2 * eye - 1`,
  `-F.logsigmoid(labels * logits).sum() / N` with `logit_scale = exp(t')`.
* The official alignment/uniformity functions (`SsnL/align_uniform`), reproduced as `align_loss`
  and `uniform_loss`.
* Naive float64 loops written from the formulas (InfoNCE, SupCon L_in, references, DEXML's
  decoupled softmax), and the papers' limits (N = 1, |P| = 1, no positive).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

import lightning_losses.functional as LF
from lightning_losses import get_loss
from lightning_losses.losses import (
    AlignmentUniformityLoss,
    DecoupledSoftmaxLoss,
    DistributedSemantics,
    InfoNCELoss,
    InputKind,
    NTXentLoss,
    SigmoidContrastiveLoss,
    SupConLoss,
)

F64 = {"rtol": 1e-9, "atol": 1e-11}


def rand(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def grads(fn, *xs):
    """Value and gradients of `fn(*xs)` w.r.t. fresh leaf copies of `xs`."""
    leaves = [x.detach().clone().requires_grad_(True) for x in xs]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out, leaves)


def assert_same(ours, ref, *xs, **tol):
    v1, g1 = grads(ours, *xs)
    v2, g2 = grads(ref, *xs)
    torch.testing.assert_close(v1, v2, **(tol or F64))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, **(tol or F64))


# -- references --------------------------------------------------------------------------------


def official_supcon(features, labels=None, temperature=0.07, base_temperature=0.07, mode="all"):
    """HobbitLong/SupContrast `SupConLoss.forward` (features normalised first, as its training
    script does), transcribed."""
    features = F.normalize(features, dim=-1)
    batch_size = features.shape[0]
    if labels is None:
        mask = torch.eye(batch_size, dtype=features.dtype)
    else:
        labels = labels.contiguous().view(-1, 1)
        mask = torch.eq(labels, labels.T).to(features.dtype)
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    if mode == "one":
        anchor_feature, anchor_count = features[:, 0], 1
    else:
        anchor_feature, anchor_count = contrast_feature, contrast_count
    anchor_dot_contrast = torch.div(anchor_feature @ contrast_feature.T, temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(
        torch.ones_like(mask), 1, torch.arange(batch_size * anchor_count).view(-1, 1), 0
    )
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))  # official adds 1e-9
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.view(anchor_count, batch_size).mean()


def naive_supcon_rows(anchors, anchor_labels, contrast, contrast_labels, self_cols, tau, variant):
    """Loop over anchors, written from the SupCon formulas (L_out / L_in)."""
    a = F.normalize(anchors, dim=-1)
    c = F.normalize(contrast, dim=-1)
    rows = []
    for i in range(a.shape[0]):
        others = [k for k in range(c.shape[0]) if k != self_cols[i]]
        pos = [k for k in others if contrast_labels[k] == anchor_labels[i]]
        if not pos:
            rows.append(a[i].sum() * 0)
            continue
        s = torch.stack([a[i] @ c[k] / tau for k in range(c.shape[0])])
        log_den = torch.log(sum(torch.exp(s[k]) for k in others))
        if variant == "out":
            rows.append(-sum(s[p] - log_den for p in pos) / len(pos))
        else:
            rows.append(-torch.log(sum(torch.exp(s[p] - log_den) for p in pos) / len(pos)))
    return torch.stack(rows)


def open_clip_siglip(img, txt, log_scale, bias):
    """open_clip.loss.SigLipLoss._loss with logit_scale = exp(t'), features normalised."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = log_scale.exp() * img @ txt.T + bias
    labels = 2 * torch.eye(img.shape[0], dtype=img.dtype) - torch.ones(img.shape[0], img.shape[0])
    return -F.logsigmoid(labels * logits).sum() / img.shape[0]


def align_loss(x, y, alpha=2):
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniform_loss(x, t=2):
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


# -- declarations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [InfoNCELoss, NTXentLoss, SupConLoss, SigmoidContrastiveLoss, AlignmentUniformityLoss]
)
def test_batch_losses_declare_gather_semantics(cls):
    assert cls.input_kind == InputKind.EMBEDDINGS
    assert cls.distributed_semantics == DistributedSemantics.GATHER
    assert cls(gather_distributed=True).hparams["gather_distributed"] is True


def test_decoupled_softmax_is_local_and_rejects_gather():
    assert DecoupledSoftmaxLoss.distributed_semantics == DistributedSemantics.LOCAL
    with pytest.raises(TypeError, match="gather_distributed"):
        DecoupledSoftmaxLoss(gather_distributed=True)


def test_registry_names_and_aliases():
    assert isinstance(get_loss("siglip"), SigmoidContrastiveLoss)
    assert isinstance(get_loss("simclr"), NTXentLoss)
    assert isinstance(get_loss("supcon", temperature=0.1), SupConLoss)


# -- InfoNCE / NT-Xent (info_nce.py) -----------------------------------------------------------


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_nt_xent_matches_pml_value_and_gradient(tau):
    n = 6
    z1, z2 = rand(n, 5, seed=1), rand(n, 5, seed=2)
    labels = torch.arange(n).repeat(2)
    pml = pml_losses.NTXentLoss(temperature=tau)
    assert_same(
        lambda a, b: LF.nt_xent_loss(a, b, temperature=tau),
        lambda a, b: pml(torch.cat([a, b]), labels),
        z1,
        z2,
    )


def test_nt_xent_default_is_pml_at_our_temperature():
    # PML's default temperature is 0.07; the docstring's settings reproduce our default 0.1.
    z1, z2 = rand(6, 5, seed=21), rand(6, 5, seed=22)
    pml = pml_losses.NTXentLoss(temperature=0.1)
    labels = torch.arange(6).repeat(2)
    assert_same(
        lambda a, b: NTXentLoss()(a, b), lambda a, b: pml(torch.cat([a, b]), labels), z1, z2
    )
    default = pml_losses.NTXentLoss()(torch.cat([z1, z2]), labels)
    assert not torch.allclose(NTXentLoss()(z1, z2), default)


def test_nt_xent_per_anchor_layout_and_supcon_equivalence():
    z1, z2 = rand(5, 4, seed=3), rand(5, 4, seed=4)
    none = LF.nt_xent_loss(z1, z2, temperature=0.2, reduction="none")
    assert none.shape == (5, 2)
    views = torch.stack([z1, z2], 1)
    rows = naive_supcon_rows(
        views.reshape(10, 4), torch.arange(5).repeat_interleave(2),
        views.reshape(10, 4), torch.arange(5).repeat_interleave(2),
        list(range(10)), 0.2, "out",
    )  # fmt: skip
    torch.testing.assert_close(none.reshape(-1), rows, **F64)
    sup = LF.supcon_loss(views, temperature=0.2, base_temperature=0.2, reduction="none")
    torch.testing.assert_close(sup, none, **F64)


def test_nt_xent_ref_emb_are_extra_negatives():
    z1, z2, ref = rand(4, 3, seed=5), rand(4, 3, seed=6), rand(7, 3, seed=7)
    views = torch.stack([z1, z2], 1).reshape(8, 3)
    lab = torch.arange(4).repeat_interleave(2)
    contrast = torch.cat([views, ref])
    contrast_labels = torch.cat([lab, torch.full((7,), -1)])

    def ref_fn(a, b, r):
        v = torch.stack([a, b], 1).reshape(8, 3)
        c = torch.cat([v, r])
        return naive_supcon_rows(v, lab, c, contrast_labels, list(range(8)), 0.3, "out").mean()

    assert_same(
        lambda a, b, r: LF.nt_xent_loss(a, b, ref_emb=r, temperature=0.3), ref_fn, z1, z2, ref
    )
    assert contrast.shape[0] == 15


def test_info_nce_matches_naive_loop_with_queue():
    q, k, queue = rand(5, 4, seed=8), rand(5, 4, seed=9), rand(6, 4, seed=10)

    def naive(q, k, queue):
        qn, kn, rn = (F.normalize(t, dim=-1) for t in (q, k, queue))
        total = 0
        for i in range(5):
            logits = torch.cat([qn[i] @ kn.T, qn[i] @ rn.T]) / 0.1
            total = total - (logits[i] - torch.logsumexp(logits, 0))
        return total / 5

    assert_same(lambda a, b, r: LF.info_nce_loss(a, b, ref_emb=r), naive, q, k, queue)
    # Without a queue: cross-entropy over in-batch keys.
    qn, kn = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    torch.testing.assert_close(
        LF.info_nce_loss(q, k, temperature=0.5, reduction="none"),
        F.cross_entropy(qn @ kn.T / 0.5, torch.arange(5), reduction="none"),
        **F64,
    )


def test_info_nce_single_pair_limit_is_zero():
    q, k = rand(1, 4, seed=11), rand(1, 4, seed=12)
    assert LF.info_nce_loss(q, k).item() == 0.0


# -- SupCon (supcon.py) ------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 0.07])
def test_supcon_matches_pml_value_and_gradient(tau):
    feats = rand(8, 2, 6, seed=13)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    pml = pml_losses.SupConLoss(temperature=tau)

    def ref(f):
        # PML takes [N * V, D] rows: view-major concatenation, labels repeated per view.
        return pml(torch.cat(torch.unbind(f, dim=1)), labels.repeat(2))

    assert_same(
        lambda f: LF.supcon_loss(f, labels, temperature=tau, base_temperature=tau), ref, feats
    )


def test_supcon_defaults_are_pml_at_the_official_temperature():
    # PML's default temperature is 0.1; SupConLoss(temperature=0.07) there is our default.
    feats = rand(8, 2, 6, seed=23)
    labels = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    pml = pml_losses.SupConLoss(temperature=0.07)
    assert_same(
        lambda f: SupConLoss()(f, labels),
        lambda f: pml(torch.cat(torch.unbind(f, dim=1)), labels.repeat(2)),
        feats,
    )


@pytest.mark.parametrize("mode", ["all", "one"])
def test_supcon_matches_official_code_with_base_temperature(mode):
    feats = rand(6, 3, 5, seed=14)
    labels = torch.tensor([0, 1, 0, 1, 2, 2])
    assert_same(
        lambda f: SupConLoss(temperature=0.1, base_temperature=0.07, contrast_mode=mode)(f, labels),
        lambda f: official_supcon(f, labels, 0.1, 0.07, mode),
        feats,
    )
    assert SupConLoss(contrast_mode=mode, reduction="none")(feats, labels).shape == (
        (6, 3) if mode == "all" else (6,)
    )


def test_supcon_without_labels_is_simclr_of_official_code():
    feats = rand(5, 2, 4, seed=15)
    assert_same(LF.supcon_loss, official_supcon, feats)


def test_supcon_in_variant_matches_naive_loop():
    feats = rand(6, 2, 4, seed=16)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    flat = feats.reshape(12, 4)
    lab = labels.repeat_interleave(2)
    assert_same(
        lambda f: LF.supcon_loss(f, labels, variant="in", temperature=0.2, base_temperature=0.2),
        lambda f: naive_supcon_rows(
            f.reshape(12, 4), lab, f.reshape(12, 4), lab, list(range(12)), 0.2, "in"
        ).mean(),
        feats,
    )
    assert flat.shape == (12, 4)


def test_supcon_mask_equals_labels_and_may_be_asymmetric():
    feats = rand(5, 2, 4, seed=17)
    labels = torch.tensor([0, 1, 0, 1, 1])
    mask = labels[:, None] == labels[None, :]
    torch.testing.assert_close(
        LF.supcon_loss(feats, mask=mask), LF.supcon_loss(feats, labels), **F64
    )
    # Asymmetric: sample 0 treats sample 1 as positive, sample 1 has only its own other view.
    asym = torch.eye(5, dtype=torch.bool)
    asym[0, 1] = True
    none = LF.supcon_loss(
        feats, mask=asym.long(), reduction="none", temperature=0.3, base_temperature=0.3
    )
    flat = feats.reshape(10, 4)
    sample = torch.arange(5).repeat_interleave(2)
    ref0 = naive_supcon_rows(
        flat[:1], torch.tensor([0]), flat, torch.where(sample == 1, 0, sample), [0], 0.3, "out"
    )
    torch.testing.assert_close(none[0, 0], ref0[0], **F64)
    ref_simclr = LF.nt_xent_loss(feats[:, 0], feats[:, 1], temperature=0.3, reduction="none")
    torch.testing.assert_close(none[1:], ref_simclr[1:], **F64)


def test_supcon_memory_bank_references_are_contrast_not_anchors():
    feats, ref = rand(4, 2, 3, seed=18), rand(5, 3, seed=19)
    labels, ref_labels = torch.tensor([0, 1, 0, 2]), torch.tensor([1, 1, 0, 3, 2])
    lab = labels.repeat_interleave(2)

    def naive(f, r):
        flat = f.reshape(8, 3)
        c = torch.cat([flat, r])
        return naive_supcon_rows(
            flat, lab, c, torch.cat([lab, ref_labels]), list(range(8)), 0.1, "out"
        ).mean()

    assert_same(
        lambda f, r: LF.supcon_loss(
            f, labels, ref_emb=r, ref_labels=ref_labels, temperature=0.1, base_temperature=0.1
        ),
        naive,
        feats,
        ref,
    )
    with pytest.raises(ValueError, match="ref_labels"):
        LF.supcon_loss(feats, labels, ref_emb=ref)


def test_supcon_anchor_without_positive_is_zero_and_excluded_never_nan():
    # One view, labels [0, 1, 1, 2]: anchors 0 and 3 have no positive (official code: NaN).
    feats = rand(4, 5, seed=20).requires_grad_(True)  # [N, D]: one view
    labels = torch.tensor([0, 1, 1, 2])
    none = LF.supcon_loss(feats, labels, reduction="none")
    assert none.shape == (4,) and none[0] == 0 and none[3] == 0 and (none[1:3] > 0).all()
    mean = LF.supcon_loss(feats, labels)
    torch.testing.assert_close(mean, none[1:3].mean())
    (g,) = torch.autograd.grad(mean, feats)
    assert torch.isfinite(g).all()
    assert torch.isnan(official_supcon(feats.detach()[:, None], labels))  # documented difference
    # No anchor has a positive: loss 0, zero (finite) gradient. Also a single sample, one view.
    for f, y in ((feats, torch.tensor([0, 1, 2, 3])), (feats[:1], torch.tensor([0]))):
        out = LF.supcon_loss(f, y)
        (g,) = torch.autograd.grad(out, feats)
        assert out.item() == 0.0 and torch.isfinite(g).all() and (g == 0).all()


def test_supcon_input_errors_name_the_argument():
    feats = rand(4, 2, 3)
    with pytest.raises(ValueError, match="not both"):
        LF.supcon_loss(feats, torch.tensor([0, 1, 0, 1]), mask=torch.eye(4))
    with pytest.raises(ValueError, match="mask must have shape"):
        LF.supcon_loss(feats, mask=torch.eye(3))
    with pytest.raises(ValueError, match="mask must hold only 0/1"):
        LF.supcon_loss(feats, mask=torch.eye(4) * 2)
    with pytest.raises(ValueError, match="gather_distributed"):
        LF.supcon_loss(feats, mask=torch.eye(4), gather_distributed=True)
    with pytest.raises(TypeError, match="labels"):
        LF.supcon_loss(feats, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match="labels"):
        LF.supcon_loss(feats, torch.tensor([True, False, True, False]))
    with pytest.raises(ValueError, match="features"):
        LF.supcon_loss(rand(4, 2, 3, 1))
    with pytest.raises(ValueError, match="ref_emb"):
        LF.supcon_loss(
            feats, torch.tensor([0, 1, 0, 1]), ref_emb=rand(2, 5), ref_labels=torch.tensor([0, 1])
        )


# -- SigLIP (siglip.py) ------------------------------------------------------------------------


def test_siglip_matches_open_clip_formula_value_and_all_gradients():
    img, txt = rand(6, 5, seed=21), rand(6, 5, seed=22)
    loss = SigmoidContrastiveLoss(init_log_scale=math.log(5.0), init_bias=-2.0).double()
    out = loss(img.requires_grad_(True), txt.requires_grad_(True))
    g_ours = torch.autograd.grad(out, [img, txt, loss.log_scale, loss.bias])
    # The parameters were created in float32 (then .double()): start the reference from them.
    ls = loss.log_scale.detach().clone().requires_grad_(True)
    b = loss.bias.detach().clone().requires_grad_(True)
    assert ls.item() == pytest.approx(math.log(5.0), rel=1e-7) and b.item() == -2.0
    img2, txt2 = img.detach().requires_grad_(True), txt.detach().requires_grad_(True)
    ref = open_clip_siglip(img2, txt2, ls, b)
    g_ref = torch.autograd.grad(ref, [img2, txt2, ls, b])
    torch.testing.assert_close(out, ref, **F64)
    for a, r in zip(g_ours, g_ref):
        torch.testing.assert_close(a, r, **F64)


def test_siglip_defaults_and_single_pair_limit():
    loss = SigmoidContrastiveLoss()
    assert loss.log_scale.item() == pytest.approx(math.log(10)) and loss.bias.item() == -10.0
    assert {n for n, _ in loss.named_parameters()} == {"log_scale", "bias"}
    x, y = rand(1, 4, seed=23), rand(1, 4, seed=24)
    s = F.cosine_similarity(x, y).squeeze()
    torch.testing.assert_close(
        LF.sigmoid_contrastive_loss(x, y), F.softplus(-(10.0 * s - 10.0)), **F64
    )
    with pytest.raises(ValueError, match="log_scale"):
        LF.sigmoid_contrastive_loss(x, y, log_scale=torch.zeros(2))


def test_siglip_per_image_rows_sum_over_texts():
    img, txt = rand(4, 3, seed=25), rand(4, 3, seed=26)
    none = LF.sigmoid_contrastive_loss(img, txt, log_scale=0.0, bias=0.0, reduction="none")
    logits = F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    z = 2 * torch.eye(4, dtype=logits.dtype) - 1
    torch.testing.assert_close(none, F.softplus(-z * logits).sum(1), **F64)


# -- alignment + uniformity (align_uniform.py) -------------------------------------------------


@pytest.mark.parametrize(("alpha", "t", "lam"), [(2.0, 2.0, 1.0), (1.0, 3.0, 0.5)])
def test_alignment_uniformity_matches_official_functions(alpha, t, lam):
    z1, z2 = rand(7, 4, seed=27), rand(7, 4, seed=28)

    def official(a, b):
        x, y = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return align_loss(x, y, alpha) + lam * (uniform_loss(x, t) + uniform_loss(y, t)) / 2

    assert_same(
        lambda a, b: LF.alignment_uniformity_loss(a, b, alpha=alpha, t=t, lam=lam), official, z1, z2
    )
    none = LF.alignment_uniformity_loss(z1, z2, alpha=alpha, t=t, lam=lam, reduction="none")
    x, y = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    torch.testing.assert_close(
        none - none[0], (x - y).norm(dim=1).pow(alpha) - (x - y)[0].norm().pow(alpha), **F64
    )


def test_uniformity_stays_finite_where_official_underflows():
    x = rand(4, 3, seed=29) * 100
    assert torch.isinf(uniform_loss(x, 2.0))
    ours = LF.alignment_uniformity_loss(x, x.clone(), normalize=False)
    assert torch.isfinite(ours) and ours < -1e3
    # One sample: no pair, uniformity defined as 0 (the loss is the alignment term).
    a, b = rand(1, 3, seed=30), rand(1, 3, seed=31)
    torch.testing.assert_close(
        LF.alignment_uniformity_loss(a, b),
        (F.normalize(a, dim=-1) - F.normalize(b, dim=-1)).pow(2).sum(),
        **F64,
    )


# -- decoupled softmax (decoupled_softmax.py) --------------------------------------------------


def naive_decoupled(q, e, targets, tau):
    qn, en = F.normalize(q, dim=-1), F.normalize(e, dim=-1)
    total = 0
    for i in range(q.shape[0]):
        pos = [j for j in range(e.shape[0]) if targets[i, j]]
        neg = [j for j in range(e.shape[0]) if not targets[i, j]]
        s = qn[i] @ en.T / tau
        for p in pos:
            den = torch.exp(s[p]) + sum(torch.exp(s[n]) for n in neg)
            total = total - torch.log(torch.exp(s[p]) / den) / len(pos)
    return total / q.shape[0]


def test_decoupled_softmax_matches_naive_loop():
    q, e = rand(5, 4, seed=32), rand(7, 4, seed=33)
    targets = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0, 1],
            [0, 0, 0, 1, 0, 0, 0],
            [0] * 7,
            [1, 0, 1, 0, 1, 0, 1],
            [0, 1, 0, 0, 0, 0, 0],
        ]
    ).bool()
    assert_same(
        lambda a, b: LF.decoupled_softmax_loss(a, b, targets, temperature=0.3),
        lambda a, b: naive_decoupled(a, b, targets, 0.3),
        q,
        e,
    )
    none = LF.decoupled_softmax_loss(q, e, targets.float(), temperature=0.3, reduction="none")
    assert none[2] == 0  # no positive: 0, counted in the mean (the official convention)


def test_decoupled_softmax_single_positive_is_cross_entropy():
    q, e = rand(6, 4, seed=34), rand(5, 4, seed=35)
    y = torch.tensor([0, 3, 4, 1, 1, 2])
    sim = F.normalize(q, dim=-1) @ F.normalize(e, dim=-1).T / 0.05
    torch.testing.assert_close(
        DecoupledSoftmaxLoss()(q, e, F.one_hot(y, 5)), F.cross_entropy(sim, y), **F64
    )


def test_decoupled_softmax_all_positive_row_is_finite_and_errors():
    q, e = rand(2, 3, seed=36).requires_grad_(True), rand(3, 3, seed=37)
    targets = torch.tensor([[1, 1, 1], [1, 0, 0]])
    out = LF.decoupled_softmax_loss(q, e, targets, reduction="none")
    assert out[0] == 0 and out[1] > 0
    (g,) = torch.autograd.grad(out.sum(), q)
    assert torch.isfinite(g).all()
    with pytest.raises(ValueError, match="targets must hold only 0/1"):
        LF.decoupled_softmax_loss(q, e, targets * 2)
    with pytest.raises(ValueError, match="targets must have shape"):
        LF.decoupled_softmax_loss(q, e, targets[:, :2])
    with pytest.raises(ValueError, match="label_emb"):
        LF.decoupled_softmax_loss(q, rand(3, 4), targets)


# -- shapes and memory -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [LF.info_nce_loss, LF.nt_xent_loss, LF.sigmoid_contrastive_loss, LF.alignment_uniformity_loss],
)
def test_pair_losses_reject_mismatched_views(fn):
    with pytest.raises(ValueError, match="must have the same shape"):
        fn(rand(4, 3), rand(4, 2))
    with pytest.raises(TypeError, match="floating"):
        fn(rand(4, 3), torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        fn(rand(4), rand(4))


def saved_bytes(fn, *xs) -> int:
    """Bytes of the distinct storages autograd saves for backward during `fn(*xs)`."""
    seen: dict[int, int] = {}

    def pack(t):
        if t.device.type == "cpu" and t.numel():
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    leaves = [x.detach().clone().requires_grad_(True) for x in xs]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*leaves)
    return sum(seen.values()) - sum(x.untyped_storage().nbytes() for x in leaves)


def test_supcon_and_nt_xent_save_no_more_than_one_similarity_matrix():
    n, d = 128, 16
    z1, z2 = rand(n, d, dtype=torch.float32), rand(n, d, seed=1, dtype=torch.float32)
    sim = (2 * n) ** 2 * 4  # one float32 [2N, 2N]
    small = 64 * n * d * 4  # O(N * D) tensors (normalised rows, indices)
    assert saved_bytes(LF.nt_xent_loss, z1, z2) <= sim + small
    labels = torch.randint(0, 10, (n,))
    feats = torch.stack([z1, z2], 1)
    # Plus the boolean positive mask (1 byte per entry).
    assert saved_bytes(lambda f: LF.supcon_loss(f, labels), feats) <= sim + sim // 4 + small
