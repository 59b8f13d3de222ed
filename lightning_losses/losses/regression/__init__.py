"""Regression, quantile and time-series losses: real-valued predictions against real targets.

Pointwise losses (`pseudo_huber`, `scheduled_pseudo_huber`, `log_cosh`, `msle`, `mape`) return
one value per element with `reduction="none"` (the input's shape, as `torch.nn.MSELoss`); the
others return one value per sample (`pinball`: per sample and time step). Every class declares
`InputKind.REGRESSION` and has no class-index target (`target_arg` is `None`).
"""

__all__: list[str] = []
