"""Every registered loss shows its real `forward` signature to `help()`, IDEs and LightningCLI.

A loss module's `forward` takes the functional's *call-time* arguments, with the same names,
kinds and defaults: the functional's leading parameters, up to its first keyword-only parameter
that the module supplies itself (a stored hyperparameter, `reduction`, `validate_args`), minus
the module's own state that it passes on every call (SigLIP's learnable temperature, AdaFace's
running norm statistics, Partial FC's generator: whatever `_functional_kwargs()` adds beyond the
hyperparameters). A positional hyperparameter may stay in `forward` as a per-call override
(`LogitAdjustedLoss.forward(input, target, class_priors=None)`). A drift between a class and
its functional fails here.
"""

from __future__ import annotations

import inspect

import pytest
import torch

import lightning_losses.functional as LF
from lightning_losses import get_loss_class, list_losses
from lightning_losses.losses import ClassCentreLoss, Loss
from tests.losses.specs import all_specs

NAMES = list_losses()
SPECS = all_specs()
BASE_KWARGS = {"reduction", "validate_args"}
# Losses whose `forward` still lacks the one-line docstring stating the shapes (their modules are
# being reworked elsewhere). Strict: the entry must go as soon as the docstring exists.
FORWARD_DOC_PENDING: frozenset[str] = frozenset()
DOC_PARAMS = [
    pytest.param(
        n,
        marks=pytest.mark.xfail(n in FORWARD_DOC_PENDING, strict=True, reason="docstring pending"),
    )
    for n in NAMES
]


def _expected_forward_params(cls: type[Loss]) -> list[inspect.Parameter]:
    loss = cls()
    supplied = set(loss._functional_kwargs())
    state = supplied - set(loss.hparams) - BASE_KWARGS
    expected = []
    for p in inspect.signature(cls.functional).parameters.values():
        assert p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD), f"{cls.functional} takes *args"
        if p.kind is p.KEYWORD_ONLY:
            if p.name in supplied:
                break
            expected.append(p)
        elif p.name not in state:
            expected.append(p)
    return expected


def _forward_params(cls: type[Loss]) -> list[inspect.Parameter]:
    return list(inspect.signature(cls.forward).parameters.values())[1:]  # without self


@pytest.mark.parametrize("name", DOC_PARAMS)
def test_forward_is_explicit_and_documented(name):
    cls = get_loss_class(name)
    assert cls.forward is not Loss.forward, f"{cls.__name__} keeps the generic forward(*args)"
    params = _forward_params(cls)
    kinds = {p.kind for p in params}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"{cls.__name__}.forward takes *args"
    assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{cls.__name__}.forward takes **kwargs"
    doc = inspect.getdoc(cls.forward) or ""
    assert doc and "[" in doc, f"{cls.__name__}.forward needs a docstring stating the shapes"
    assert inspect.signature(cls.forward).return_annotation in ("Tensor", torch.Tensor)


@pytest.mark.parametrize("name", NAMES)
def test_forward_arguments_are_the_functionals_call_time_arguments(name):
    cls = get_loss_class(name)
    params = {p.name: p for p in _forward_params(cls)}
    expected = _expected_forward_params(cls)
    fn_params = inspect.signature(cls.functional).parameters
    # A positional hyperparameter may be repeated in forward as a per-call override.
    overrides = [n for n in params if n not in {p.name for p in expected}]
    for n in overrides:
        assert n in cls().hparams and fn_params[n].kind is not fn_params[n].KEYWORD_ONLY, (
            f"{cls.__name__}.forward takes {n!r}, which is no call-time argument of "
            f"{cls.functional.__name__}"
        )
    in_fn_order = [n for n in fn_params if n in params]
    assert list(params) == in_fn_order, f"{cls.__name__}.forward order {list(params)}"
    assert [p.name for p in expected] == [n for n in params if n not in overrides], (
        f"{cls.__name__}.forward{inspect.signature(cls.forward)} vs "
        f"{cls.functional.__name__}{inspect.signature(cls.functional)}"
    )
    for n, p in params.items():
        ref = fn_params[n]
        assert p.kind == ref.kind, f"{cls.__name__}.forward: {n} is {p.kind}, not {ref.kind}"
        centres = issubclass(cls, ClassCentreLoss) and n == "weight"
        if ref.default is not ref.empty:
            assert p.default == ref.default, f"{cls.__name__}.forward: default of {n}"
            assert p.annotation == ref.annotation, f"{cls.__name__}.forward: annotation of {n}"
        elif centres:  # owned centres: `weight` is optional in forward only
            assert p.default is None and p.annotation == "Tensor | None"
        else:
            assert p.default is p.empty, f"{cls.__name__}.forward: {n} has a default"
            assert p.annotation == ref.annotation, f"{cls.__name__}.forward: annotation of {n}"


def test_the_rule_sees_module_state_and_overrides():
    # Spot checks of the rule above on the classes that exercise each branch.
    names = lambda name: [p.name for p in _forward_params(get_loss_class(name))]  # noqa: E731
    assert names("sigmoid_contrastive") == ["image_emb", "text_emb"]  # log_scale, bias: state
    assert names("adaface") == ["embeddings", "labels", "weight"]  # batch_mean/std: state
    assert names("partial_fc") == ["embeddings", "labels", "weight"]  # generator: state
    assert names("logit_adjusted") == ["input", "target", "class_priors"]  # an override
    assert names("supcon") == ["features", "labels", "mask", "ref_emb", "ref_labels"]
    assert names("z_loss") == ["input", "target"]


@pytest.mark.parametrize("name", [n for n in NAMES if n in SPECS and SPECS[n].ignore_index])
def test_element_mask_binds_forwards_arguments_by_position_and_by_name(name):
    cls = get_loss_class(name)
    spec = SPECS[name]
    ex = spec.example(4, max(5, spec.min_size), torch.Generator().manual_seed(0))
    target = ex.targets[ex.class_target].clone()
    target.view(-1)[0] = -100
    targets = list(ex.targets)
    targets[ex.class_target] = target
    loss = cls()
    expected = target != -100
    assert torch.equal(loss.element_mask(*ex.inputs, *targets, **ex.kwargs), expected)
    # The same argument passed by its forward name.
    names = [p.name for p in _forward_params(cls)]
    args = [*ex.inputs, *targets]
    by_name = dict(zip(names, args))
    assert cls.target_arg in by_name
    assert torch.equal(loss.element_mask(**by_name, **ex.kwargs), expected)


def test_a_subclass_without_forward_falls_back_to_the_functional():
    # Quick custom losses may skip `forward`: the generic one calls the functional, and
    # element_mask binds the functional's signature to find the target.
    def shifted_ce(input, target, *, shift=0.0, ignore_index=-100, reduction, validate_args):
        return LF.cross_entropy(
            input + shift, target, ignore_index=ignore_index, reduction=reduction
        )

    class ShiftedLoss(Loss):
        functional = staticmethod(shifted_ce)

        def __init__(self, shift: float = 0.0, reduction: str = "mean") -> None:
            super().__init__(reduction=reduction, shift=shift, ignore_index=-100)

    x, y = torch.zeros(3, 4), torch.tensor([0, -100, 2])
    loss = ShiftedLoss(shift=1.0)
    torch.testing.assert_close(loss(x, y), LF.cross_entropy(x + 1.0, y))
    assert loss.element_mask(x, target=y).tolist() == [True, False, True]
    assert loss.element_mask(x, y).tolist() == [True, False, True]
