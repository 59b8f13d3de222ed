"""Implicit-feedback data for the recsys recipe, one concept per module.

- `splits`: [InteractionData][lightning_losses.data.interactions.InteractionData], the
  interactions split into train / validation / test;
- `synthetic`: [synthetic_interactions][lightning_losses.data.interactions.synthetic_interactions],
  generated data with ground-truth preferences and a known noise mask;
- `files`: [load_interactions][lightning_losses.data.interactions.load_interactions], your own
  CSV/TSV/Parquet files, id-remapped and split;
- `datasets`: `TrainBatches` (the dict training batches PLD rewrites) and `EvalUsers`
  (full-ranking evaluation batches);
- `datamodule`: [InteractionDataModule][lightning_losses.data.InteractionDataModule], which
  ties them together.
"""

from lightning_losses.data.interactions.datamodule import InteractionDataModule
from lightning_losses.data.interactions.datasets import EvalUsers, TrainBatches
from lightning_losses.data.interactions.files import load_interactions
from lightning_losses.data.interactions.splits import InteractionData
from lightning_losses.data.interactions.synthetic import synthetic_interactions

__all__ = [
    "EvalUsers",
    "InteractionData",
    "InteractionDataModule",
    "TrainBatches",
    "load_interactions",
    "synthetic_interactions",
]
