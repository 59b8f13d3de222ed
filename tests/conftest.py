"""Test-session configuration shared by every test."""

from __future__ import annotations

import logging
import os

from hypothesis import HealthCheck, settings

# Property tests are derandomised in CI so a run is reproducible; locally they explore new seeds.
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# Lightning's INFO banners (GPU available, model summary) drown the test output.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
