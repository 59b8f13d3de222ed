r"""Synthetic "strokes on a blank background" images with known ink masks.

A controlled set for masked image modeling: each image holds a few thick, anti-aliased line
segments on a zero background, so a patch either contains ink (hard to reconstruct) or is blank
(trivial: under MAE's per-patch normalisation a blank patch has target 0). Hard-patch mining
should therefore pick inked patches; the ink mask (`pixel > 0.1`) is returned to measure that.

Each image's strokes share one orientation bin, the class label: bin $c \in \{0, \dots, K-1\}$
draws the angles from $[c\pi/K, (c+1)\pi/K)$, so a linear probe on frozen features has something
to learn. Stroke intensity at a pixel is $\mathrm{clip}(1 - (d - w/2)/a, 0, 1)$ for its distance
$d$ to the segment, width $w$ and anti-aliasing width $a = 1$ pixel; overlapping strokes take the
maximum, and the faint rim below the ink threshold (0.1) is cut to exactly 0. So a patch is either
exactly blank or contains ink: under per-patch normalisation a patch holding only a faint rim
would otherwise become a high-contrast, hard-to-predict target without counting as ink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_losses.data.digits import ImageDataModule, ImageSplits
from lightning_losses.validation import check_int, check_number

__all__ = ["Strokes", "StrokesDataModule", "synthetic_strokes"]

INK_THRESHOLD = 0.1


@dataclass
class Strokes:
    """Synthetic stroke images.

    Attributes:
        images: `[n, 1, S, S]` in $[0, 1]$.
        ink: `[n, 1, S, S]` bool, `images > 0.1`.
        labels: `[n]` orientation bins.
    """

    images: Tensor
    ink: Tensor
    labels: Tensor


def synthetic_strokes(
    n: int,
    image_size: int = 28,
    *,
    num_classes: int = 4,
    strokes: tuple[int, int] = (2, 3),
    length: tuple[float, float] = (0.35, 0.7),
    width: float = 2.0,
    seed: int = 0,
) -> Strokes:
    """Draw `n` images of a few strokes each (see the module docstring).

    Args:
        n: number of images.
        image_size: side $S$.
        num_classes: orientation bins (the labels).
        strokes: `(min, max)` strokes per image, inclusive.
        length: `(min, max)` stroke length as a fraction of $S$.
        width: stroke width in pixels.
        seed: generator seed (same seed, same images).

    Returns:
        The [Strokes][lightning_losses.data.strokes.Strokes].

    Raises:
        ValueError: non-positive sizes or an empty range.

    Example:
        >>> from lightning_losses.data.strokes import synthetic_strokes
        >>> s = synthetic_strokes(8, 28, seed=0)
        >>> tuple(s.images.shape), bool(s.ink.any()), s.labels.max().item() < 4
        ((8, 1, 28, 28), True, True)
    """
    n = check_int("n", n, low=0)
    size = check_int("image_size", image_size, low=4)
    num_classes = check_int("num_classes", num_classes, low=1)
    lo, hi = (check_int(f"strokes[{i}]", v, low=1) for i, v in enumerate(strokes))
    if hi < lo:
        raise ValueError(f"strokes must be (min, max) with min ≤ max, got {strokes}")
    len_lo, len_hi = (check_number(f"length[{i}]", v, low=0.0) for i, v in enumerate(length))
    if len_hi < len_lo:
        raise ValueError(f"length must be (min, max) with min ≤ max, got {length}")
    width = check_number("width", width, low=0.0, low_inclusive=False)
    g = torch.Generator().manual_seed(seed)
    k = hi
    labels = torch.randint(num_classes, (n,), generator=g)
    count = torch.randint(lo, hi + 1, (n,), generator=g)
    angle = (labels[:, None] + torch.rand(n, k, generator=g)) * (math.pi / num_classes)
    half = 0.5 * size * (len_lo + (len_hi - len_lo) * torch.rand(n, k, generator=g))
    margin = 0.15 * size
    centre = margin + (size - 2 * margin) * torch.rand(n, k, 2, generator=g)
    direction = torch.stack([angle.cos(), angle.sin()], dim=-1)
    a = centre - half[..., None] * direction  # [n, k, 2] endpoints (x, y)
    b = centre + half[..., None] * direction
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    pix = torch.stack([xx, yy], dim=-1).reshape(1, 1, -1, 2)  # [1, 1, S², 2]
    ab = (b - a)[:, :, None]
    t = ((pix - a[:, :, None]) * ab).sum(-1) / ab.pow(2).sum(-1).clamp_min(1e-9)
    closest = a[:, :, None] + t.clamp(0, 1)[..., None] * ab
    dist = (pix - closest).norm(dim=-1)  # [n, k, S²]
    value = (1 - (dist - width / 2)).clamp(0, 1)
    active = torch.arange(k)[None, :, None] < count[:, None, None]
    images = torch.where(active, value, 0.0).amax(1).reshape(n, 1, size, size)
    images = torch.where(images > INK_THRESHOLD, images, 0.0)  # no faint rim: blank or ink
    return Strokes(images, images > INK_THRESHOLD, labels)


class StrokesDataModule(ImageDataModule):
    """Synthetic strokes as dict batches.

    The [ImageDataModule][lightning_losses.data.digits.ImageDataModule] layout: training batches
    `{"image", "label", "index", "probe_fit"}`, evaluation loaders that serve the training images
    first (for the linear probe).

    Args:
        num_train: training images.
        num_val: validation images.
        num_test: test images.
        image_size: side of the images.
        num_classes: orientation bins.
        batch_size: training batch size.
        eval_batch_size: batch size of the validation/test loaders.
        seed: synthesis and order seed (the splits use `seed`, `seed + 1`, `seed + 2`).

    Example:
        >>> dm = StrokesDataModule(num_train=16, num_val=8, num_test=8, batch_size=4)
        >>> dm.setup("fit")
        >>> tuple(next(iter(dm.train_dataloader()))["image"].shape)
        (4, 1, 28, 28)
    """

    def __init__(
        self,
        num_train: int = 2048,
        num_val: int = 512,
        num_test: int = 512,
        image_size: int = 28,
        num_classes: int = 4,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        # `num_classes` is the base's property (read from the built splits).
        self.image_size, self.orientation_bins = image_size, num_classes
        self.save_hyperparameters()

    def build_splits(self) -> ImageSplits:
        parts = [
            synthetic_strokes(
                count, self.image_size, num_classes=self.orientation_bins, seed=self.seed + i
            )
            for i, count in enumerate((self.num_train, self.num_val, self.num_test))
        ]
        return ImageSplits(
            parts[0].images,
            parts[0].labels,
            parts[1].images,
            parts[1].labels,
            parts[2].images,
            parts[2].labels,
            self.orientation_bins,
        )
