"""Every loss module of the catalog: one subpackage per family, one loss (or tight group) per file.

Importing this package registers every built-in loss with [lightning_losses.registry][]. Each
family package keeps the one list of what it exports (`__all__`, next to the definitions); this
package re-exports them, and `tests/losses/test_contract.py` checks that every registered class is
exported.
"""

from lightning_losses.losses import (
    calibration,
    classification,
    contrastive,
    language,
    metric,
    preference,
    ranking,
    robust,
)
from lightning_losses.losses._embedding import DistributedSemantics, EmbeddingLoss, gather_batch
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.calibration import *  # noqa: F403
from lightning_losses.losses.classification import *  # noqa: F403
from lightning_losses.losses.contrastive import *  # noqa: F403
from lightning_losses.losses.language import *  # noqa: F403
from lightning_losses.losses.metric import *  # noqa: F403
from lightning_losses.losses.preference import *  # noqa: F403
from lightning_losses.losses.ranking import *  # noqa: F403
from lightning_losses.losses.robust import *  # noqa: F403
from lightning_losses.losses.utils import ClassBalancedWeights, class_balanced_weights

# Concatenation, not unpacking: the form griffe (mkdocstrings) reads statically for the API docs.
__all__ = (
    [  # noqa: RUF005
        "ClassBalancedWeights",
        "DistributedSemantics",
        "EmbeddingLoss",
        "InputKind",
        "Loss",
        "class_balanced_weights",
        "gather_batch",
    ]
    + classification.__all__
    + robust.__all__
    + calibration.__all__
    + ranking.__all__
    + language.__all__
    + contrastive.__all__
    + metric.__all__
    + preference.__all__
)
