"""Label-noise injection with a known ground-truth noise mask (for benchmarks and recipes).

Symmetric noise: a fraction `rate` of labels is replaced by a *different* class drawn
uniformly. Asymmetric (class-flip) noise: a fraction `rate` of each class is flipped to a fixed
other class, `y -> (y + 1) mod C` by default (the pair-flip protocol of the label-noise
literature; pass `flip_map` for a dataset-specific mapping such as CIFAR-10's truck→automobile).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_losses.validation import check_choice, check_int, check_number, check_tensor

__all__ = ["inject_label_noise"]

NOISE_KINDS = ("symmetric", "asymmetric")


def inject_label_noise(
    labels: Tensor,
    rate: float,
    num_classes: int,
    *,
    kind: str = "symmetric",
    flip_map: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt `labels` and return `(noisy_labels, noise_mask)`.

    Exactly `round(rate * n)` labels are corrupted (per class for `asymmetric`), and every
    corrupted label differs from the clean one, so `noise_mask.float().mean()` is the realised
    noise rate.

    Args:
        labels: clean class indices `[n]`.
        rate: fraction of corrupted labels in `[0, 1)`.
        num_classes: number of classes `C ≥ 2`.
        kind: `"symmetric"` or `"asymmetric"`.
        flip_map: `[C]` target class of each class for `asymmetric` (default `(c+1) % C`).
        generator: RNG for reproducibility.

    Returns:
        `(noisy_labels [n], noise_mask [n] bool)`.

    Raises:
        TypeError: `rate` not a real number, `num_classes` not an int, `labels` or `flip_map`
            not a tensor.
        ValueError: an unknown `kind`, `rate` outside $[0, 1)$, fewer than 2 classes, or a
            `flip_map` that is not a `[C]` map to different classes.

    Example:
        >>> import torch
        >>> y = torch.arange(10) % 5
        >>> noisy, mask = inject_label_noise(y, 0.4, 5, generator=torch.Generator().manual_seed(0))
        >>> int(mask.sum()), bool((noisy[mask] != y[mask]).all())
        (4, True)
    """
    check_choice("kind", kind, NOISE_KINDS)
    rate = check_number("rate", rate, low=0.0, high=1.0, high_inclusive=False)
    num_classes = check_int("num_classes", num_classes, low=2)
    labels = check_tensor("labels", labels).long()
    noisy = labels.clone()
    mask = torch.zeros_like(labels, dtype=torch.bool)
    if kind == "symmetric":
        n_noisy = round(rate * labels.numel())
        idx = torch.randperm(labels.numel(), generator=generator)[:n_noisy]
        # Shift by 1..C-1 so the new label is always a different class, uniformly.
        shift = torch.randint(1, num_classes, (n_noisy,), generator=generator)
        noisy[idx] = (labels[idx] + shift) % num_classes
        mask[idx] = True
        return noisy, mask
    if flip_map is None:
        fmap = (torch.arange(num_classes) + 1) % num_classes
    else:
        fmap = check_tensor("flip_map", flip_map, floating=False)
    if fmap.shape != (num_classes,) or bool((fmap == torch.arange(num_classes)).any()):
        raise ValueError("flip_map must have shape [C] and map every class to a different class")
    for c in range(num_classes):
        members = (labels == c).nonzero().squeeze(1)
        n_flip = round(rate * members.numel())
        chosen = members[torch.randperm(members.numel(), generator=generator)[:n_flip]]
        noisy[chosen] = fmap[c]
        mask[chosen] = True
    return noisy, mask
