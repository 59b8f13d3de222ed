"""DataModules and synthetic data with known ground truth (noise masks)."""

from lightning_losses.data.interactions import (
    InteractionData,
    InteractionDataModule,
    load_interactions,
    synthetic_interactions,
)
from lightning_losses.data.preference import PreferenceDataModule, synthetic_preference_pairs
from lightning_losses.data.strokes import StrokesDataModule, synthetic_strokes
from lightning_losses.data.text import TextDataModule

__all__ = [
    "InteractionData",
    "InteractionDataModule",
    "PreferenceDataModule",
    "StrokesDataModule",
    "TextDataModule",
    "load_interactions",
    "synthetic_interactions",
    "synthetic_preference_pairs",
    "synthetic_strokes",
]
