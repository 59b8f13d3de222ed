"""Combining several objectives: loss-weighting modules and gradient aggregators."""

__all__: list[str] = []
