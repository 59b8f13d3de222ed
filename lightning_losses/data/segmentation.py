r"""Synthetic segmentation sets with per-pixel ground truth known by construction.

Two offline sets of single-channel canvases `[n, 1, S, S]` in $[0, 1]$ with class-index masks
`[n, S, S]` (0 = background), built so that the background dominates and some classes are rare:

- **Digit canvases**
  ([synthetic_digit_canvases][lightning_losses.data.segmentation.synthetic_digit_canvases]): a
  few scikit-learn digits (8×8, bundled in scikit-learn, nothing downloaded) upscaled
  bilinearly to a random side and pasted at random, non-overlapping places. A pixel belongs to
  the digit's class group where the upscaled ink is $\ge$ `ink_threshold`; with `ignore_index`
  the faint anti-aliased rim ($0.1 \le$ ink $<$ `ink_threshold`, where the label is a matter of
  convention) is marked `ignore_index` instead of background. Each object's group is drawn with
  `class_probs`, so the default makes the last group rare. Train, validation and test canvases
  use disjoint digit images (the split of
  [load_digits_images][lightning_losses.data.digits.load_digits_images]).
- **Shapes** ([synthetic_shapes][lightning_losses.data.segmentation.synthetic_shapes]): filled
  circles, squares and triangles (classes 1, 2, 3) of random size, position and intensity.

Both add Gaussian pixel noise (`noise`, clipped to $[0, 1]$) to the images only: the masks stay
exact. Same arguments and seed, same data.
[SegmentationDataModule][lightning_losses.data.segmentation.SegmentationDataModule] serves
either set as `{"image", "mask", "index"}` dict batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_losses.data.digits import load_digits_images
from lightning_losses.data.sampling import epoch_shuffled_loader, eval_loader, require_setup
from lightning_losses.validation import check_choice, check_ignore_index, check_int, check_number

__all__ = [
    "DEFAULT_DIGIT_GROUPS",
    "SegmentationData",
    "SegmentationDataModule",
    "synthetic_digit_canvases",
    "synthetic_shapes",
]

DEFAULT_DIGIT_GROUPS: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3), (4, 5, 6), (7, 8, 9))
"""Digit classes of the foreground classes 1, 2, 3 of the digit canvases."""
SHAPE_NAMES: tuple[str, ...] = ("circle", "square", "triangle")
DATASETS = ("digits", "shapes")
RIM_LEVEL = 0.1  # upscaled ink below this is background in every convention


@dataclass
class SegmentationData:
    """Images and per-pixel class masks.

    Attributes:
        images: `[n, 1, S, S]` float in $[0, 1]$.
        masks: `[n, S, S]` int64 class indices (0 = background; `ignore_index` where given).
        class_names: one name per class, background first.
    """

    images: Tensor
    masks: Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.class_names)


def _check_probs(class_probs: Sequence[float] | None, k: int) -> Tensor:
    if class_probs is None:
        return torch.full((k,), 1.0 / k)
    if isinstance(class_probs, (str, bytes)) or not isinstance(class_probs, Sequence):
        raise TypeError(f"class_probs must be a sequence of {k} numbers, got {class_probs!r}")
    if len(class_probs) != k:
        raise ValueError(
            f"class_probs must give one probability per foreground class ({k}), "
            f"got {len(class_probs)}"
        )
    probs = torch.tensor(
        [check_number(f"class_probs[{i}]", p, low=0.0) for i, p in enumerate(class_probs)]
    )
    if probs.sum() <= 0:
        raise ValueError(f"class_probs must not be all zero, got {list(class_probs)}")
    return probs / probs.sum()


def _check_range(name: str, value: Sequence[int], low: int, high: int) -> tuple[int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of ints, got {value!r}")
    lo, hi = (check_int(f"{name}[{i}]", v, low=low, high=high) for i, v in enumerate(value))
    if hi < lo:
        raise ValueError(f"{name} must be (min, max) with min ≤ max, got {tuple(value)}")
    return lo, hi


def _place(
    sizes: list[int], canvas: int, g: torch.Generator, tries: int = 50
) -> list[tuple[int, int, int]]:
    """Top-left corners for squares of the given sides, no two overlapping (rejection sampling).

    An object that finds no free place in `tries` draws is left out, so a canvas may hold fewer.
    """
    boxes: list[tuple[int, int, int]] = []
    for side in sizes:
        for _ in range(tries):
            y, x = (int(v) for v in torch.randint(canvas - side + 1, (2,), generator=g))
            # One free pixel between objects: every label region stays its own blob.
            if all(
                y + side < by or by + bs < y or x + side < bx or bx + bs < x for by, bx, bs in boxes
            ):
                boxes.append((y, x, side))
                break
    return boxes


def synthetic_digit_canvases(
    n: int,
    image_size: int = 64,
    *,
    split: str = "train",
    objects: Sequence[int] = (1, 4),
    digit_size: Sequence[int] = (12, 24),
    digit_groups: Sequence[Sequence[int]] = DEFAULT_DIGIT_GROUPS,
    class_probs: Sequence[float] | None = (0.6, 0.3, 0.1),
    ink_threshold: float = 0.3,
    ignore_index: int | None = None,
    noise: float = 0.05,
    seed: int = 0,
) -> SegmentationData:
    r"""Canvases of upscaled scikit-learn digits with per-pixel class-group labels.

    See the module docstring. Class $c \ge 1$ is the digit group `digit_groups[c - 1]`; an
    object's group is drawn with `class_probs`, then its digit image uniformly from the split's
    images of that group.

    Args:
        n: number of canvases.
        image_size: canvas side $S$.
        split: which digit images to paste: `"train"`, `"val"` or `"test"` (disjoint sets).
        objects: `(min, max)` digits per canvas, inclusive (fewer when they do not fit).
        digit_size: `(min, max)` side in pixels of an upscaled digit, inclusive.
        digit_groups: the digit classes of each foreground class; disjoint, within 0..9.
        class_probs: probability of each foreground class per object (normalised); `None` =
            uniform.
        ink_threshold: upscaled ink level (in $(0.1, 1)$) from which a pixel is foreground.
        ignore_index: label of the anti-aliased rim (ink in $[0.1,$ `ink_threshold`$)$);
            `None` = the rim is background.
        noise: standard deviation of the Gaussian pixel noise on the images.
        seed: generator seed (same seed, same canvases).

    Returns:
        The [SegmentationData][lightning_losses.data.segmentation.SegmentationData], classes
        `("background", "digits 0-3", ...)`.

    Raises:
        TypeError: a wrongly typed argument.
        ValueError: a value out of range, overlapping or empty digit groups, a `digit_size`
            larger than the canvas, or an `ignore_index` that is a class index.
        ImportError: scikit-learn is missing (the `[vision]` extra).

    Example:
        >>> from lightning_losses.data.segmentation import synthetic_digit_canvases
        >>> d = synthetic_digit_canvases(4, 32, digit_size=(10, 14), seed=0)
        >>> tuple(d.images.shape), tuple(d.masks.shape), d.num_classes
        ((4, 1, 32, 32), (4, 32, 32), 4)
        >>> bool((d.masks == 0).float().mean() > 0.5)   # background dominates
        True
    """
    n = check_int("n", n, low=0)
    size = check_int("image_size", image_size, low=8)
    check_choice("split", split, ("train", "val", "test"))
    lo, hi = _check_range("objects", objects, 0, 10_000)
    side_lo, side_hi = _check_range("digit_size", digit_size, 4, size)
    if isinstance(digit_groups, (str, bytes)) or not isinstance(digit_groups, Sequence):
        raise TypeError(f"digit_groups must be a sequence of digit tuples, got {digit_groups!r}")
    groups = [
        tuple(check_int(f"digit_groups[{i}]", d, low=0, high=9) for d in group)
        for i, group in enumerate(digit_groups)
    ]
    flat = [d for group in groups for d in group]
    if not groups or any(not group for group in groups) or len(set(flat)) != len(flat):
        raise ValueError(f"digit_groups must be non-empty and disjoint, got {digit_groups!r}")
    probs = _check_probs(class_probs, len(groups))
    threshold = check_number(
        "ink_threshold", ink_threshold, low=RIM_LEVEL, high=1.0, low_inclusive=False
    )
    ignore = check_ignore_index(ignore_index)
    if ignore is not None and 0 <= ignore <= len(groups):
        raise ValueError(
            f"ignore_index must not be a class index (0..{len(groups)}), got {ignore_index}"
        )
    noise = check_number("noise", noise, low=0.0)

    splits = load_digits_images(8, seed=0)
    source = {
        "train": (splits.x_train, splits.y_train),
        "val": (splits.x_val, splits.y_val),
        "test": (splits.x_test, splits.y_test),
    }[split]
    pool = [torch.nonzero(torch.isin(source[1], torch.tensor(group))).flatten() for group in groups]

    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        count = int(torch.randint(lo, hi + 1, (1,), generator=g))
        sides = torch.randint(side_lo, side_hi + 1, (count,), generator=g).tolist()
        for y, x, side in _place(sides, size, g):
            cls = int(torch.multinomial(probs, 1, generator=g)) + 1
            members = pool[cls - 1]
            digit = source[0][members[int(torch.randint(len(members), (1,), generator=g))]]
            ink = F.interpolate(digit[None], size=side, mode="bilinear", align_corners=False)[0, 0]
            ink = ink.clamp(0.0, 1.0)
            images[i, 0, y : y + side, x : x + side] = ink
            region = masks[i, y : y + side, x : x + side]
            region[ink >= threshold] = cls
            if ignore is not None:
                region[(ink >= RIM_LEVEL) & (ink < threshold)] = ignore
    names = ("background", *(_group_name(group) for group in groups))
    return SegmentationData(_add_noise(images, noise, g), masks, names)


def _group_name(group: tuple[int, ...]) -> str:
    ordered = sorted(group)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"digits {ordered[0]}-{ordered[-1]}"
    return "digits " + ",".join(str(d) for d in ordered)


def _add_noise(images: Tensor, noise: float, g: torch.Generator) -> Tensor:
    if noise == 0:
        return images
    return (images + noise * torch.randn(images.shape, generator=g)).clamp(0.0, 1.0)


def synthetic_shapes(
    n: int,
    image_size: int = 64,
    *,
    objects: Sequence[int] = (1, 4),
    shape_size: Sequence[int] = (8, 20),
    class_probs: Sequence[float] | None = (0.6, 0.3, 0.1),
    noise: float = 0.05,
    seed: int = 0,
) -> SegmentationData:
    r"""Canvases of filled circles, squares and triangles (classes 1, 2, 3) on a blank background.

    Each shape fills a random non-overlapping box of side $s$ (drawn from `shape_size`): a disc
    of diameter $s$, the $s \times s$ square, or the upright triangle with the box's bottom edge
    as base and apex at the top centre (a pixel is inside when its centre is). The shape's pixels
    take one random intensity in $[0.4, 1]$.

    Args:
        n: number of canvases.
        image_size: canvas side $S$.
        objects: `(min, max)` shapes per canvas, inclusive (fewer when they do not fit).
        shape_size: `(min, max)` box side in pixels, inclusive.
        class_probs: probability of circle, square, triangle per object (normalised); `None` =
            uniform.
        noise: standard deviation of the Gaussian pixel noise on the images.
        seed: generator seed (same seed, same canvases).

    Returns:
        The [SegmentationData][lightning_losses.data.segmentation.SegmentationData], classes
        `("background", "circle", "square", "triangle")`.

    Raises:
        TypeError: a wrongly typed argument.
        ValueError: a value out of range or a `shape_size` larger than the canvas.

    Example:
        >>> from lightning_losses.data.segmentation import synthetic_shapes
        >>> d = synthetic_shapes(4, 32, shape_size=(6, 12), seed=0)
        >>> tuple(d.images.shape), d.class_names[1:]
        ((4, 1, 32, 32), ('circle', 'square', 'triangle'))
    """
    n = check_int("n", n, low=0)
    size = check_int("image_size", image_size, low=8)
    lo, hi = _check_range("objects", objects, 0, 10_000)
    side_lo, side_hi = _check_range("shape_size", shape_size, 3, size)
    probs = _check_probs(class_probs, len(SHAPE_NAMES))
    noise = check_number("noise", noise, low=0.0)

    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        count = int(torch.randint(lo, hi + 1, (1,), generator=g))
        sides = torch.randint(side_lo, side_hi + 1, (count,), generator=g).tolist()
        for y, x, side in _place(sides, size, g):
            cls = int(torch.multinomial(probs, 1, generator=g)) + 1
            level = 0.4 + 0.6 * float(torch.rand((), generator=g))
            inside = _shape_mask(SHAPE_NAMES[cls - 1], side)
            images[i, 0, y : y + side, x : x + side][inside] = level
            masks[i, y : y + side, x : x + side][inside] = cls
    return SegmentationData(_add_noise(images, noise, g), masks, ("background", *SHAPE_NAMES))


def _shape_mask(name: str, side: int) -> Tensor:
    # Pixel centres in box coordinates [0, side].
    c = torch.arange(side, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    if name == "square":
        return torch.ones(side, side, dtype=torch.bool)
    if name == "circle":
        r = side / 2
        return (yy - r).pow(2) + (xx - r).pow(2) <= r * r
    # Upright triangle: apex (side/2, 0), base from (0, side) to (side, side).
    return (xx - side / 2).abs() <= yy / 2


class _SegmentationDict(Dataset[dict[str, Tensor]]):
    """`{"image", "mask", "index"}` samples."""

    def __init__(self, data: SegmentationData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.masks)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"image": self.data.images[i], "mask": self.data.masks[i], "index": torch.tensor(i)}


class SegmentationDataModule(LightningDataModule):
    """Digit canvases or shapes (see the module docstring) as dict batches.

    Batches are `{"image": [B, 1, S, S], "mask": [B, S, S], "index": [B]}` (`index`: position
    in the split). Training order is epoch-seeded, so a resumed run replays its batches. The
    three splits are drawn with seeds `seed`, `seed + 1`, `seed + 2` (and, for the digits, from
    disjoint digit images).

    Args:
        dataset: `"digits"` (digit canvases) or `"shapes"`.
        num_train: training canvases.
        num_val: validation canvases.
        num_test: test canvases.
        image_size: canvas side (a multiple of the network's output stride).
        objects: `(min, max)` objects per canvas.
        object_size: `(min, max)` object side in pixels.
        class_probs: probability of each foreground class per object; `None` = uniform.
        ignore_index: digits only: label of the anti-aliased rim (`None` = background).
        noise: Gaussian pixel-noise level.
        batch_size: training batch size.
        eval_batch_size: batch size of the validation/test loaders.
        seed: data and order seed.

    Raises:
        TypeError: a wrongly typed argument.
        ValueError: an unknown `dataset`, a value out of range, or `ignore_index` with shapes.

    Example:
        >>> dm = SegmentationDataModule(num_train=8, num_val=4, num_test=4, image_size=32,
        ...                             object_size=(8, 14), batch_size=4)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["mask"].shape), dm.num_classes
        ((4, 1, 32, 32), (4, 32, 32), 4)
    """

    def __init__(
        self,
        dataset: str = "digits",
        num_train: int = 1024,
        num_val: int = 256,
        num_test: int = 256,
        image_size: int = 64,
        objects: tuple[int, int] = (1, 4),
        object_size: tuple[int, int] = (12, 24),
        class_probs: tuple[float, ...] | None = (0.6, 0.3, 0.1),
        ignore_index: int | None = None,
        noise: float = 0.05,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_choice("dataset", dataset, DATASETS)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            check_int(name, value, low=1)
        check_int("batch_size", batch_size, low=1)
        check_int("eval_batch_size", eval_batch_size, low=1)
        check_int("seed", seed)
        size = check_int("image_size", image_size, low=8)
        _check_range("object_size", object_size, 4, size)
        if dataset == "shapes" and ignore_index is not None:
            raise ValueError("ignore_index applies to dataset='digits' only (shapes have no rim)")
        self.save_hyperparameters()
        self.splits: tuple[SegmentationData, SegmentationData, SegmentationData] | None = None
        # Build one image now: every other argument is checked here, not at setup.
        self._build(1, "train", seed)

    def _build(self, n: int, split: str, seed: int) -> SegmentationData:
        hp = self.hparams
        common: dict[str, Any] = dict(
            objects=tuple(hp["objects"]),
            class_probs=None if hp["class_probs"] is None else tuple(hp["class_probs"]),
            noise=hp["noise"],
            seed=seed,
        )
        if hp["dataset"] == "digits":
            return synthetic_digit_canvases(
                n,
                hp["image_size"],
                split=split,
                digit_size=tuple(hp["object_size"]),
                ignore_index=hp["ignore_index"],
                **common,
            )
        return synthetic_shapes(
            n,
            hp["image_size"],
            shape_size=tuple(hp["object_size"]),
            **common,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            hp = self.hparams
            seed = hp["seed"]
            self.splits = (
                self._build(hp["num_train"], "train", seed),
                self._build(hp["num_val"], "val", seed + 1),
                self._build(hp["num_test"], "test", seed + 2),
            )

    def _ready(self) -> tuple[SegmentationData, SegmentationData, SegmentationData]:
        return require_setup(self.splits, self)

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return self.class_names.__len__()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names, background first."""
        if self.hparams["dataset"] == "shapes":
            return ("background", *SHAPE_NAMES)
        return ("background", *(_group_name(tuple(g)) for g in DEFAULT_DIGIT_GROUPS))

    def train_dataloader(self) -> DataLoader:
        return epoch_shuffled_loader(
            _SegmentationDict(self._ready()[0]),
            batch_size=self.hparams["batch_size"],
            seed=self.hparams["seed"],
            trainer=self.trainer,
        )

    def val_dataloader(self) -> DataLoader:
        return eval_loader(
            _SegmentationDict(self._ready()[1]), batch_size=self.hparams["eval_batch_size"]
        )

    def test_dataloader(self) -> DataLoader:
        return eval_loader(
            _SegmentationDict(self._ready()[2]), batch_size=self.hparams["eval_batch_size"]
        )
