"""Family E · preference-optimisation losses (the DPO family) on per-sequence log-probabilities.

Every loss takes the summed response log-probs of the policy and of a frozen reference for the
chosen and rejected response of each pair, `[N]` each (from
[sequence_log_probs][lightning_losses.functional.sequence_log_probs]), plus the response token
counts where a variant normalises by length; `reduction="none"` returns one loss per pair. The
reference log-probs are constants (detached). `input_kind` is `InputKind.PREFERENCE`,
`target_arg` is `None`.
"""

from lightning_losses.losses.preference.dpo import (
    ConservativeDPOLoss,
    DPOLoss,
    RobustDPOLoss,
    RPOLoss,
    conservative_dpo_loss,
    dpo_loss,
    implicit_rewards,
    robust_dpo_loss,
    rpo_loss,
)
from lightning_losses.losses.preference.ipo import IPOLoss, ipo_loss
from lightning_losses.losses.preference.logprobs import sequence_log_probs

__all__ = [
    "ConservativeDPOLoss",
    "DPOLoss",
    "IPOLoss",
    "RPOLoss",
    "RobustDPOLoss",
    "conservative_dpo_loss",
    "dpo_loss",
    "implicit_rewards",
    "ipo_loss",
    "robust_dpo_loss",
    "rpo_loss",
    "sequence_log_probs",
]
