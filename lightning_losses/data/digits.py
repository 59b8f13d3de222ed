"""The scikit-learn digits images (8×8, 10 classes, 1797 samples) with injected label noise.

The data ship inside scikit-learn (`sklearn.datasets.load_digits`, from the UCI "Optical
Recognition of Handwritten Digits" set, CC BY 4.0), so nothing is downloaded; scikit-learn is
the `[vision]` extra (`pip install "lightning-losses[vision]"`), imported only when the data
are loaded. Label noise is injected into the *training* labels only; validation/test labels
stay clean. The training order is epoch-seeded
([EpochShuffleSampler][lightning_losses.data.sampling.EpochShuffleSampler]), so a resumed run
sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.data.noise import inject_label_noise
from lightning_losses.data.sampling import EpochShuffleSampler

__all__ = ["DigitsSplits", "NoisyDigitsDataModule", "load_digits_splits"]

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
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # the [vision] extra
        raise ImportError(
            'the digits data ship with scikit-learn: pip install "lightning-losses[vision]"'
        ) from err

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    n_test = int(len(y) * test_fraction)
    n_val = int(len(y) * val_fraction)
    x_test, y_test = x[:n_test], y[:n_test]
    x_val, y_val = x[n_test : n_test + n_val], y[n_test : n_test + n_val]
    x_train, y_train = x[n_test + n_val :], y[n_test + n_val :]
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-3)

    def norm(t: Tensor) -> Tensor:
        return (t - mean) / std

    y_noisy, mask = inject_label_noise(
        y_train, noise_rate, NUM_CLASSES, kind=noise_kind, generator=g
    )
    return DigitsSplits(
        norm(x_train), y_noisy, y_train, mask, norm(x_val), y_val, norm(x_test), y_test
    )


class NoisyDigitsDataModule(LightningDataModule):
    """Digits with `noise_rate` label noise on the training split; clean val/test.

    Batches are `(x [B, 64], y [B])` tuples.

    Args:
        noise_rate: fraction of corrupted training labels in $[0, 1)$.
        noise_kind: `"symmetric"` or `"asymmetric"` (pair flip `c -> c+1`).
        batch_size: training batch size.
        seed: split + noise seed.
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
        self.save_hyperparameters()
        self.splits: DigitsSplits | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits is None:
            self.splits = load_digits_splits(
                self.hparams.noise_rate, self.hparams.noise_kind, seed=self.hparams.seed
            )

    def train_dataloader(self) -> DataLoader:
        s = self.splits
        # Epoch-seeded order: a run resumed from a checkpoint sees the same batches.
        sampler = EpochShuffleSampler(len(s.y_train), seed=self.hparams.seed)
        return DataLoader(
            TensorDataset(s.x_train, s.y_train), batch_size=self.hparams.batch_size, sampler=sampler
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.splits.x_val, self.splits.y_val), batch_size=512)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.splits.x_test, self.splits.y_test), batch_size=512)
