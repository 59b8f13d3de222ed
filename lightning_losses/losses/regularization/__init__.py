"""Regularisers written as losses: terms added to a task loss that constrain *how* a model decides.

`energy_pointing` is the model-guidance energy loss (Rao et al., ICCV 2023, arXiv:2303.11932): it
pushes the positive part of an attribution map inside the annotated bounding boxes. Its inputs
are per-pixel attribution maps and box masks (`input_kind` is `InputKind.ATTRIBUTION`, so a
module built for logits and class indices refuses it when it is configured).
`sinkhorn_divergence` and `sinkhorn_alignment_loss` (functions, not registered: they take point
clouds of different sizes) align the feature distributions of several domains, as in
Feature-aligned N-BEATS (Lee et al., ICLR 2024, arXiv:2305.15196).
"""

__all__: list[str] = []
