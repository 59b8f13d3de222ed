r"""Label-noise-robust classification losses, one loss per module.

GCE, comp-sum, normalized CE / focal, reverse CE, probability MAE, symmetric CE,
Active-Passive Loss and LDR-KL. Each computes $\log p_y$ through the one shared helper
`ClassificationBatch.log_p_target`. Layout only: the classes are public in
[lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
