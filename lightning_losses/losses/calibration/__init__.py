"""Family A · calibration: classification losses aimed at calibrated confidences, one per module.

`dual_focal` (dual focal loss) and `encouraging` (encouraging loss).
"""

from lightning_losses.losses.calibration.dual_focal import DualFocalLoss, dual_focal_loss
from lightning_losses.losses.calibration.encouraging import EncouragingLoss, encouraging_loss

__all__ = ["DualFocalLoss", "EncouragingLoss", "dual_focal_loss", "encouraging_loss"]
