"""Preference-optimisation losses (the DPO family) on per-sequence log-probabilities.

Every loss takes the summed response log-probs of the policy and of a frozen reference for the
chosen and rejected response of each pair, `[N]` each (from
[sequence_log_probs][lightning_losses.functional.sequence_log_probs]), plus the response token
counts where a variant normalises by length; `reduction="none"` returns one loss per pair. The
reference log-probs are constants (detached). `input_kind` is `InputKind.PREFERENCE`,
`target_arg` is `None`. Layout only: the classes are public in [lightning_losses.losses][], the
functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
