"""Family E · preference-optimisation losses (the DPO family) on per-sequence log-probabilities."""

__all__: list[str] = []
