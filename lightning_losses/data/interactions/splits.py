"""`InteractionData`: implicit-feedback interactions split into train / validation / test.

What the synthetic generator (`synthetic.py`) and the file loader (`files.py`) return, and what
the datasets (`datasets.py`) and the DataModule (`datamodule.py`) read.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["InteractionData"]


@dataclass
class InteractionData:
    """Interactions split into train / val / test, ids contiguous from 0.

    Attributes:
        num_users: number of users (ids `0 .. num_users - 1`).
        num_items: number of items (ids `0 .. num_items - 1`).
        train: `(users, items)` LongTensor pair of the training interactions.
        val: `(users, items)` of the validation interactions.
        test: `(users, items)` of the test interactions.
        train_noisy: bool mask aligned with `train` (known noise) or `None`.
        user_ids: original id of each contiguous user id (file data: a LongTensor for integer
            ids, a list of strings otherwise) or `None` (synthetic data).
        item_ids: original id of each contiguous item id, as `user_ids`.
    """

    num_users: int
    num_items: int
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    train_noisy: Tensor | None = None
    user_ids: Tensor | list[str] | None = None
    item_ids: Tensor | list[str] | None = None
