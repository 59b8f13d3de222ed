"""Classification losses: cross-entropy and its modern variants, one loss (or group) per module.

`ce` (cross-entropy, label smoothing), `poly` (Poly-1 / Poly-N), `focal` (softmax focal, sigmoid
focal, Poly-1 sigmoid focal), `squentropy`, `stablemax` (StableMax CE and `log_stablemax`),
`logit_adjusted`, `one_vs_rest` and `spherical_z`. Layout only: the classes are public in
[lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
