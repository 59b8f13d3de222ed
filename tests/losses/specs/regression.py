"""Contract-test specs of the regression, quantile and time-series losses."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")
_INF = float("inf")


def pair_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Predictions `[n, size]` (differentiable) and real targets `[n, size]`."""
    pred = torch.randn(n, size, generator=generator)
    target = torch.randn(n, size, generator=generator)
    return LossExample(inputs=(pred,), targets=(target,))


def positive_pair_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Positive predictions and non-negative targets `[n, size]` (MSLE's domain, away from 0)."""
    pred = torch.rand(n, size, generator=generator) * 3 + 0.1
    target = torch.rand(n, size, generator=generator) * 3
    return LossExample(inputs=(pred,), targets=(target,))


def quantile_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Three quantile predictions `[n, 3]` (the default levels) and targets `[n]`."""
    pred = torch.randn(n, 3, generator=generator)
    target = torch.randn(n, generator=generator)
    return LossExample(inputs=(pred,), targets=(target,))


def quantile_penalty_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Quantile predictions `[n, size]`, some crossing (no target)."""
    return LossExample(inputs=(torch.randn(n, size, generator=generator),))


def diffusion_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Predicted noise `[n, size]`, target noise `[n, size]` and timesteps `[n]` in [0, 1000)."""
    ex = pair_example(n, size, generator)
    timesteps = torch.randint(0, 1000, (n,), generator=generator)
    return LossExample(inputs=ex.inputs, targets=(*ex.targets, timesteps))


def binned_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Predictions `[n]`, bin logits `[n, size]` and targets in [0, 1] `[n]`."""
    pred = torch.rand(n, generator=generator)
    logits = torch.randn(n, size, generator=generator)
    target = torch.rand(n, generator=generator)
    return LossExample(inputs=(pred, logits), targets=(target,))


SPECS = [
    LossSpec(
        "pinball",
        quantile_example,
        invalid_kwargs=(
            {"quantiles": (0.5, 0.1)},
            {"quantiles": (0.0, 0.5)},
            {"quantiles": (0.5, 1.0)},
            {"quantiles": ()},
            {"quantiles": 0.5},
            {"quantiles": (0.1, _NAN)},
            {"non_crossing": "monotone"},
        ),
        notes="reduction='none' gives one loss per sample [N] ([N, T] for [N, T, Q] input)",
    ),
    LossSpec(
        "quantile_crossing_penalty",
        quantile_penalty_example,
        invalid_kwargs=({"lam": -1.0}, {"lam": _NAN}, {"lam": "1"}),
    ),
    LossSpec(
        "pseudo_huber",
        pair_example,
        invalid_kwargs=({"c": 0.0}, {"c": -1.0}, {"c": _INF}, {"c": "1"}),
        per_element=True,
    ),
    LossSpec(
        "scheduled_pseudo_huber",
        diffusion_example,
        invalid_kwargs=(
            {"huber_c": 0.0},
            {"huber_c": 1.5},
            {"huber_scale": 0.0},
            {"schedule": "linear"},
            {"num_train_timesteps": 0},
            {"num_train_timesteps": 10.0},
            {"alphas_cumprod": torch.ones(3)},
        ),
        per_element=True,
    ),
    LossSpec("log_cosh", pair_example, per_element=True),
    LossSpec("msle", positive_pair_example, per_element=True),
    LossSpec(
        "mape",
        pair_example,
        invalid_kwargs=({"eps": 0.0}, {"eps": -1.0}, {"eps": _NAN}),
        per_element=True,
    ),
    LossSpec("rmse", pair_example),
    LossSpec(
        "madl",
        pair_example,
        invalid_kwargs=({"smooth_tau": 0.0}, {"smooth_tau": -1.0}, {"smooth_tau": _INF}),
        per_element=True,
        notes="the exact loss (default) has zero gradient almost everywhere, which gradcheck "
        "confirms; smooth_tau gives a trainable form",
    ),
    LossSpec(
        "signal_decay_robust",
        pair_example,
        invalid_kwargs=({"power": -0.5}, {"power": _NAN}),
    ),
    LossSpec(
        "regression_with_binned_classification",
        binned_example,
        invalid_kwargs=({"high": 0.0}, {"low": 2.0}, {"lam": -1.0}, {"low": _NAN}),
    ),
]
