"""Segmentation losses: parity with `monai.losses` and the behaviours beyond it.

Parity: `dice`, `generalized_dice`, `tversky`, `dice_ce`, `dice_focal` against MONAI's
`DiceLoss`, `GeneralizedDiceLoss`, `TverskyLoss`, `DiceCELoss`, `DiceFocalLoss`, value and
gradient, 2-D and 3-D, over the options both have (float64, except the focal term which MONAI
computes in float32). Beyond MONAI: `ignore_index` (checked against a naive per-pixel loop),
empty ground truth, per-sample / per-class `reduction="none"`, per-batch Dice, named errors,
and the memory saved by not building a one-hot target.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lightning_losses import get_loss
from lightning_losses.functional import (
    dice_ce_loss,
    dice_focal_loss,
    dice_loss,
    generalized_dice_loss,
    tversky_loss,
)
from lightning_losses.losses import DiceCELoss, DiceFocalLoss, DiceLoss, TverskyLoss

monai_losses = pytest.importorskip("monai.losses")

SHAPES = {"2d": (2, 3, 4, 5), "3d": (2, 3, 3, 4, 2)}


def make(shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    y = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return x, y


def one_hot(y, c, dtype=torch.float64):
    return F.one_hot(y, c).movedim(-1, 1).to(dtype)


def value_and_grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), grad


def assert_parity(ours, ref, x, atol=1e-10, rtol=1e-8):
    v1, g1 = value_and_grad(ours, x)
    v2, g2 = value_and_grad(ref, x)
    torch.testing.assert_close(v1, v2.to(v1.dtype).reshape(v1.shape), atol=atol, rtol=rtol)
    torch.testing.assert_close(g1, g2.to(g1.dtype), atol=atol, rtol=rtol)
    assert g1.abs().sum() > 0


# -- parity: Dice ----------------------------------------------------------------------------------

DICE_COMBOS = list(itertools.product([True, False], [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("target_form", ["index", "onehot"])
@pytest.mark.parametrize(("include_background", "squared_pred", "jaccard", "batch"), DICE_COMBOS)
def test_dice_matches_monai(dims, target_form, include_background, squared_pred, jaccard, batch):
    x, y = make(SHAPES[dims])
    c = x.shape[1]
    kw = dict(
        include_background=include_background,
        squared_pred=squared_pred,
        jaccard=jaccard,
        batch=batch,
    )
    ref = monai_losses.DiceLoss(softmax=True, **kw)
    target = y if target_form == "index" else one_hot(y, c)
    assert_parity(
        lambda z: dice_loss(z, target, softmax=True, **kw), lambda z: ref(z, one_hot(y, c)), x
    )


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("activation", ["sigmoid", "none", "default"])
def test_dice_activations_match_monai(dims, activation):
    x, y = make(SHAPES[dims], seed=1)
    c = x.shape[1]
    if activation == "sigmoid":
        ours = lambda z: dice_loss(z, y, sigmoid=True)  # noqa: E731
        ref = lambda z: monai_losses.DiceLoss(sigmoid=True)(z, one_hot(y, c))  # noqa: E731
    elif activation == "none":  # probabilities in, as MONAI's default
        x = x.softmax(1)
        ours = lambda z: dice_loss(z, y, softmax=False)  # noqa: E731
        ref = lambda z: monai_losses.DiceLoss()(z, one_hot(y, c))  # noqa: E731
    else:  # our default: softmax for C > 1 = MONAI's softmax=True
        ours = lambda z: dice_loss(z, y)  # noqa: E731
        ref = lambda z: monai_losses.DiceLoss(softmax=True)(z, one_hot(y, c))  # noqa: E731
    assert_parity(ours, ref, x)


def test_dice_single_channel_default_is_sigmoid_like_monai():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 1, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (3, 5, 4), generator=g)
    ref = monai_losses.DiceLoss(sigmoid=True)
    assert_parity(lambda z: dice_loss(z, y), lambda z: ref(z, y[:, None].double()), x)
    # The same with a float binary mask [N, 1, *].
    assert_parity(
        lambda z: dice_loss(z, y[:, None].double()), lambda z: ref(z, y[:, None].double()), x
    )


@pytest.mark.parametrize("dims", SHAPES)
def test_dice_weight_smoothing_and_monai_index_target(dims):
    x, y = make(SHAPES[dims], seed=3)
    w = torch.tensor([0.5, 2.0], dtype=torch.float64)
    kw = dict(include_background=False, weight=w, smooth_nr=0.0, smooth_dr=1e-3)
    ref = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, **kw)
    # MONAI's [N, 1, *] index target (integer, or float with to_onehot_y=True) also works here.
    assert_parity(lambda z: dice_loss(z, y[:, None], **kw), lambda z: ref(z, y[:, None]), x)
    assert_parity(
        lambda z: dice_loss(z, y[:, None].double(), to_onehot_y=True, **kw),
        lambda z: ref(z, y[:, None]),
        x,
    )


@pytest.mark.parametrize("dims", SHAPES)
def test_dice_reductions_map_to_monai(dims):
    x, y = make(SHAPES[dims], seed=4)
    oh = one_hot(y, x.shape[1])
    none = dice_loss(x, y, reduction="none", per_class=True)
    ref_none = monai_losses.DiceLoss(softmax=True, reduction="none")(x, oh)
    torch.testing.assert_close(none, ref_none.reshape(none.shape))
    ref_sum = monai_losses.DiceLoss(softmax=True, reduction="sum")(x, oh)
    torch.testing.assert_close(dice_loss(x, y, reduction="sum", per_class=True), ref_sum)
    # Default "none" is per sample: the class mean of MONAI's per-class values.
    torch.testing.assert_close(dice_loss(x, y, reduction="none"), ref_none.flatten(1).mean(1))


@pytest.mark.parametrize("dims", SHAPES)
def test_dice_ignore_index_matches_monai(dims):
    x, y = make(SHAPES[dims], seed=5)
    y = y.clone()
    y.view(-1)[::3] = 255  # every image keeps counted pixels
    ref = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, ignore_index=255)
    assert_parity(lambda z: dice_loss(z, y, ignore_index=255), lambda z: ref(z, y[:, None]), x)


# -- parity: generalized Dice, Tversky -------------------------------------------------------------


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("w_type", ["square", "simple", "uniform"])
@pytest.mark.parametrize(
    ("include_background", "batch"), list(itertools.product([True, False], [False, True]))
)
def test_generalized_dice_matches_monai(dims, w_type, include_background, batch):
    x, y = make(SHAPES[dims], seed=6)
    y = y.clone()
    y[0][y[0] == 2] = 1  # class 2 absent from image 0: the infinite-weight rule
    kw = dict(w_type=w_type, include_background=include_background, batch=batch)
    ref = monai_losses.GeneralizedDiceLoss(softmax=True, **kw)
    oh = one_hot(y, x.shape[1])
    # MONAI computes the class weights in float32.
    assert_parity(
        lambda z: generalized_dice_loss(z, y, **kw), lambda z: ref(z, oh), x, atol=1e-7, rtol=1e-6
    )


def test_generalized_dice_reduction_none_is_per_sample():
    x, y = make(SHAPES["2d"], seed=7)
    ref = monai_losses.GeneralizedDiceLoss(softmax=True, reduction="none")(x, one_hot(y, 3))
    torch.testing.assert_close(
        generalized_dice_loss(x, y, reduction="none"), ref.flatten(), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.7), (0.9, 0.1)])
@pytest.mark.parametrize(
    ("include_background", "batch"), list(itertools.product([True, False], [False, True]))
)
def test_tversky_matches_monai(dims, alpha, beta, include_background, batch):
    x, y = make(SHAPES[dims], seed=8)
    kw = dict(alpha=alpha, beta=beta, include_background=include_background, batch=batch)
    ref = monai_losses.TverskyLoss(softmax=True, **kw)
    oh = one_hot(y, x.shape[1])
    assert_parity(lambda z: tversky_loss(z, y, **kw), lambda z: ref(z, oh), x)


def test_tversky_none_per_class_matches_monai_and_half_half_is_dice():
    x, y = make(SHAPES["3d"], seed=9)
    ref = monai_losses.TverskyLoss(softmax=True, reduction="none", ignore_index=1, to_onehot_y=True)
    y = y.clone()
    ours = tversky_loss(x, y, reduction="none", per_class=True, ignore_index=1)
    torch.testing.assert_close(ours, ref(x, y[:, None]).reshape(ours.shape))
    # alpha = beta = 1/2 is Dice with halved smoothing terms.
    torch.testing.assert_close(
        tversky_loss(x, y), dice_loss(x, y, smooth_nr=2e-5, smooth_dr=2e-5), rtol=1e-12, atol=1e-12
    )


# -- parity: Dice + CE, Dice + focal ---------------------------------------------------------------

CE_COMBOS = list(itertools.product([True, False], [False, True], [0.0, 0.1], [False, True]))


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize(("include_background", "weighted", "label_smoothing", "batch"), CE_COMBOS)
def test_dice_ce_matches_monai(dims, include_background, weighted, label_smoothing, batch):
    x, y = make(SHAPES[dims], seed=10)
    w = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64) if weighted else None
    kw = dict(
        include_background=include_background,
        weight=w,
        label_smoothing=label_smoothing,
        batch=batch,
        lambda_dice=0.7,
        lambda_ce=1.3,
    )
    ref = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, **kw)
    assert_parity(lambda z: dice_ce_loss(z, y, **kw), lambda z: ref(z, y[:, None]), x)


@pytest.mark.parametrize("dims", SHAPES)
def test_dice_ce_onehot_and_binary_match_monai(dims):
    x, y = make(SHAPES[dims], seed=11)
    oh = one_hot(y, 3)
    ref = monai_losses.DiceCELoss(softmax=True, jaccard=True)
    assert_parity(lambda z: dice_ce_loss(z, oh, jaccard=True), lambda z: ref(z, oh), x)
    xb, yb = x[:, :1], (y > 0).long()
    ref_b = monai_losses.DiceCELoss(sigmoid=True)
    assert_parity(lambda z: dice_ce_loss(z, yb), lambda z: ref_b(z, yb[:, None].double()), xb)


FOCAL_COMBOS = list(itertools.product([True, False], [False, True], [None, 0.25], [0.0, 2.0]))


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize(("include_background", "weighted", "alpha", "gamma"), FOCAL_COMBOS)
def test_dice_focal_matches_monai(dims, include_background, weighted, alpha, gamma):
    # MONAI computes the focal term in float32: compare in float32.
    x, y = make(SHAPES[dims], seed=12, dtype=torch.float32)
    c = 3 if include_background else 2
    w = torch.linspace(0.5, 2.0, c) if weighted else None
    kw = dict(
        include_background=include_background,
        weight=w,
        alpha=alpha,
        gamma=gamma,
        lambda_dice=0.5,
        lambda_focal=2.0,
    )
    ref = monai_losses.DiceFocalLoss(softmax=True, to_onehot_y=True, **kw)
    assert_parity(
        lambda z: dice_focal_loss(z, y, **kw), lambda z: ref(z, y[:, None]), x, atol=1e-6, rtol=1e-5
    )


def test_dice_focal_onehot_target_matches_index_target():
    x, y = make(SHAPES["3d"], seed=13)
    kw = dict(include_background=False, alpha=0.25)
    v1, g1 = value_and_grad(lambda z: dice_focal_loss(z, y, reduction="none", **kw), x)
    v2, g2 = value_and_grad(lambda z: dice_focal_loss(z, one_hot(y, 3), reduction="none", **kw), x)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)


# -- beyond MONAI: ignore_index --------------------------------------------------------------------


def naive_dice(probs, labels, valid, *, smooth=1e-5):
    """Per-sample Dice over counted pixels only, one class at a time (float64 loops)."""
    n, c = probs.shape[:2]
    out = []
    for i in range(n):
        keep = valid[i].reshape(-1)
        if not keep.any():
            out.append(probs.new_zeros(()))
            continue
        per_class = []
        for k in range(c):
            p = probs[i, k].reshape(-1)[keep]
            g = (labels[i].reshape(-1)[keep] == k).to(probs.dtype)
            per_class.append(1 - (2 * (p * g).sum() + smooth) / (p.sum() + g.sum() + smooth))
        out.append(torch.stack(per_class).mean())
    return torch.stack(out)


def with_ignored(y, fraction_every=4, value=255):
    y = y.clone()
    y.view(-1)[::fraction_every] = value
    y[-1] = value  # the last image is entirely unlabelled
    return y


@pytest.mark.parametrize("dims", SHAPES)
def test_ignored_pixels_count_nowhere_in_dice(dims):
    x, y = make(SHAPES[dims], seed=14)
    y = with_ignored(y)
    valid = y != 255
    x = x.clone()
    x[:, 0][~valid] = float("nan")  # an ignored pixel's logits never reach value or gradient
    x.requires_grad_(True)
    none = dice_loss(x, y, ignore_index=255, reduction="none")
    ref = naive_dice(torch.where(valid[:, None], x, 0).softmax(1), y, valid)
    torch.testing.assert_close(none, ref)
    assert none[-1] == 0
    mean = dice_loss(x, y, ignore_index=255)
    torch.testing.assert_close(mean, ref[:-1].mean())  # the unlabelled image is not in the mean
    (grad,) = torch.autograd.grad(mean, x)
    assert torch.isfinite(grad).all()
    assert (grad.movedim(1, -1)[~valid] == 0).all()
    assert (grad[-1] == 0).all()
    assert grad.movedim(1, -1)[valid].abs().sum() > 0


@pytest.mark.parametrize("name", ["dice", "generalized_dice", "tversky", "dice_ce", "dice_focal"])
def test_ignore_index_255_through_the_registry(name):
    x, y = make(SHAPES["2d"], seed=15)
    y = with_ignored(y)
    loss = get_loss(name, softmax=True, ignore_index=255)
    xg = x.clone().requires_grad_(True)
    out = loss(xg, y)
    assert torch.isfinite(out)
    out.backward()
    assert (xg.grad.movedim(1, -1)[y == 255] == 0).all()
    # The unlabelled image: 0 and excluded from what counts.
    loss.reduction = "none"
    assert loss(x, y)[-1] == 0
    mask = loss.element_mask(x, y)
    assert mask.tolist() == [True, False]
    # Changing an ignored pixel's logits changes nothing.
    x2 = x.clone()
    x2.movedim(1, -1)[y == 255] = 50.0
    torch.testing.assert_close(loss(x2, y), loss(x, y))


def test_dice_ce_ignore_index_terms_are_dice_and_torch_cross_entropy():
    x, y = make(SHAPES["3d"], seed=16)
    y = with_ignored(y)
    y[-1, 0, 0, 0] = 1  # the last image keeps one labelled voxel
    w = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    ours = dice_ce_loss(x, y, ignore_index=255, weight=w, lambda_dice=0.0)
    torch.testing.assert_close(ours, F.cross_entropy(x, y, weight=w, ignore_index=255))
    ours = dice_ce_loss(x, y, ignore_index=255, lambda_ce=0.0)
    torch.testing.assert_close(ours, dice_loss(x, y, ignore_index=255))


def test_dice_focal_ignore_index_against_masked_reference():
    x, y = make(SHAPES["2d"], seed=17)
    y = with_ignored(y)
    y[-1, 0, 0] = 2
    valid = y != 255
    focal = dice_focal_loss(x, y, ignore_index=255, lambda_dice=0.0, gamma=2.0)
    t = one_hot(torch.where(valid, y, 0), 3)
    p = torch.sigmoid(x)
    pt = p * t + (1 - p) * (1 - t)
    el = (1 - pt) ** 2 * F.binary_cross_entropy_with_logits(x, t, reduction="none")
    ref = (el * valid[:, None]).sum() / (valid.sum() * 3)
    torch.testing.assert_close(focal, ref)


# -- beyond MONAI: empty ground truth, batch vs image, reduction="none" ----------------------------


def test_empty_ground_truth_and_empty_prediction_give_zero():
    probs = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    for fn in (dice_loss, tversky_loss, generalized_dice_loss):
        assert fn(probs, target, softmax=False) == 0
    assert dice_loss(probs, target, softmax=False, jaccard=True) == 0
    # Near-empty prediction from logits: near 0, not near 1.
    assert dice_loss(torch.full((2, 1, 4, 4), -30.0), target) < 1e-6


def test_ignore_empty_leaves_absent_classes_out():
    x, y = make(SHAPES["2d"], seed=18)
    y = y.clone()
    y[0][y[0] == 2] = 0  # class 2 absent from image 0
    per_class = dice_loss(x, y, reduction="none", per_class=True)
    kept = dice_loss(x, y, reduction="none", per_class=True, ignore_empty=True)
    assert kept[0, 2] == 0 and per_class[0, 2] > 0.5  # absent class pushed to 0 by default
    torch.testing.assert_close(kept[1], per_class[1])
    per_sample = dice_loss(x, y, reduction="none", ignore_empty=True)
    torch.testing.assert_close(per_sample[0], per_class[0, :2].mean())
    mask = DiceLoss(per_class=True, ignore_empty=True).element_mask(x, y)
    assert mask.tolist() == [[True, True, False], [True, True, True]]
    # A sample whose classes are all empty counts nowhere.
    probs = torch.zeros(2, 1, 3, 3)
    target = torch.zeros(2, 3, 3, dtype=torch.long)
    target[1, 0, 0] = 1
    out = dice_loss(probs, target, softmax=False, ignore_empty=True, reduction="none")
    assert out[0] == 0 and out[1] == pytest.approx(1.0, abs=1e-4)
    assert dice_loss(probs, target, softmax=False, ignore_empty=True) == out[1]


def test_batch_dice_pools_before_the_ratio():
    x, y = make(SHAPES["3d"], seed=19)
    p = x.softmax(1)
    oh = one_hot(y, 3)
    dims = tuple(range(2, x.ndim))
    inter, den = (p * oh).sum(dims).sum(0), (p + oh).sum(dims).sum(0)
    pooled = (1 - (2 * inter + 1e-5) / (den + 1e-5)).mean()
    torch.testing.assert_close(dice_loss(x, y, batch=True), pooled)
    assert not torch.allclose(dice_loss(x, y, batch=False), pooled)
    none = dice_loss(x, y, batch=True, reduction="none")
    assert none.shape == (2,) and (none == pooled).all()


@pytest.mark.parametrize(
    ("cls", "per_class_ok"),
    [(DiceLoss, True), (TverskyLoss, True), (DiceCELoss, True), (DiceFocalLoss, True)],
)
@pytest.mark.parametrize("include_background", [True, False])
def test_reduction_none_per_sample_and_per_class(cls, per_class_ok, include_background):
    x, y = make(SHAPES["3d"], seed=20)
    y = with_ignored(y)
    y[-1, 0, 0, 0] = 1
    kw = dict(ignore_index=255, include_background=include_background)
    per_sample = cls(reduction="none", **kw)(x, y)
    assert per_sample.shape == (2,)
    torch.testing.assert_close(cls(reduction="mean", **kw)(x, y), per_sample.mean())
    torch.testing.assert_close(cls(reduction="sum", **kw)(x, y), per_sample.sum())
    per_class = cls(reduction="none", per_class=True, **kw)(x, y)
    assert per_class.shape == (2, 3 if include_background else 2)
    torch.testing.assert_close(per_class.mean(1), per_sample)
    torch.testing.assert_close(cls(per_class=True, **kw)(x, y), per_class.mean())


def test_generalized_dice_and_dice_ce_none_are_per_sample():
    x, y = make(SHAPES["2d"], seed=21)
    assert generalized_dice_loss(x, y, reduction="none").shape == (2,)
    # DiceCE "none" (MONAI has none): per-sample Dice + the sample's share of the CE mean.
    none = dice_ce_loss(x, y, reduction="none")
    ce = F.cross_entropy(x, y, reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(none, dice_loss(x, y, reduction="none") + ce)


# -- beyond MONAI: errors name the argument --------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x, y: dice_loss(x, y[:, :-1]), ValueError, "target"),
        (lambda x, y: dice_loss(x, one_hot(y, 3)[:, :2]), ValueError, "target"),
        (lambda x, y: dice_loss(x[:, :, 0, 0], y[:, 0, 0]), ValueError, "input"),
        (lambda x, y: dice_loss(x[:, :1], y, softmax=True), ValueError, "softmax"),
        (lambda x, y: dice_loss(x, y, sigmoid=True, softmax=True), ValueError, "sigmoid"),
        (
            lambda x, y: dice_loss(x, y, weight=torch.ones(2, dtype=torch.float64)),
            ValueError,
            "weight",
        ),
        (lambda x, y: dice_loss(x, y.double()), TypeError, "to_onehot_y"),
        (lambda x, y: dice_loss(x, y + 3), ValueError, "target"),
        (lambda x, y: dice_loss(x, one_hot(y, 3) * 2), ValueError, "target"),
        (lambda x, y: dice_loss(x.long(), y), TypeError, "input"),
        (
            lambda x, y: dice_ce_loss(x[:, :1], (y > 0).long(), weight=torch.ones(1)),
            ValueError,
            "weight",
        ),
        (lambda x, y: tversky_loss(x, y, alpha=-1.0), ValueError, "alpha"),
        (lambda x, y: generalized_dice_loss(x, y, w_type="cube"), ValueError, "w_type"),
        (lambda x, y: dice_loss(x, y, reduction="avg"), ValueError, "reduction"),
    ],
)
def test_conflicts_raise_named_errors(call, error, match):
    x, y = make(SHAPES["2d"], seed=22)
    with pytest.raises(error, match=match):
        call(x, y)


# -- beyond MONAI: no one-hot copy of index targets ------------------------------------------------


def saved_bytes(fn, x):
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return sum(seen.values())


def test_index_targets_save_no_one_hot():
    x, y = make((4, 6, 8, 8, 8), seed=23, dtype=torch.float32)
    x.requires_grad_(True)
    probs_bytes = x.numel() * 4
    pixels = y.numel()
    ours = saved_bytes(lambda z: dice_loss(z, y, softmax=True), x)
    # The softmax output plus one byte per voxel for the class codes, no [N, C, *] target.
    assert ours <= probs_bytes + pixels + 4096
    oh = one_hot(y, 6, torch.float32)
    monai = saved_bytes(lambda z: monai_losses.DiceLoss(softmax=True)(z, oh), x)
    assert ours < 0.6 * monai
    ours_ce = saved_bytes(lambda z: dice_ce_loss(z, y), x)
    monai_ce = saved_bytes(
        lambda z: monai_losses.DiceCELoss(softmax=True, to_onehot_y=True)(z, y[:, None]), x
    )
    assert ours_ce < monai_ce
