"""Focal losses: softmax focal, sigmoid focal (house form + torchvision alias), Poly-1 focal.

Peers (test-only): `torchvision.ops.sigmoid_focal_loss` (exact parity of values and gradients) and
`timm.loss.PolyBinaryCrossEntropy` (documented relation: equal without `alpha`, differ by
`(1 - α_t) ε (1 - p_t)^{γ+1}` with it). Everything else is checked against float64 references
written from the formulas.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses.losses import FocalLoss, PolyFocalLoss, SigmoidFocalLoss
from tests.losses._helpers import (
    DTYPES,
    SHAPES,
    assert_value_and_grad,
    class_target,
    randint,
    randn,
)


def _sigmoid_focal_reference(z, t, alpha, gamma):
    """Float64 element-wise α_t (1 - p_t)^γ BCE from the formula (no torch BCE helper)."""
    z, t = z.double(), t.double()
    p = 1 / (1 + torch.exp(-z))
    bce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    p_t = t * p + (1 - t) * (1 - p)
    focal = (1 - p_t) ** gamma * bce
    if alpha is not None and alpha >= 0:
        focal = (alpha * t + (1 - alpha) * (1 - t)) * focal
    return focal, p_t


# -- sigmoid focal vs torchvision --------------------------------------------------------------


def test_torchvision_alias_has_torchvisions_exact_signature():
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    ours = inspect.signature(LF.sigmoid_focal_loss_torchvision)
    theirs = inspect.signature(tv_focal)
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]
    # The house functional follows the house convention instead.
    house = inspect.signature(LF.sigmoid_focal_loss).parameters
    assert list(house)[:2] == ["input", "target"]
    assert house["reduction"].default == "mean"
    assert house["alpha"].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (4, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("alpha", [0.25, 0.6, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_matches_torchvision(dtype, shape, alpha, gamma, reduction):
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    x = randn(*shape, dtype=dtype)
    t = (randn(*shape, seed=3) > 0).to(dtype)
    # The torchvision-signature alias, positionally as torchvision is called.
    assert_value_and_grad(
        lambda z: LF.sigmoid_focal_loss_torchvision(z, t, alpha, gamma, reduction),
        lambda z: tv_focal(z, t, alpha, gamma, reduction),
        x,
    )
    # The house functional and the module, by keyword.
    assert_value_and_grad(
        lambda z: LF.sigmoid_focal_loss(z, t, alpha=alpha, gamma=gamma, reduction=reduction),
        lambda z: tv_focal(z, t, alpha, gamma, reduction),
        x,
    )
    assert_value_and_grad(
        lambda z: SigmoidFocalLoss(alpha=alpha, gamma=gamma, reduction=reduction)(z, t),
        lambda z: tv_focal(z, t, alpha, gamma, reduction),
        x,
    )


def test_sigmoid_focal_defaults_soft_targets_and_float64_reference():
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    x = randn(6, 4, dtype=torch.float64)
    t = torch.rand(6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # Defaults: the alias keeps torchvision's reduction="none", the house form averages.
    assert_value_and_grad(
        lambda z: LF.sigmoid_focal_loss_torchvision(z, t), lambda z: tv_focal(z, t), x
    )
    # torchvision's reduction="mean" reproduces our default (the docstring's settings).
    assert_value_and_grad(
        lambda z: SigmoidFocalLoss()(z, t), lambda z: tv_focal(z, t, reduction="mean"), x
    )
    for alpha in (0.25, None, -1.0):
        assert_value_and_grad(
            lambda z, alpha=alpha: LF.sigmoid_focal_loss(
                z, t, alpha=alpha, gamma=1.5, reduction="none"
            ),
            lambda z, alpha=alpha: _sigmoid_focal_reference(z, t, alpha, 1.5)[0],
            x,
        )
    # alpha=None is the same as torchvision's alpha < 0 (no balance).
    torch.testing.assert_close(
        LF.sigmoid_focal_loss(x, t, alpha=None, reduction="none"), tv_focal(x, t, -1.0)
    )


@pytest.mark.parametrize(
    "fn",
    [
        lambda x, t, **kw: LF.sigmoid_focal_loss(x, t, **kw),
        lambda x, t, **kw: LF.poly_focal_loss(x, t, **kw),
        lambda x, t, **kw: SigmoidFocalLoss(**kw)(x, t),
        lambda x, t, **kw: PolyFocalLoss(**kw)(x, t),
    ],
    ids=["sigmoid_focal_loss", "poly_focal_loss", "SigmoidFocalLoss", "PolyFocalLoss"],
)
@pytest.mark.parametrize("bad", [-0.5, 1.5, 2.0])
def test_sigmoid_targets_outside_unit_interval_raise_naming_target(fn, bad):
    x = randn(3, 4)
    t = torch.zeros(3, 4)
    t[1, 2] = bad
    with pytest.raises(ValueError, match=r"target must hold probabilities in \[0, 1\]"):
        fn(x, t)
    # validate_args=False skips the host-syncing check (the value is meaningless, not an error).
    fn(x, t, validate_args=False)


def test_torchvision_alias_names_targets_and_inputs():
    with pytest.raises(ValueError, match="targets"):
        LF.sigmoid_focal_loss_torchvision(torch.zeros(3), torch.tensor([0.0, 1.0, 3.0]))
    with pytest.raises(ValueError, match="targets"):
        LF.sigmoid_focal_loss_torchvision(torch.zeros(3), torch.zeros(2))
    with pytest.raises(TypeError, match="inputs"):
        LF.sigmoid_focal_loss_torchvision(torch.zeros(3, dtype=torch.long), torch.zeros(3))


def test_sigmoid_focal_integer_binary_targets_are_accepted():
    x = randn(5, 3)
    t = randint(2, 5, 3)
    torch.testing.assert_close(LF.sigmoid_focal_loss(x, t), LF.sigmoid_focal_loss(x, t.float()))


# -- Poly-1 sigmoid focal ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9,), (3, 4, 5)])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_poly_focal_epsilon_zero_is_torchvision(dtype, shape, alpha):
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    x = randn(*shape, dtype=dtype)
    t = (randn(*shape, seed=4) > 0).to(dtype)
    for reduction in ("none", "mean", "sum"):
        assert_value_and_grad(
            lambda z, reduction=reduction: LF.poly_focal_loss(
                z, t, epsilon=0.0, alpha=alpha, reduction=reduction
            ),
            lambda z, reduction=reduction: tv_focal(z, t, alpha, 2.0, reduction),
            x,
        )


@pytest.mark.parametrize("alpha", [0.25, 0.8, None, -1.0])
@pytest.mark.parametrize("epsilon", [0.7, -1.0, 2.0])
def test_poly_focal_matches_float64_reference_alpha_on_focal_term_only(alpha, epsilon):
    # The chosen formula (paper, arXiv:2204.12511): α_t (1-p_t)^γ BCE + ε (1-p_t)^{γ+1}.
    x = randn(4, 6, dtype=torch.float64)
    t = torch.rand(4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t[0] = (t[0] > 0.5).double()  # binary and soft targets

    def reference(z, gamma=1.5):
        focal, p_t = _sigmoid_focal_reference(z, t, alpha, gamma)
        return focal + epsilon * (1 - p_t) ** (gamma + 1)

    assert_value_and_grad(
        lambda z: LF.poly_focal_loss(
            z, t, epsilon=epsilon, gamma=1.5, alpha=alpha, reduction="none"
        ),
        reference,
        x,
    )
    module = PolyFocalLoss(epsilon=epsilon, alpha=alpha, gamma=1.5)
    torch.testing.assert_close(module(x, t), reference(x).mean())


def test_poly_focal_relation_to_timm_poly_binary_cross_entropy():
    # timm multiplies α_t into both terms; we weight only the focal term (the paper's code).
    from timm.loss import PolyBinaryCrossEntropy

    x = randn(6, 5, dtype=torch.float32, seed=11)
    t = (randn(6, 5, seed=12) > 0).float()
    eps, gamma = 2.0, 2.0
    # No balance: identical, values and gradients.
    assert_value_and_grad(
        lambda z: LF.poly_focal_loss(z, t, epsilon=eps, gamma=gamma, alpha=None, reduction="none"),
        lambda z: PolyBinaryCrossEntropy(epsilon=eps, gamma=gamma, alpha=None, reduction="none")(
            z, t
        ),
        x,
    )
    torch.testing.assert_close(
        LF.poly_focal_loss(x, t, epsilon=eps, gamma=gamma, alpha=-1.0),
        PolyBinaryCrossEntropy(epsilon=eps, gamma=gamma, alpha=None)(x, t),
    )
    # With alpha: they differ by exactly (1 - α_t) ε (1 - p_t)^{γ+1} per element.
    for alpha in (0.25, 0.75):
        ours = LF.poly_focal_loss(x, t, epsilon=eps, gamma=gamma, alpha=alpha, reduction="none")
        timm = PolyBinaryCrossEntropy(epsilon=eps, gamma=gamma, alpha=alpha, reduction="none")(x, t)
        p = torch.sigmoid(x)
        p_t = t * p + (1 - t) * (1 - p)
        alpha_t = alpha * t + (1 - alpha) * (1 - t)
        torch.testing.assert_close(ours - timm, (1 - alpha_t) * eps * (1 - p_t) ** (gamma + 1))
        assert not torch.allclose(ours.mean(), timm.mean())


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("epsilon", [0.0, 1.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_fused_sigmoid_focal_gradcheck_and_double_backward(gamma, epsilon, alpha, reduction):
    # The hand-derived backward against finite differences (float64), soft and hard targets,
    # and create_graph=True (which differentiates the reference expression).
    x = randn(4, 3, dtype=torch.float64, seed=21).requires_grad_(True)
    for t in (torch.rand(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64),
              (randn(4, 3, seed=22) > 0).double()):  # fmt: skip
        fn = lambda z, t=t: LF.poly_focal_loss(  # noqa: E731
            z, t, epsilon=epsilon, alpha=alpha, gamma=gamma, reduction=reduction
        )
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_fused_sigmoid_focal_is_finite_and_exact_at_saturated_logits(gamma):
    # At |x| = 1e4 the sigmoid saturates to exactly 0 or 1: the value is the float64 formula's
    # (BCE = |x| for the wrong label, 0 for the right one) and the gradient finite. For γ < 1,
    # torchvision's autograd gives NaN where p_t = 1 (0 · ∞ from (1 - p_t)^(γ-1)); the true
    # derivative there is 0.
    x = torch.tensor([-1e4, -1e4, 1e4, 1e4, 30.0, -30.0], requires_grad=True)
    t = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    ours = LF.sigmoid_focal_loss(x, t, gamma=gamma, alpha=None, reduction="none")
    x64 = x.detach().double()
    bce = x64.clamp_min(0) - x64 * t.double() + torch.log1p(torch.exp(-x64.abs()))
    q = torch.where(t.bool(), torch.sigmoid(-x64), torch.sigmoid(x64))  # 1 - p_t, exactly
    torch.testing.assert_close(ours.double(), q**gamma * bce)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    assert torch.isfinite(grad).all()
    assert grad[[0, 3, 4, 5]].abs().max() < 1e-6  # confident and right: ~0
    assert grad[1] < 0 and grad[2] > 0  # confident and wrong: pushed towards the label


def test_fused_sigmoid_focal_saves_one_tensor_besides_its_inputs():
    # The derivative, computed in the forward, is the only new tensor autograd keeps.
    x = randn(64, 32, dtype=torch.float32, seed=3).requires_grad_(True)
    t = (randn(64, 32, seed=4) > 0).float()
    seen = {}

    def pack(v):
        seen[v.untyped_storage().data_ptr()] = v.untyped_storage().nbytes()
        return v

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda v: v):
        LF.poly_focal_loss(x, t)
    for v in (x, t):
        seen.pop(v.untyped_storage().data_ptr(), None)
    assert sum(seen.values()) == x.numel() * 4, seen


def test_poly_focal_default_is_focal_plus_cubed_term():
    # x = 0, t = 1: p_t = 1/2, focal = 0.25 · 0.25 · log 2, poly = 1 · 0.5^3 (docstring example).
    expected = 0.25 * 0.25 * torch.log(torch.tensor(2.0)) + 0.125
    torch.testing.assert_close(LF.poly_focal_loss(torch.zeros(1), torch.ones(1)), expected)


# -- softmax focal -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_focal_gamma_zero_is_cross_entropy_with_and_without_weight(dtype, shape):
    x = randn(*shape, dtype=dtype)
    y = class_target(shape)
    y.view(-1)[1] = -100
    w = torch.rand(shape[1], generator=torch.Generator().manual_seed(2), dtype=dtype) + 0.5
    for weight in (None, w):
        for reduction in ("none", "mean", "sum"):
            assert_value_and_grad(
                lambda z, weight=weight, reduction=reduction: LF.focal_loss(
                    z, y, gamma=0.0, weight=weight, reduction=reduction
                ),
                lambda z, weight=weight, reduction=reduction: F.cross_entropy(
                    z, y, weight=weight, reduction=reduction
                ),
                x,
            )


@pytest.mark.parametrize("gamma", [0.5, 2.0, 3.0])
@pytest.mark.parametrize("alpha", [None, 0.25, "tensor"])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_matches_naive_reference(gamma, alpha, weighted):
    x = randn(4, 5, 3, dtype=torch.float64)
    y = randint(5, 4, 3)
    a = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64) if alpha == "tensor" else alpha
    w = torch.tensor([2.0, 0.5, 1.0, 3.0, 1.5], dtype=torch.float64) if weighted else None

    def rows(z):
        p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
        p_y = p.gather(1, y[:, None]).squeeze(1)
        scale = 1.0 if a is None else (a[y] if isinstance(a, torch.Tensor) else a)
        wy = 1.0 if w is None else w[y]
        return -wy * scale * (1 - p_y) ** gamma * torch.log(p_y)

    assert_value_and_grad(
        lambda z: LF.focal_loss(z, y, gamma=gamma, alpha=a, weight=w, reduction="none"), rows, x
    )
    # "mean" divides by Σ w_y (CE semantics) with weight, by the count without.
    den = w[y].sum() if weighted else torch.tensor(float(y.numel()), dtype=torch.float64)
    assert_value_and_grad(
        lambda z: FocalLoss(gamma=gamma, alpha=a, weight=w)(z, y), lambda z: rows(z).sum() / den, x
    )


def test_focal_alpha_must_match_the_number_of_classes():
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=torch.ones(3))(randn(2, 4), randint(4, 2))
    with pytest.raises(ValueError, match="alpha"):
        LF.focal_loss(randn(2, 4), randint(4, 2), alpha=torch.ones(5))
