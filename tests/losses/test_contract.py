"""The loss contract (`docs/design/contract.md`), checked for *every* registered loss.

Each loss's spec (tests/losses/specs/) says how to build a small valid input, so a loss added
later is covered here without new test code: reductions, ignore_index, float64 gradcheck,
finiteness at logits ±1e4 in float32/bf16, a hypothesis fuzz of shapes, clear errors on malformed
input and bad hyperparameters, NaN semantics, and the `Loss` base's stored hyperparameters.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_losses import get_loss, get_loss_class, list_losses
from lightning_losses.losses import InputKind, Loss
from lightning_losses.mixins import build_criterion
from tests.losses.specs import LossSpec, all_specs
from tests.losses.specs.examples import LossExample

ALL_SPECS = all_specs()
NAMES = list_losses()
SPECS = [ALL_SPECS[n] for n in NAMES if n in ALL_SPECS]
SPEC_IDS = [s.name for s in SPECS]
IGNORE_SPECS = [s for s in SPECS if s.ignore_index]


def cls_of(spec: LossSpec) -> type[Loss]:
    return get_loss_class(spec.name)


def init_params(spec: LossSpec) -> list[str]:
    return [p for p in inspect.signature(cls_of(spec).__init__).parameters if p != "self"]


def test_every_registered_loss_has_exactly_one_spec():
    assert sorted(ALL_SPECS) == NAMES, (
        f"registered without a spec: {sorted(set(NAMES) - set(ALL_SPECS))}; "
        f"specs of unregistered names: {sorted(set(ALL_SPECS) - set(NAMES))}"
    )


def make_example(
    spec: LossSpec, n: int = 6, size: int = 5, seed: int = 0, dtype=torch.float32
) -> LossExample:
    g = torch.Generator().manual_seed(seed)
    ex = spec.example(n, max(size, spec.min_size), g)
    ex.inputs = tuple(x.to(dtype) for x in ex.inputs)
    return ex


def call(spec: LossSpec, ex: LossExample, inputs=None, targets=None, **init_kwargs):
    loss = cls_of(spec)(**init_kwargs)
    inputs = inputs if inputs is not None else ex.inputs
    targets = targets if targets is not None else ex.targets
    return loss(*inputs, *targets, **ex.kwargs)


def forward_arg_names(spec: LossSpec) -> list[str]:
    # Every registered loss writes its own forward (tests/losses/test_signatures.py).
    return [p for p in inspect.signature(cls_of(spec).forward).parameters if p != "self"]


def with_ignored(ex: LossExample, rows=(0, 3)) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    target = ex.targets[ex.class_target].clone()
    for r in rows:
        target.view(-1)[r] = -100
    targets = list(ex.targets)
    targets[ex.class_target] = target
    return target, tuple(targets)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_reductions_are_consistent(spec):
    ex = make_example(spec)
    none = call(spec, ex, reduction="none")
    assert none.shape[0] == ex.inputs[0].shape[0]
    if not spec.per_element:
        assert none.ndim == 1
    torch.testing.assert_close(call(spec, ex, reduction="sum"), none.sum())
    torch.testing.assert_close(call(spec, ex, reduction="mean"), none.mean())
    assert torch.isfinite(none).all()


@pytest.mark.parametrize("spec", IGNORE_SPECS, ids=[s.name for s in IGNORE_SPECS])
def test_ignore_index_excluded_from_value_mean_and_gradient(spec):
    ex = make_example(spec, n=6)
    target, ex.targets = with_ignored(ex)
    logits = ex.inputs[0].clone().requires_grad_(True)
    inputs = (logits, *ex.inputs[1:])
    none = call(spec, ex, inputs=inputs, reduction="none")
    ignored = (target == -100).reshape(none.shape)
    assert (none[ignored] == 0).all()
    mean = call(spec, ex, inputs=inputs, reduction="mean")
    torch.testing.assert_close(mean, none[~ignored].mean())
    mean.backward()
    # Rows of ignored targets get no gradient (logits [N, C]: row = sample).
    if logits.ndim == 2 and none.ndim == 1:
        assert (logits.grad[ignored] == 0).all()
        assert logits.grad[~ignored].abs().sum() > 0


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.gradcheck], ids=[s.name for s in SPECS if s.gradcheck]
)
def test_gradcheck_float64(spec, reduction):
    ex = make_example(spec, n=3, size=4, dtype=torch.float64)
    inputs = tuple(x.clone().requires_grad_(True) for x in ex.inputs)
    module = cls_of(spec)(reduction=reduction).double()

    def fn(*xs):
        return module(*xs, *ex.targets, **ex.kwargs)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_finite_value_and_gradient_at_extreme_logits(spec, dtype):
    ex = make_example(spec, n=8, size=6)
    g = torch.Generator().manual_seed(1)
    inputs = tuple(
        (torch.sign(torch.randn(x.shape, generator=g)) * 1e4).to(dtype).requires_grad_(True)
        for x in ex.inputs
    )
    out = call(spec, ex, inputs=inputs)
    assert torch.isfinite(out).all(), f"{spec.name}: loss {out}"
    out.backward()
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad.float()).all(), spec.name


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_low_precision_inputs_are_upcast(spec):
    ex = make_example(spec)
    ref = call(spec, ex)
    low = call(spec, ex, inputs=tuple(x.to(torch.bfloat16) for x in ex.inputs))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.05 * ref.abs().item() + 0.02, rtol=0)
    assert call(spec, ex, inputs=tuple(x.double() for x in ex.inputs)).dtype == torch.float64


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 9), size=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_fuzz_shapes(spec, n, size, seed):
    ex = make_example(spec, n=n, size=size, seed=seed)
    none = call(spec, ex, reduction="none")
    assert none.shape[0] == n
    assert torch.isfinite(none).all()
    assert torch.isfinite(call(spec, ex)).all()


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_malformed_input_raises_naming_the_argument(spec):
    names = forward_arg_names(spec)
    ex = make_example(spec)
    module = cls_of(spec)()

    # Batch-size mismatch between the first input and the first target.
    if ex.targets:
        bad_targets = (ex.targets[0][:-1], *ex.targets[1:])
        with pytest.raises((ValueError, TypeError)) as err:
            module(*ex.inputs, *bad_targets, **ex.kwargs)
        assert any(n in str(err.value) for n in names), str(err.value)

    # Integer tensor where logits are expected.
    with pytest.raises(TypeError) as err:
        module(ex.inputs[0].long(), *ex.inputs[1:], *ex.targets, **ex.kwargs)
    assert any(n in str(err.value) for n in names), str(err.value)

    # Label out of range.
    if ex.class_target is not None:
        target = ex.targets[ex.class_target].clone()
        target.view(-1)[0] = ex.num_classes
        targets = list(ex.targets)
        targets[ex.class_target] = target
        with pytest.raises(ValueError) as err:
            module(*ex.inputs, *targets, **ex.kwargs)
        assert any(n in str(err.value) for n in names), str(err.value)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_bad_hyperparameters_raise_at_construction(spec):
    cls = cls_of(spec)
    with pytest.raises(ValueError, match="reduction"):
        cls(reduction="avg")
    with pytest.raises(TypeError, match="validate_args"):
        cls(validate_args="False")
    for kwargs in spec.invalid_kwargs:
        with pytest.raises((ValueError, TypeError)) as err:
            cls(**kwargs)
        # The message names the argument as the user wrote it.
        assert any(k in str(err.value) for k in kwargs), str(err.value)
    for flag in spec.bool_flags:
        for bad in ("False", 0, 1):
            with pytest.raises(TypeError, match=flag):
                cls(**{flag: bad})
    params = init_params(spec)
    if "weight" in params:
        c = max(5, spec.min_size)
        for bad in (float("nan"), float("inf")):
            w = torch.ones(c)
            w[1] = bad
            with pytest.raises(ValueError, match="weight"):
                cls(weight=w)
    for name, default in inspect.signature(cls.__init__).parameters.items():
        if isinstance(default.default, float) and not isinstance(default.default, bool):
            with pytest.raises((ValueError, TypeError), match=name):
                cls(**{name: float("nan")})


@pytest.mark.parametrize("spec", IGNORE_SPECS, ids=[s.name for s in IGNORE_SPECS])
def test_ignore_index_must_be_an_int(spec):
    cls = cls_of(spec)
    for bad in (1.5, "x", True):
        with pytest.raises(TypeError, match="ignore_index"):
            cls(ignore_index=bad)
    ex = make_example(spec)
    fn = cls.functional
    with pytest.raises(TypeError, match="ignore_index"):
        fn(*ex.inputs, *ex.targets, **ex.kwargs, ignore_index=1.5)


@pytest.mark.parametrize("spec", IGNORE_SPECS, ids=[s.name for s in IGNORE_SPECS])
def test_ignored_rows_get_zero_gradient_even_with_non_finite_input(spec):
    ex = make_example(spec, n=6)
    target, targets = with_ignored(ex)
    x = ex.inputs[0].clone()
    if x.ndim != 2:
        raise AssertionError("ignore_index specs must use [N, C] inputs")
    x[0, 0] = float("nan")
    x[3] = float("inf")
    x = x.requires_grad_(True)
    for reduction in ("mean", "sum"):
        out = call(spec, ex, inputs=(x, *ex.inputs[1:]), targets=targets, reduction=reduction)
        assert torch.isfinite(out), f"{spec.name} {reduction}: {out}"
        (grad,) = torch.autograd.grad(out, x)
        assert torch.isfinite(grad).all(), f"{spec.name}: non-finite gradient {grad}"
        ignored = target.view(-1) == -100
        assert (grad[ignored] == 0).all()


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_nan_input_propagates_like_torch(spec):
    # Documented behaviour (docs/guide/contract.md): a NaN in a counted row makes that row NaN.
    ex = make_example(spec)
    x = ex.inputs[0].clone()
    x.view(-1)[0] = float("nan")
    none = call(spec, ex, inputs=(x, *ex.inputs[1:]), reduction="none")
    assert torch.isnan(none.reshape(none.shape[0], -1)[0]).any(), f"{spec.name}: NaN swallowed"


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_validate_args_off_gives_the_same_result(spec):
    ex = make_example(spec)
    torch.testing.assert_close(call(spec, ex, validate_args=False), call(spec, ex))


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_hyperparameters_stored_once_and_printed(spec):
    cls = cls_of(spec)
    assert issubclass(cls, Loss) and cls.__name__.endswith("Loss"), cls.__name__
    assert cls.input_kind in InputKind.ALL
    loss = cls()
    # Every constructor argument is a stored hyperparameter (or the base's own two), and repr
    # shows each one: `FocalLoss(gamma=2.0, ...)`.
    stored = set(loss.hparams) | {"reduction", "validate_args"}
    params = init_params(spec)
    missing = [p for p in params if p not in stored and not hasattr(loss, p)]
    assert not missing, f"{cls.__name__}: constructor arguments not stored: {missing}"
    text = repr(loss)
    for name in loss.hparams:
        assert f"{name}=" in text, f"{name} missing from {text}"
    # The functional accepts every stored hyperparameter under the same name.
    fn_params = inspect.signature(cls.functional).parameters
    assert set(loss.hparams) <= set(fn_params), sorted(set(loss.hparams) - set(fn_params))


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_documented_registered_and_buildable_by_class_path(spec):
    cls = cls_of(spec)
    doc = inspect.getdoc(cls) or ""
    assert "Example" in doc and "Args" in doc, f"{cls.__name__} docstring lacks Args/Example"
    # The loss's *own* docstrings cite its source (not the module's, which covers every loss).
    own = doc + (inspect.getdoc(cls.functional) or "")
    assert "arXiv" in own, f"{spec.name}: no paper (arXiv id) cited in its own docstrings"
    assert type(get_loss(spec.name)) is cls
    assert type(get_loss(cls.__name__)) is cls
    path = f"{cls.__module__}.{cls.__name__}"
    criterion = build_criterion({"class_path": path})
    assert isinstance(criterion, cls) and criterion.reduction == "none"
    public = f"lightning_losses.losses.{cls.__name__}"
    assert isinstance(build_criterion({"class_path": public}), cls)


def test_unknown_name_lists_closest_matches_and_renames():
    with pytest.raises(KeyError, match="focal"):
        get_loss("focall")
    assert "focal" in list_losses("*focal*")
    assert "ce" in list_losses(include_aliases=True)
    with pytest.raises(KeyError, match="renamed to 'normalized_ce'"):
        get_loss("nce")
    with pytest.raises(KeyError, match="renamed to 'prob_mae'"):
        get_loss("mae")
    with pytest.raises(TypeError, match="loss name"):
        get_loss(3)
