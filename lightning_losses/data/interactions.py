"""Implicit-feedback data: a synthetic generator with known noise, a file loader, a DataModule.

Synthetic data follows the PLD experiment of DYNAMICS.md §3 (Zhang et al., WWW 2025,
arXiv:2502.00348): users and items with rank-``r`` ground-truth preferences, a fixed number of
true positives per user (split into train / val / test), plus uniformly random "noisy" training
positives at a requested share, with the noise mask kept so that denoising can be measured.
Validation and test positives are always clean.

Training batches are dicts (the schema :class:`~lightning_losses.callbacks.PLDResampling`
rewrites): one instance per training interaction per epoch, in random order::

    user [B], cand_items [B, k], neg_item [B] or [B, K], pos_item [B],
    cand_noisy [B, k], pos_is_noisy [B]         (the last two only when the noise is known)

Column 0 of ``cand_items`` is the instance's own interaction, the other ``k - 1`` are drawn
uniformly (with replacement) from the user's training positives, and ``pos_item`` is column 0:
without PLD this is exactly standard BPR training (every interaction once per epoch).
Negatives are uniform over the items the user has not interacted with in training.
Evaluation batches are ``{"user" [b], "target" [b, I] bool, "exclude" [b, I] bool}`` for
full-ranking evaluation (``exclude`` = training items, plus validation items at test time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

__all__ = [
    "InteractionData",
    "InteractionDataModule",
    "load_interactions",
    "synthetic_interactions",
]


@dataclass
class InteractionData:
    """Interactions split into train / val / test, ids contiguous from 0.

    Attributes:
        num_users, num_items: id ranges.
        train, val, test: ``(users, items)`` LongTensor pairs.
        train_noisy: bool mask aligned with ``train`` (known injected noise) or ``None``.
        user_ids, item_ids: original ids of the contiguous ids (file data) or ``None``.
    """

    num_users: int
    num_items: int
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    train_noisy: Tensor | None = None
    user_ids: Tensor | None = None
    item_ids: Tensor | None = None


# ------------------------------------------------------------------------------ synthetic
def synthetic_interactions(
    num_users: int = 500,
    num_items: int = 1000,
    rank: int = 8,
    positives_per_user: int = 40,
    noise_rate: float = 0.2,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> InteractionData:
    """Synthetic implicit feedback with ground-truth preferences and a known noise mask.

    Each user's true positives are the Gumbel-top-``positives_per_user`` items of a rank-``rank``
    affinity ``P Q^T / sqrt(rank)``; ``test_fraction`` / ``val_fraction`` of them are held out.
    Then ``round(n_train · noise_rate / (1 - noise_rate))`` uniformly random items outside the
    user's true positives are added to the user's *training* positives, so that ``noise_rate`` is
    the share of noisy training interactions.

    Example:
        >>> from lightning_losses.data.interactions import synthetic_interactions
        >>> d = synthetic_interactions(num_users=20, num_items=100, positives_per_user=10)
        >>> round(d.train_noisy.float().mean().item(), 2), len(d.test[0])
        (0.2, 40)
    """
    if not 0.0 <= noise_rate < 1.0:
        raise ValueError(f"noise_rate must be in [0, 1), got {noise_rate}")
    if not 0.0 < test_fraction < 1.0 or not 0.0 <= val_fraction < 1.0:
        raise ValueError(
            f"test_fraction must be in (0, 1) and val_fraction in [0, 1), got "
            f"{test_fraction}, {val_fraction}"
        )
    n_test = max(1, round(positives_per_user * test_fraction))
    n_val = round(positives_per_user * val_fraction)
    n_train = positives_per_user - n_test - n_val
    n_noise = round(n_train * noise_rate / (1.0 - noise_rate))
    if n_train < 1 or positives_per_user + n_noise > num_items:
        raise ValueError(
            f"positives_per_user={positives_per_user} leaves {n_train} training positives and "
            f"{n_noise} noisy ones for {num_items} items; adjust the sizes"
        )
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(num_users, rank, generator=g)
    q = torch.randn(num_items, rank, generator=g)
    affinity = p @ q.T / math.sqrt(rank)
    gumbel = -torch.log(-torch.log(torch.rand(num_users, num_items, generator=g).clamp(1e-12, 1)))
    true_pos = (affinity + 0.5 * gumbel).topk(positives_per_user, dim=1).indices
    order = torch.rand(num_users, positives_per_user, generator=g).argsort(1)
    true_pos = true_pos.gather(1, order)
    test_i = true_pos[:, :n_test]
    val_i = true_pos[:, n_test : n_test + n_val]
    train_i = true_pos[:, n_test + n_val :]
    # Noise: random items outside the user's true positives (rank by random keys, true ones last).
    keys = torch.rand(num_users, num_items, generator=g)
    keys.scatter_(1, true_pos, 2.0)
    noise_i = keys.topk(n_noise, dim=1, largest=False).indices
    users = torch.arange(num_users)

    def pairs(items: Tensor) -> tuple[Tensor, Tensor]:
        return users.repeat_interleave(items.shape[1]), items.reshape(-1)

    tr_u, tr_i = pairs(torch.cat([train_i, noise_i], 1))
    noisy = torch.cat(
        [
            torch.zeros(num_users, n_train, dtype=torch.bool),
            torch.ones(num_users, n_noise, dtype=torch.bool),
        ],
        1,
    ).reshape(-1)
    return InteractionData(
        num_users, num_items, (tr_u, tr_i), pairs(val_i), pairs(test_i), train_noisy=noisy
    )


# ---------------------------------------------------------------------------------- files
def _require_pandas():
    try:
        import pandas as pd
    except ImportError as err:  # optional dependency: only the file loader needs it
        raise ImportError(
            "reading interaction files needs pandas (and pyarrow for Parquet): "
            "pip install 'lightning-losses[recsys]'"
        ) from err
    return pd


def _read_table(path: Path):
    pd = _require_pandas()

    if not path.exists():
        raise FileNotFoundError(f"interaction file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    raise ValueError(f"interaction file must be .csv, .tsv or .parquet, got {path.name!r}")


def load_interactions(
    path: str | Path,
    *,
    split: str = "loo",
    rating_threshold: float | None = None,
    test_fraction: float = 0.2,
    val: bool = True,
    drop_sparse_users: bool = False,
    seed: int = 0,
) -> InteractionData:
    """Load a user-supplied interaction file (CSV/TSV/Parquet: ``user,item[,rating,timestamp]``).

    Args:
        path: the file. Columns ``user`` and ``item`` hold integer ids (any range; they are
            remapped to contiguous ids, the originals kept in ``user_ids`` / ``item_ids``).
        split: ``"loo"`` — per user, the last interaction (by ``timestamp`` when present, else a
            random one) is the test item and, with ``val``, the one before it the validation
            item; ``"temporal"`` — a global time cut: the latest ``test_fraction`` of the
            interactions are test, (with ``val``) the ``test_fraction`` before them validation.
        rating_threshold: keep only rows with ``rating ≥ threshold`` (implicit conversion);
            needs a ``rating`` column.
        test_fraction: share of interactions in test (temporal split).
        val: carve out a validation split.
        drop_sparse_users: drop users left with no training interaction instead of raising
            (their validation/test rows are dropped too).
        seed: tie-breaking for ``loo`` without timestamps.

    Raises:
        ValueError: missing columns, non-integer or negative ids, no rows left, a temporal
            split without ``timestamp``, or users without training interactions.
    """
    import numpy as np

    pd = _require_pandas()
    path = Path(path)
    df = _read_table(path)
    missing = [c for c in ("user", "item") if c not in df.columns]
    if missing:
        raise ValueError(
            f"interaction file {path.name!r} is missing required column(s) {missing}; found "
            f"{list(df.columns)} (expected user,item[,rating,timestamp])"
        )
    for col in ("user", "item"):
        if not pd.api.types.is_integer_dtype(df[col]):
            bad = df[col][~df[col].astype(str).str.fullmatch(r"-?\d+")].head(3).tolist()
            raise ValueError(
                f"column {col!r} of {path.name!r} must hold integer ids, got dtype "
                f"{df[col].dtype} (e.g. {bad})"
            )
        if (df[col] < 0).any():
            raise ValueError(f"column {col!r} of {path.name!r} has negative ids")
    if split not in ("loo", "temporal"):
        raise ValueError(f"split must be 'loo' or 'temporal', got {split!r}")
    if rating_threshold is not None:
        if "rating" not in df.columns:
            raise ValueError(
                f"rating_threshold={rating_threshold} needs a 'rating' column in {path.name!r}"
            )
        df = df[df["rating"] >= rating_threshold]
    has_time = "timestamp" in df.columns
    if split == "temporal" and not has_time:
        raise ValueError(f"split='temporal' needs a 'timestamp' column in {path.name!r}")
    if has_time:
        df = df.sort_values("timestamp", kind="stable")
    df = df.drop_duplicates(["user", "item"], keep="first")
    if len(df) == 0:
        raise ValueError(f"no interactions left in {path.name!r} (after rating_threshold)")

    user_ids, u = np.unique(df["user"].to_numpy(), return_inverse=True)
    item_ids, i = np.unique(df["item"].to_numpy(), return_inverse=True)
    n = len(u)
    part = np.zeros(n, dtype=np.int64)  # 0 train, 1 val, 2 test
    if split == "loo":
        rng = np.random.default_rng(seed)
        key = np.arange(n) if has_time else rng.permutation(n)
        order = np.lexsort((key, u))  # by user, then time (or random)
        u_sorted = u[order]
        last = np.r_[u_sorted[1:] != u_sorted[:-1], True]
        counts = np.bincount(u, minlength=len(user_ids))
        part[order[last]] = 2
        if val:
            second = np.r_[last[1:], False] & (counts[u_sorted] >= 3)
            part[order[second]] = 1
        sparse = np.flatnonzero(counts < 2)
    else:
        n_test = max(1, round(n * test_fraction))
        part[n - n_test :] = 2
        if val:
            part[max(0, n - 2 * n_test) : n - n_test] = 1
        has_train = np.bincount(u[part == 0], minlength=len(user_ids)) > 0
        sparse = np.flatnonzero(~has_train)
    if len(sparse):
        if not drop_sparse_users:
            raise ValueError(
                f"{len(sparse)} user(s) of {path.name!r} would have no training interaction "
                f"after the {split!r} split (e.g. user ids {user_ids[sparse[:5]].tolist()}); "
                "remove them or pass drop_sparse_users=True"
            )
        keep = ~np.isin(u, sparse)
        u, i, part = u[keep], i[keep], part[keep]
        kept_users, u = np.unique(u, return_inverse=True)
        user_ids = user_ids[kept_users]
    if len(u) == 0:
        raise ValueError(f"no users left in {path.name!r}")

    def pick(k: int) -> tuple[Tensor, Tensor]:
        m = part == k
        return torch.from_numpy(u[m].astype(np.int64)), torch.from_numpy(i[m].astype(np.int64))

    return InteractionData(
        num_users=len(user_ids),
        num_items=len(item_ids),
        train=pick(0),
        val=pick(1),
        test=pick(2),
        user_ids=torch.from_numpy(user_ids.astype(np.int64)),
        item_ids=torch.from_numpy(item_ids.astype(np.int64)),
    )


# ------------------------------------------------------------------------------- datasets
class _CSR:
    """Per-user item lists: ``indptr [U+1]``, ``items`` sorted by user, ``perm`` = input order."""

    def __init__(self, users: Tensor, items: Tensor, num_users: int) -> None:
        self.perm = torch.argsort(users, stable=True)
        self.users = users[self.perm]
        self.items = items[self.perm]
        counts = torch.bincount(users, minlength=num_users)
        self.indptr = torch.zeros(num_users + 1, dtype=torch.long)
        self.indptr[1:] = counts.cumsum(0)
        self.degree = counts


class TrainBatches(IterableDataset):
    """One epoch of dict batches (module docstring schema); rank ``r`` of ``w`` takes every
    ``w``-th batch, and every rank yields the same number of batches (DDP needs equal steps).

    Randomness depends only on ``(seed, epoch, batch index)``, so a resumed run, or another
    world size, sees the same batches.
    """

    def __init__(
        self,
        data: InteractionData,
        *,
        batch_size: int,
        pool_size: int,
        num_negatives: int,
        seed: int,
    ) -> None:
        self.num_items = data.num_items
        self.csr = _CSR(*data.train, data.num_users)
        self.noisy = None if data.train_noisy is None else data.train_noisy[self.csr.perm]
        self.keys = torch.sort(self.csr.users * data.num_items + self.csr.items).values
        self.batch_size, self.pool_size, self.num_negatives = batch_size, pool_size, num_negatives
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def _num_batches_total(self) -> int:
        return math.ceil(len(self.csr.items) / self.batch_size)

    def __len__(self) -> int:
        return max(1, self._num_batches_total() // self.world_size)

    def _negatives(self, users: Tensor, g: torch.Generator) -> Tensor:
        shape = (len(users), self.num_negatives)
        neg = torch.randint(0, self.num_items, shape, generator=g)
        u = users.unsqueeze(1).expand(shape)
        for _ in range(20):  # rejection of observed positives; terminates fast unless dense
            key = u * self.num_items + neg
            pos = torch.searchsorted(self.keys, key).clamp_max(len(self.keys) - 1)
            hit = self.keys[pos] == key
            if not hit.any():
                break
            neg[hit] = torch.randint(0, self.num_items, (int(hit.sum()),), generator=g)
        return neg if self.num_negatives > 1 else neg[:, 0]

    def batch(self, epoch: int, index: int, order: Tensor) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(hash((self.seed, epoch, index)) & (2**62 - 1))
        inst = order[index * self.batch_size : (index + 1) * self.batch_size]
        users = self.csr.users[inst]
        deg = self.csr.degree[users]
        extra = (torch.rand(len(inst), self.pool_size - 1, generator=g) * deg.unsqueeze(1)).long()
        extra = self.csr.indptr[users].unsqueeze(1) + extra.clamp_max(deg.unsqueeze(1) - 1)
        pos_idx = torch.cat([inst.unsqueeze(1), extra], 1)
        cand = self.csr.items[pos_idx]
        out = {
            "user": users,
            "cand_items": cand,
            "pos_item": cand[:, 0].clone(),
            "neg_item": self._negatives(users, g),
        }
        if self.noisy is not None:
            out["cand_noisy"] = self.noisy[pos_idx]
            out["pos_is_noisy"] = out["cand_noisy"][:, 0].clone()
        return out

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1  # one pass = one epoch (the DataModule resets it on (re)start)
        order = torch.randperm(
            len(self.csr.items), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch)
        )
        n_per_rank = len(self)
        for step in range(n_per_rank):
            index = (step * self.world_size + self.rank) % self._num_batches_total()
            yield self.batch(epoch, index, order)


class EvalUsers(Dataset):
    """Users with at least one target item; ``collate`` builds dense ``target`` / ``exclude``."""

    def __init__(self, num_users: int, num_items: int, target, exclude: list) -> None:
        self.num_items = num_items
        self.target = _CSR(*target, num_users)
        self.exclude = [_CSR(*pair, num_users) for pair in exclude]
        self.users = torch.unique(target[0])

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, idx: int) -> int:
        return int(self.users[idx])

    @staticmethod
    def _dense(csr: _CSR, users: Tensor, num_items: int) -> Tensor:
        out = torch.zeros(len(users), num_items, dtype=torch.bool)
        for row, u in enumerate(users.tolist()):
            out[row, csr.items[csr.indptr[u] : csr.indptr[u + 1]]] = True
        return out

    def collate(self, users: list[int]) -> dict[str, Tensor]:
        u = torch.tensor(users, dtype=torch.long)
        exclude = torch.zeros(len(u), self.num_items, dtype=torch.bool)
        for csr in self.exclude:
            exclude |= self._dense(csr, u, self.num_items)
        return {
            "user": u,
            "target": self._dense(self.target, u, self.num_items),
            "exclude": exclude,
        }


# ----------------------------------------------------------------------------- DataModule
class InteractionDataModule(LightningDataModule):
    """Implicit feedback for the recsys recipe: synthetic by default, or a user file.

    Interface used by :mod:`lightning_losses.recipes.recsys`: ``num_users``, ``num_items``,
    ``data.train`` (after ``setup``), dict training batches as in the module docstring.

    Args:
        path: interaction file (CSV/TSV/Parquet); ``None`` = synthetic data.
        num_users: synthetic data: number of users (default 500).
        num_items: synthetic data: number of items (default 1000).
        rank: synthetic data: rank of the ground-truth preferences (default 8).
        positives_per_user: synthetic data: true positives per user (default 40).
        noise_rate: synthetic data: share of injected noisy positives (default 20 %).
        split: file option, ``"loo"`` or ``"temporal"`` (see :func:`load_interactions`).
        rating_threshold: file option, keep rows with ``rating ≥ threshold``.
        drop_sparse_users: file option, drop users left without training interactions.
        batch_size: training instances per batch.
        pool_size: PLD candidate pool size ``k`` (1 disables the pool).
        num_negatives: negatives per instance ``K`` (``neg_item`` is ``[B]`` when 1).
        eval_batch_size: users per evaluation batch.
        seed: data seed (generation, split, sampling).

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
        num_users: int = 500,
        num_items: int = 1000,
        rank: int = 8,
        positives_per_user: int = 40,
        noise_rate: float = 0.2,
        split: str = "loo",
        rating_threshold: float | None = None,
        drop_sparse_users: bool = False,
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
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.save_hyperparameters()
        self.data: InteractionData | None = None
        self._train: TrainBatches | None = None

    def _load(self) -> InteractionData:
        h = self.hparams
        if h.path is None:
            return synthetic_interactions(
                h.num_users, h.num_items, h.rank, h.positives_per_user, h.noise_rate, seed=h.seed
            )
        return load_interactions(
            h.path,
            split=h.split,
            rating_threshold=h.rating_threshold,
            drop_sparse_users=h.drop_sparse_users,
            seed=h.seed,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.data is None:
            self.data = self._load()

    @property
    def num_users(self) -> int:
        self.setup()
        return self.data.num_users

    @property
    def num_items(self) -> int:
        self.setup()
        return self.data.num_items

    def train_dataloader(self) -> DataLoader:
        self.setup()
        h = self.hparams
        if self._train is None:
            self._train = TrainBatches(
                self.data,
                batch_size=h.batch_size,
                pool_size=h.pool_size,
                num_negatives=h.num_negatives,
                seed=h.seed,
            )
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            self._train.rank, self._train.world_size = trainer.global_rank, trainer.world_size
            self._train.epoch = trainer.current_epoch
        return DataLoader(self._train, batch_size=None)

    def _eval_loader(self, stage: str) -> DataLoader:
        self.setup()
        d = self.data
        target, exclude = (d.val, [d.train]) if stage == "val" else (d.test, [d.train, d.val])
        ds = EvalUsers(d.num_users, d.num_items, target, exclude)
        return DataLoader(ds, batch_size=self.hparams.eval_batch_size, collate_fn=ds.collate)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
