"""The loss contract (DESIGN.md), checked for *every* registered loss.

Each loss's registry spec says how to build a small valid input, so a loss added later is covered
here without new test code: reductions, ignore_index, float64 gradcheck, finiteness at logits
±1e4 in float32/bf16, a hypothesis fuzz of shapes, and clear errors on malformed input.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_losses import get_loss, get_loss_spec, list_losses
from lightning_losses.mixins import build_criterion
from lightning_losses.registry import LossExample, LossSpec

NAMES = list_losses()
SPECS = [get_loss_spec(n) for n in NAMES]


def make_example(
    spec: LossSpec, n: int = 6, size: int = 5, seed: int = 0, dtype=torch.float32
) -> LossExample:
    g = torch.Generator().manual_seed(seed)
    ex = spec.example(n, max(size, spec.min_size), g)
    ex.inputs = tuple(x.to(dtype) for x in ex.inputs)
    return ex


def call(spec: LossSpec, ex: LossExample, inputs=None, **init_kwargs):
    loss = spec.cls(**init_kwargs)
    return loss(*(inputs if inputs is not None else ex.inputs), *ex.targets, **ex.kwargs)


def forward_arg_names(spec: LossSpec) -> list[str]:
    return [p for p in inspect.signature(spec.cls.forward).parameters if p != "self"]


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_reductions_are_consistent(spec):
    ex = make_example(spec)
    none = call(spec, ex, reduction="none")
    assert none.shape[0] == ex.inputs[0].shape[0]
    if not spec.per_element:
        assert none.ndim == 1
    torch.testing.assert_close(call(spec, ex, reduction="sum"), none.sum())
    torch.testing.assert_close(call(spec, ex, reduction="mean"), none.mean())
    assert torch.isfinite(none).all()


@pytest.mark.parametrize(
    "spec", [s for s in SPECS if s.ignore_index], ids=[s.name for s in SPECS if s.ignore_index]
)
def test_ignore_index_excluded_from_value_mean_and_gradient(spec):
    ex = make_example(spec, n=6)
    target = ex.targets[ex.class_target].clone()
    flat = target.view(-1)
    flat[0] = -100
    flat[3] = -100
    targets = list(ex.targets)
    targets[ex.class_target] = target
    ex.targets = tuple(targets)
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
    module = spec.cls(reduction=reduction).double()

    def fn(*xs):
        return module(*xs, *ex.targets, **ex.kwargs)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
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


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_low_precision_inputs_are_upcast(spec):
    ex = make_example(spec)
    ref = call(spec, ex)
    low = call(spec, ex, inputs=tuple(x.to(torch.bfloat16) for x in ex.inputs))
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.05 * ref.abs().item() + 0.02, rtol=0)
    assert call(spec, ex, inputs=tuple(x.double() for x in ex.inputs)).dtype == torch.float64


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 9), size=st.integers(2, 12), seed=st.integers(0, 2**16))
def test_fuzz_shapes(spec, n, size, seed):
    ex = make_example(spec, n=n, size=size, seed=seed)
    none = call(spec, ex, reduction="none")
    assert none.shape[0] == n
    assert torch.isfinite(none).all()
    assert torch.isfinite(call(spec, ex)).all()


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_malformed_input_raises_naming_the_argument(spec):
    names = forward_arg_names(spec)
    ex = make_example(spec)
    module = spec.cls()

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


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_bad_hyperparameters_raise_at_construction(spec):
    with pytest.raises(ValueError, match="reduction"):
        spec.cls(reduction="avg")
    for kwargs in spec.invalid_kwargs:
        with pytest.raises((ValueError, TypeError)) as err:
            spec.cls(**kwargs)
        assert any(k in str(err.value) for k in kwargs), str(err.value)


@pytest.mark.parametrize("spec", SPECS, ids=NAMES)
def test_documented_registered_and_buildable_by_class_path(spec):
    doc = inspect.getdoc(spec.cls) or ""
    assert "Example" in doc and "Args" in doc, f"{spec.cls.__name__} docstring lacks Args/Example"
    sources = (
        doc + (inspect.getdoc(spec.functional) or "") + (inspect.getmodule(spec.cls).__doc__ or "")
    )
    assert "arXiv" in sources, f"{spec.name}: no paper (arXiv id) cited"
    assert type(get_loss(spec.name)) is spec.cls
    path = f"{spec.cls.__module__}.{spec.cls.__name__}"
    criterion = build_criterion({"class_path": path})
    assert isinstance(criterion, spec.cls) and criterion.reduction == "none"


def test_unknown_name_lists_closest_matches():
    with pytest.raises(KeyError, match="focal"):
        get_loss("focall")
    assert "focal" in list_losses("*focal*")
    assert "ce" in list_losses(include_aliases=True)
