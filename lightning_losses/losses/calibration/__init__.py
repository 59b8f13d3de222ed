"""Calibration losses: classification losses aimed at calibrated confidences, one per module.

`dual_focal` (dual focal loss) and `encouraging` (encouraging loss). Layout only: the classes
are public in [lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
