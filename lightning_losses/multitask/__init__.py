"""Combining several objectives: loss-weighting modules and gradient aggregators.

Aggregators are Gramian weightings (`upgrad_weights`, `mgda_weights`, ...): pure functions of the
`[m, m]` Gramian of the per-task Jacobian; `aggregate(jacobian, method)` applies one. The callback
that uses them inside a Lightning run is `lightning_losses.callbacks.GradientAggregation`.
"""

from lightning_losses.multitask.aggregators import (
    AGGREGATORS,
    aggregate,
    aggregator_weights,
    cagrad_weights,
    config_weights,
    dual_cone_weights,
    gramian,
    mean_weights,
    mgda_weights,
    nash_mtl_weights,
    pcgrad_weights,
    per_sample_jacobian,
    upgrad_weights,
)
from lightning_losses.multitask.momentum import MomentumConFIG
from lightning_losses.multitask.weighting import (
    GradNorm,
    UncertaintyWeighting,
    dwa_weights,
    gradnorm_update,
)

__all__ = [
    "AGGREGATORS",
    "GradNorm",
    "MomentumConFIG",
    "UncertaintyWeighting",
    "aggregate",
    "aggregator_weights",
    "cagrad_weights",
    "config_weights",
    "dual_cone_weights",
    "dwa_weights",
    "gradnorm_update",
    "gramian",
    "mean_weights",
    "mgda_weights",
    "nash_mtl_weights",
    "pcgrad_weights",
    "per_sample_jacobian",
    "upgrad_weights",
]
