"""Reconstruction losses: predicted values regressed on targets of the same shape.

`norm_pix` is the per-patch MSE of masked autoencoders on per-patch normalised pixels (He et al.,
CVPR 2022, arXiv:2111.06377). With `reduction="none"` it returns one loss per patch `[N, L]`, so
a module averages each image's masked patches (`LossMixin.compute_loss(..., element_mask=mask)`).
The targets are real values, not class indices (`input_kind` is `InputKind.REGRESSION`,
`target_arg` is `None`).
"""

__all__: list[str] = []
