"""DataModules and synthetic data with known ground truth (noise masks)."""

from lightning_losses.data.digits import (
    DigitsImageDataModule,
    ImageDataModule,
    NoisyDigitsDataModule,
    load_digits_images,
    load_digits_splits,
)
from lightning_losses.data.interactions import (
    InteractionData,
    InteractionDataModule,
    load_interactions,
    synthetic_interactions,
)
from lightning_losses.data.noise import inject_label_noise
from lightning_losses.data.preference import PreferenceDataModule, synthetic_preference_pairs
from lightning_losses.data.segmentation import (
    SegmentationDataModule,
    synthetic_digit_canvases,
    synthetic_shapes,
)
from lightning_losses.data.strokes import StrokesDataModule, synthetic_strokes
from lightning_losses.data.text import TextDataModule

__all__ = [
    "DigitsImageDataModule",
    "ImageDataModule",
    "InteractionData",
    "InteractionDataModule",
    "NoisyDigitsDataModule",
    "PreferenceDataModule",
    "SegmentationDataModule",
    "StrokesDataModule",
    "TextDataModule",
    "inject_label_noise",
    "load_digits_images",
    "load_digits_splits",
    "load_interactions",
    "synthetic_digit_canvases",
    "synthetic_interactions",
    "synthetic_preference_pairs",
    "synthetic_shapes",
    "synthetic_strokes",
]
