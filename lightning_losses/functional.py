"""Every functional loss of the catalog: `import lightning_losses.functional as LF`.

The modules in [lightning_losses.losses][] store hyperparameters and call these functions; the
math lives once, in each loss's own module. The list is derived, not kept by hand: the public
functions (lower-case names) that each family package exports, which include every registered
class's `functional` (checked in `tests/losses/test_contract.py`).
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
from lightning_losses.losses.calibration import *  # noqa: F403
from lightning_losses.losses.classification import *  # noqa: F403
from lightning_losses.losses.contrastive import *  # noqa: F403
from lightning_losses.losses.language import *  # noqa: F403
from lightning_losses.losses.metric import *  # noqa: F403
from lightning_losses.losses.preference import *  # noqa: F403
from lightning_losses.losses.ranking import *  # noqa: F403
from lightning_losses.losses.robust import *  # noqa: F403

__all__ = sorted(
    name
    for family in (
        classification,
        robust,
        calibration,
        ranking,
        language,
        contrastive,
        metric,
        preference,
    )
    for name in family.__all__
    if name[:1].islower()
)
# Only the functions are public here; the classes live in `lightning_losses.losses`.
for _name in [n for n in dir() if n[:1].isupper()]:
    del globals()[_name]
del _name, calibration, classification, contrastive, language, metric, preference, ranking, robust
