"""DataModules and synthetic data with known ground truth (noise masks)."""

from lightning_losses.data.interactions import (
    InteractionData,
    InteractionDataModule,
    load_interactions,
    synthetic_interactions,
)
from lightning_losses.data.text import TextDataModule

__all__ = [
    "InteractionData",
    "InteractionDataModule",
    "TextDataModule",
    "load_interactions",
    "synthetic_interactions",
]
