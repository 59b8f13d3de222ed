"""`InteractionDataModule`: implicit feedback for the recsys recipe, synthetic or from files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_losses.data.interactions.datasets import EvalUsers, TrainBatches
from lightning_losses.data.interactions.files import SPLITS, load_interactions
from lightning_losses.data.interactions.splits import InteractionData
from lightning_losses.data.interactions.synthetic import synthetic_interactions
from lightning_losses.data.sampling import ResumableLoader, eval_loader
from lightning_losses.validation import check_bool, check_choice, check_int, check_number

__all__ = ["InteractionDataModule"]


class InteractionDataModule(LightningDataModule):
    """Implicit feedback for the recsys recipe: synthetic by default, or your own files.

    Interface used by `lightning_losses.recipes.recsys`: `num_users`, `num_items`,
    `data.train` (after `setup`), dict training batches as described in
    `lightning_losses.data.interactions.datasets`.

    Data source: synthetic data (default), one file (`path`, split here by `split`) or
    pre-split files (`train_path` with optional `val_path` / `test_path`). The synthetic
    options (`num_users`, `num_items`, `rank`, `positives_per_user`, `noise_rate`) are an
    error together with a file: they would be silently ignored. On a file, `noise_col` makes
    the noise known (the recipe then logs `train/noisy_share`).

    Args:
        path: one interaction file (CSV/TSV/Parquet), split by `split`; `None` = synthetic.
        train_path: pre-split training file (instead of `path`).
        val_path: pre-split validation file (with `train_path`).
        test_path: pre-split test file (with `train_path`).
        user_col: file column of the user ids (integers or strings).
        item_col: file column of the item ids (integers or strings).
        rating_col: file column of the ratings (read with `rating_threshold`).
        timestamp_col: file column of the timestamps (orders `"loo"`, needed by `"temporal"`).
        noise_col: optional 0/1 file column marking known-noisy interactions.
        sep: CSV separator (default `","`, tab for `.tsv`).
        split: `"loo"`, `"random"` (seeded per-user holdout) or `"temporal"`; see
            [load_interactions][lightning_losses.data.interactions.load_interactions].
        test_fraction: share of test interactions (`"random"`, `"temporal"`).
        val_fraction: share of validation interactions (`"random"`, `"temporal"`); default
            `test_fraction`.
        rating_threshold: keep file rows with `rating >= rating_threshold`.
        drop_sparse_users: drop users left without training interactions instead of raising.
        num_users: synthetic data: number of users (default 500).
        num_items: synthetic data: number of items (default 1000).
        rank: synthetic data: rank of the ground-truth preferences (default 8).
        positives_per_user: synthetic data: true positives per user (default 40).
        noise_rate: synthetic data: share of injected noisy positives (default 0.2).
        batch_size: training instances per batch.
        pool_size: PLD candidate pool size `k` (1 disables the pool).
        num_negatives: negatives per instance `K` (`neg_item` is `[B]` when 1).
        eval_batch_size: users per evaluation batch.
        seed: data seed (generation, split, sampling).

    Raises:
        ValueError: a bad option, a synthetic option together with a file, or `path` together
            with `train_path`; messages name the `--data.*` flag.
        FileNotFoundError: a given file does not exist (checked when the module is built).

    Example:
        >>> from lightning_losses.data import InteractionDataModule
        >>> dm = InteractionDataModule(num_users=20, num_items=60, positives_per_user=10,
        ...                            batch_size=16, pool_size=3)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["cand_items"].shape, batch["neg_item"].shape
        (torch.Size([16, 3]), torch.Size([16]))
    """

    def __init__(
        self,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        timestamp_col: str = "timestamp",
        noise_col: str | None = None,
        sep: str | None = None,
        split: str = "loo",
        test_fraction: float = 0.2,
        val_fraction: float | None = None,
        rating_threshold: float | None = None,
        drop_sparse_users: bool = False,
        num_users: int | None = None,
        num_items: int | None = None,
        rank: int | None = None,
        positives_per_user: int | None = None,
        noise_rate: float | None = None,
        batch_size: int = 1024,
        pool_size: int = 5,
        num_negatives: int = 1,
        eval_batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("pool_size", pool_size),
            ("num_negatives", num_negatives),
            ("eval_batch_size", eval_batch_size),
            ("num_users", num_users),
            ("num_items", num_items),
            ("rank", rank),
            ("positives_per_user", positives_per_user),
        ):
            if value is not None:
                check_int(f"--data.{name}", value, low=1)
        check_bool("--data.drop_sparse_users", drop_sparse_users)
        check_choice("--data.split", split, SPLITS)
        if path is not None and train_path is not None:
            raise ValueError(
                "give --data.path (one file, split here) or --data.train_path, not both"
            )
        if train_path is None and (val_path is not None or test_path is not None):
            raise ValueError("--data.val_path and --data.test_path need --data.train_path")
        synthetic = {
            "num_users": num_users,
            "num_items": num_items,
            "rank": rank,
            "positives_per_user": positives_per_user,
            "noise_rate": noise_rate,
        }
        from_file = path is not None or train_path is not None
        given = [k for k, v in synthetic.items() if v is not None]
        if from_file and given:
            flags = ", ".join(f"--data.{k}" for k in given)
            hint = (
                " (to measure noise on a file, mark it in a 0/1 column and pass --data.noise_col)"
                if "noise_rate" in given
                else ""
            )
            raise ValueError(
                f"{flags} only apply to the synthetic data and would be ignored with "
                f"--data.{'path' if path is not None else 'train_path'}; remove "
                f"{'it' if len(given) == 1 else 'them'} or set to null{hint}"
            )
        if not from_file and noise_col is not None:
            raise ValueError("--data.noise_col needs a file (--data.path or --data.train_path)")
        if noise_rate is not None:
            check_number("--data.noise_rate", noise_rate, low=0.0, high=1.0, high_inclusive=False)
        for flag, file in (
            ("--data.path", path),
            ("--data.train_path", train_path),
            ("--data.val_path", val_path),
            ("--data.test_path", test_path),
        ):
            if file is not None and not Path(file).is_file():
                # At construction, not in setup: the CLI reports it before any work starts.
                raise FileNotFoundError(f"{flag} {str(file)!r}: no such file")
        self.save_hyperparameters()
        # What `setup` loads: the generator's options (unset ones keep its defaults) or the
        # loader's arguments.
        self._synthetic_options: dict[str, Any] | None = (
            None if from_file else {k: v for k, v in synthetic.items() if v is not None}
        )
        self.path, self.train_path, self.val_path, self.test_path = (
            path,
            train_path,
            val_path,
            test_path,
        )
        self.user_col, self.item_col, self.rating_col = user_col, item_col, rating_col
        self.timestamp_col, self.noise_col, self.sep = timestamp_col, noise_col, sep
        self.split, self.rating_threshold = split, rating_threshold
        self.test_fraction, self.val_fraction = test_fraction, val_fraction
        self.drop_sparse_users = drop_sparse_users
        self.batch_size, self.pool_size, self.num_negatives = batch_size, pool_size, num_negatives
        self.eval_batch_size, self.seed = eval_batch_size, seed
        self.data: InteractionData | None = None
        self._train: TrainBatches | None = None

    def _loaded(self) -> InteractionData:
        """The interactions, generated or read on first use."""
        if self.data is None:
            if self._synthetic_options is not None:
                self.data = synthetic_interactions(**self._synthetic_options, seed=self.seed)
            else:
                self.data = load_interactions(
                    path=self.path,
                    train_path=self.train_path,
                    val_path=self.val_path,
                    test_path=self.test_path,
                    user_col=self.user_col,
                    item_col=self.item_col,
                    rating_col=self.rating_col,
                    timestamp_col=self.timestamp_col,
                    noise_col=self.noise_col,
                    sep=self.sep,
                    split=self.split,
                    rating_threshold=self.rating_threshold,
                    test_fraction=self.test_fraction,
                    val_fraction=self.val_fraction,
                    drop_sparse_users=self.drop_sparse_users,
                    seed=self.seed,
                )
        return self.data

    def setup(self, stage: str | None = None) -> None:
        self._loaded()

    @property
    def num_users(self) -> int:
        """Number of users (loads the data on first use)."""
        return self._loaded().num_users

    @property
    def num_items(self) -> int:
        """Number of items (loads the data on first use)."""
        return self._loaded().num_items

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        if self._train is None:
            self._train = TrainBatches(
                self._loaded(),
                batch_size=self.batch_size,
                pool_size=self.pool_size,
                num_negatives=self.num_negatives,
                seed=self.seed,
            )
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self._train.rank, self._train.world_size = trainer.global_rank, trainer.world_size
        # Resumable: a checkpoint written mid-epoch resumes at the next batch (its negatives
        # and candidates are functions of (seed, epoch, batch index), so they match too).
        return ResumableLoader(self._train, batch_size=None, seed=self.seed, trainer=trainer)

    def _eval_loader(self, stage: str) -> DataLoader[int]:
        d = self._loaded()
        target, exclude = (d.val, [d.train]) if stage == "val" else (d.test, [d.train, d.val])
        ds = EvalUsers(d.num_users, d.num_items, target, exclude)
        return eval_loader(ds, batch_size=self.eval_batch_size, collate_fn=ds.collate)

    def val_dataloader(self) -> DataLoader[int]:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader[int]:
        return self._eval_loader("test")
