"""The scikit-learn digits images (8×8, 10 classes, 1797 samples) with injected label noise.

The data ship inside scikit-learn (`sklearn.datasets.load_digits`, from the UCI "Optical
Recognition of Handwritten Digits" set, CC BY 4.0), so nothing is downloaded; scikit-learn is
the `[vision]` extra (`pip install "lightning-losses[vision]"`), imported only when the data
are loaded. Label noise is injected into the *training* labels only; validation/test labels
stay clean. The training order is epoch-seeded
([EpochShuffleSampler][lightning_losses.data.sampling.EpochShuffleSampler]), so a resumed run
sees the same batches as an uninterrupted one.

For masked image modeling the digits also come as **images**
([load_digits_images][lightning_losses.data.digits.load_digits_images]): the 8×8 pixels scaled
to $[0, 1]$ and upscaled (bilinear) to e.g. 16×16 or 32×32, served as dict batches by
[DigitsImageDataModule][lightning_losses.data.digits.DigitsImageDataModule]
(the shared [ImageDataModule][lightning_losses.data.digits.ImageDataModule] layout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, TensorDataset

from lightning_losses.data.noise import NOISE_KINDS, inject_label_noise
from lightning_losses.data.sampling import epoch_shuffled_loader, eval_loader, require_setup
from lightning_losses.validation import check_choice, check_int, check_number

__all__ = [
    "DigitsImageDataModule",
    "DigitsSplits",
    "ImageDataModule",
    "ImageSplits",
    "NoisyDigitsDataModule",
    "load_digits_images",
    "load_digits_splits",
]

NUM_CLASSES = 10


@dataclass
class DigitsSplits:
    """Standardised features `[n, 64]` and labels; `noise_mask` marks corrupted train labels.

    Attributes:
        x_train: `[n_train, 64]` training features.
        y_train: `[n_train]` (noisy) training labels.
        y_train_clean: `[n_train]` training labels before the noise.
        noise_mask: `[n_train]` bool, True where the label was corrupted.
        x_val: validation features.
        y_val: clean validation labels.
        x_test: test features.
        y_test: clean test labels.
    """

    x_train: Tensor
    y_train: Tensor
    y_train_clean: Tensor
    noise_mask: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


def load_digits_splits(
    noise_rate: float = 0.0,
    noise_kind: str = "symmetric",
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
) -> DigitsSplits:
    """Shuffle (by `seed`), split train/val/test, standardise with train statistics, add noise.

    Args:
        noise_rate: fraction of corrupted training labels in $[0, 1)$.
        noise_kind: `"symmetric"` or `"asymmetric"` (pair flip `c -> c + 1`).
        seed: shuffle and noise seed.
        val_fraction: share of the samples in validation.
        test_fraction: share of the samples in test.

    Returns:
        The splits.

    Raises:
        ImportError: scikit-learn is missing (the `[vision]` extra).

    Example:
        >>> s = load_digits_splits(0.4, seed=0)
        >>> s.x_train.shape[1], round(s.noise_mask.float().mean().item(), 2)
        (64, 0.4)
    """
    g = torch.Generator().manual_seed(seed)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = _shuffled_splits(
        g, val_fraction, test_fraction
    )
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-3)

    def norm(t: Tensor) -> Tensor:
        return (t - mean) / std

    y_noisy, mask = inject_label_noise(
        y_train, noise_rate, NUM_CLASSES, kind=noise_kind, generator=g
    )
    return DigitsSplits(
        norm(x_train), y_noisy, y_train, mask, norm(x_val), y_val, norm(x_test), y_test
    )


def _raw_digits() -> tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # the [vision] extra
        raise ImportError(
            'the digits data ship with scikit-learn: pip install "lightning-losses[vision]"'
        ) from err

    data = load_digits()
    return (
        torch.tensor(data.data, dtype=torch.float32),
        torch.tensor(data.target, dtype=torch.long),
    )


def _shuffled_splits(
    g: torch.Generator, val_fraction: float, test_fraction: float
) -> tuple[tuple[Tensor, Tensor], ...]:
    # One permutation from `g` (then test, val, train), shared by the feature and image views.
    x, y = _raw_digits()
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    n_test = int(len(y) * test_fraction)
    n_val = int(len(y) * val_fraction)
    return (
        (x[n_test + n_val :], y[n_test + n_val :]),
        (x[n_test : n_test + n_val], y[n_test : n_test + n_val]),
        (x[:n_test], y[:n_test]),
    )


@dataclass
class ImageSplits:
    """Images `[n, C, H, W]` in $[0, 1]$ and integer labels, per split.

    Attributes:
        x_train: training images.
        y_train: training labels.
        x_val: validation images.
        y_val: validation labels.
        x_test: test images.
        y_test: test labels.
        num_classes: number of classes.
    """

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int


def load_digits_images(
    image_size: int = 32,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
) -> ImageSplits:
    r"""The digits as `[n, 1, S, S]` images in $[0, 1]$, upscaled bilinearly from 8×8.

    The split (same `seed`, same fractions) holds the same samples as
    [load_digits_splits][lightning_losses.data.digits.load_digits_splits]; the labels are clean.

    Args:
        image_size: side $S \ge 8$ of the output images (8 = the original pixels).
        seed: shuffle seed.
        val_fraction: share of the samples in validation.
        test_fraction: share of the samples in test.

    Returns:
        The splits.

    Raises:
        ValueError: `image_size < 8`.
        ImportError: scikit-learn is missing (the `[vision]` extra).

    Example:
        >>> s = load_digits_images(16, seed=0)
        >>> tuple(s.x_train.shape[1:]), float(s.x_train.min()) >= 0, float(s.x_train.max()) <= 1
        ((1, 16, 16), True, True)
    """
    check_int("image_size", image_size, low=8)
    g = torch.Generator().manual_seed(seed)
    splits = _shuffled_splits(g, val_fraction, test_fraction)

    def images(x: Tensor) -> Tensor:
        img = (x / 16.0).reshape(-1, 1, 8, 8)  # pixel values are 0..16
        if image_size != 8:
            img = F.interpolate(img, size=image_size, mode="bilinear", align_corners=False)
        return img.clamp(0.0, 1.0)

    (xtr, ytr), (xva, yva), (xte, yte) = splits
    return ImageSplits(images(xtr), ytr, images(xva), yva, images(xte), yte, NUM_CLASSES)


class _ImageDict(Dataset[dict[str, Tensor]]):
    """`{"image", "label", "index", "probe_fit"}` samples from image and label tensors."""

    def __init__(self, images: Tensor, labels: Tensor, probe_fit: bool = False) -> None:
        self.images, self.labels, self.probe_fit = images, labels, probe_fit

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {
            "image": self.images[i],
            "label": self.labels[i],
            "index": torch.tensor(i),
            "probe_fit": torch.tensor(self.probe_fit),
        }


class ImageDataModule(LightningDataModule):
    """Dict batches of images for masked image modeling, with a linear probe in evaluation.

    Training batches are `{"image" [B, C, H, W], "label" [B], "index" [B], "probe_fit" [B]}`
    in an epoch-seeded order
    ([EpochShuffleSampler][lightning_losses.data.sampling.EpochShuffleSampler]: a resumed run
    sees the same batches). The validation (test) loader yields the **training** images first,
    flagged `probe_fit = True` (the linear probe is fitted on their frozen features), then the
    validation (test) images (`probe_fit = False`, the probe is scored on them). Subclasses
    implement `build_splits`.

    Args:
        batch_size: training batch size.
        eval_batch_size: batch size of the validation/test loaders.
        seed: data seed (split, synthesis, order).
    """

    def __init__(self, batch_size: int = 128, eval_batch_size: int = 512, seed: int = 0) -> None:
        super().__init__()
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, low=1)
        self.seed = check_int("seed", seed)
        self.splits: ImageSplits | None = None

    def build_splits(self) -> ImageSplits:
        """The images and labels of the three splits (subclasses)."""
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        """Number of classes (after `setup`)."""
        return self._ready().num_classes

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = self.build_splits()

    def _ready(self) -> ImageSplits:
        return require_setup(self.splits, self)

    def train_dataloader(self) -> DataLoader:
        s = self._ready()
        return epoch_shuffled_loader(
            _ImageDict(s.x_train, s.y_train),
            batch_size=self.batch_size,
            seed=self.seed,
            trainer=self.trainer,
        )

    def _eval_loader(self, x: Tensor, y: Tensor) -> DataLoader:
        s = self._ready()
        data: ConcatDataset[dict[str, Tensor]] = ConcatDataset(
            [_ImageDict(s.x_train, s.y_train, probe_fit=True), _ImageDict(x, y)]
        )
        return eval_loader(data, batch_size=self.eval_batch_size)

    def val_dataloader(self) -> DataLoader:
        s = self._ready()
        return self._eval_loader(s.x_val, s.y_val)

    def test_dataloader(self) -> DataLoader:
        s = self._ready()
        return self._eval_loader(s.x_test, s.y_test)


class DigitsImageDataModule(ImageDataModule):
    """The digits as upscaled images (see `load_digits_images`), dict batches.

    Args:
        image_size: side of the upscaled images (8 = original; 16 or 32 for patch size 4).
        batch_size: training batch size.
        eval_batch_size: batch size of the validation/test loaders.
        seed: split and order seed.

    Example:
        >>> dm = DigitsImageDataModule(image_size=16, batch_size=4)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), dm.num_classes
        ((4, 1, 16, 16), 10)
    """

    def __init__(
        self, image_size: int = 32, batch_size: int = 128, eval_batch_size: int = 512, seed: int = 0
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.image_size = check_int("image_size", image_size, low=8)
        self.save_hyperparameters()

    def build_splits(self) -> ImageSplits:
        return load_digits_images(self.image_size, seed=self.seed)


class NoisyDigitsDataModule(LightningDataModule):
    """Digits with `noise_rate` label noise on the training split; clean val/test.

    Batches are `(x [B, 64], y [B])` tuples.

    Args:
        noise_rate: fraction of corrupted training labels in $[0, 1)$.
        noise_kind: `"symmetric"` or `"asymmetric"` (pair flip `c -> c+1`).
        batch_size: training batch size.
        seed: split + noise seed.

    Raises:
        TypeError: a non-numeric `noise_rate`, or a non-int `batch_size` / `seed`.
        ValueError: `noise_rate` outside $[0, 1)$, an unknown `noise_kind`, `batch_size < 1`.
    """

    num_classes = NUM_CLASSES
    num_features = 64

    def __init__(
        self,
        noise_rate: float = 0.4,
        noise_kind: str = "symmetric",
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.noise_rate = check_number(
            "noise_rate", noise_rate, low=0.0, high=1.0, high_inclusive=False
        )
        self.noise_kind = check_choice("noise_kind", noise_kind, NOISE_KINDS)
        self.batch_size = check_int("batch_size", batch_size, low=1)
        self.seed = check_int("seed", seed)
        self.save_hyperparameters()
        self.splits: DigitsSplits | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = load_digits_splits(self.noise_rate, self.noise_kind, seed=self.seed)

    def _ready(self) -> DigitsSplits:
        return require_setup(self.splits, self)

    def train_dataloader(self) -> DataLoader:
        s = self._ready()
        # Epoch-seeded order: a run resumed from a checkpoint sees the same batches.
        return epoch_shuffled_loader(
            TensorDataset(s.x_train, s.y_train),
            batch_size=self.batch_size,
            seed=self.seed,
            trainer=self.trainer,
        )

    def val_dataloader(self) -> DataLoader:
        s = self._ready()
        return eval_loader(TensorDataset(s.x_val, s.y_val), batch_size=512)

    def test_dataloader(self) -> DataLoader:
        s = self._ready()
        return eval_loader(TensorDataset(s.x_test, s.y_test), batch_size=512)
