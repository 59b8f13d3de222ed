"""Implicit-feedback data: a synthetic generator with known noise, a file loader, a DataModule.

Synthetic data follows the PLD experiment of DYNAMICS.md §3 (Zhang et al., WWW 2025,
arXiv:2502.00348): users and items with rank-$r$ ground-truth preferences, a fixed number of
true positives per user (split into train / val / test), plus uniformly random "noisy" training
positives at a requested share, with the noise mask kept so that denoising can be measured.
Validation and test positives are always clean.

Your own data: [load_interactions][lightning_losses.data.interactions.load_interactions] reads
CSV/TSV/Parquet files with any column names (`user_col`, `item_col`, ...), integer or string ids,
one file split here (`"loo"`, `"random"`, `"temporal"`) or pre-split files (`train_path`,
`val_path`, `test_path`), and an optional 0/1 noise column (`noise_col`).

Training batches are dicts (the schema
[PLDResampling][lightning_losses.callbacks.PLDResampling] rewrites): one instance per training
interaction per epoch, in random order:

- `user` `[B]`, `cand_items` `[B, k]`, `neg_item` `[B]` or `[B, K]`, `pos_item` `[B]`;
- `cand_noisy` `[B, k]`, `pos_is_noisy` `[B]` (only when the noise is known: synthetic data or
  a file with `noise_col`).

Column 0 of `cand_items` is the instance's own interaction, the other `k - 1` are drawn
uniformly (with replacement) from the user's training positives, and `pos_item` is column 0:
without PLD this is exactly standard BPR training (every interaction once per epoch).
Negatives are uniform over the items the user has not interacted with in training.
Evaluation batches are `{"user" [b], "target" [b, I] bool, "exclude" [b, I] bool}` for
full-ranking evaluation (`exclude` = training items, plus validation items at test time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    r"""Synthetic implicit feedback with ground-truth preferences and a known noise mask.

    Each user's true positives are the Gumbel-top-`positives_per_user` items of a rank-`rank`
    affinity $P Q^\top / \sqrt{r}$; `test_fraction` / `val_fraction` of them are held out.
    Then `round(n_train * noise_rate / (1 - noise_rate))` uniformly random items outside the
    user's true positives are added to the user's *training* positives, so that `noise_rate` is
    the share of noisy training interactions.

    Args:
        num_users: number of users.
        num_items: number of items.
        rank: rank $r$ of the ground-truth affinity.
        positives_per_user: true positives per user (before the split).
        noise_rate: share of noisy training interactions, in $[0, 1)$.
        test_fraction: share of each user's true positives held out for test.
        val_fraction: share held out for validation.
        seed: generator seed.

    Returns:
        The splits, with `train_noisy` set.

    Raises:
        ValueError: fractions out of range, or sizes that leave no training positive.

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
SPLITS = ("loo", "random", "temporal")
SYNTHETIC_DEFAULTS = {
    "num_users": 500,
    "num_items": 1000,
    "rank": 8,
    "positives_per_user": 40,
    "noise_rate": 0.2,
}


def _require_pandas():
    try:
        import pandas as pd
    except ImportError as err:  # optional dependency: only the file loader needs it
        raise ImportError(
            "reading interaction files needs pandas (and pyarrow for Parquet): "
            'pip install "lightning-losses[recsys]"'
        ) from err
    return pd


def _read_table(path: Path, sep: str | None):
    pd = _require_pandas()
    if not path.exists():
        raise FileNotFoundError(f"interaction file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt", ".dat"):
        if sep is None:
            sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, engine="python" if len(sep) > 1 else "c")
    raise ValueError(
        f"interaction file must be .csv, .tsv, .txt, .dat or .parquet, got {path.name!r}"
    )


@dataclass
class _Columns:
    user: str
    item: str
    rating: str
    timestamp: str
    noise: str | None


def _check_table(df, path: Path, cols: _Columns, rating_threshold: float | None):
    """Validate one table's columns; return it with rows below `rating_threshold` dropped."""
    pd = _require_pandas()
    found = list(df.columns)
    for col, flag in ((cols.user, "user_col"), (cols.item, "item_col")):
        if col not in df.columns:
            raise ValueError(
                f"interaction file {path.name!r} has no column {col!r} (its columns: {found}); "
                f"name the column that holds the ids with --data.{flag}"
            )
        if df[col].isna().any():
            rows = df.index[df[col].isna()][:3].tolist()
            raise ValueError(f"column {col!r} of {path.name!r} has missing ids (rows {rows})")
        if pd.api.types.is_float_dtype(df[col]):
            bad = df[col][df[col] != df[col].round()].head(3).tolist()
            raise ValueError(
                f"column {col!r} of {path.name!r} must hold integer or string ids, got "
                f"floats (e.g. {bad})"
            )
    if cols.noise is not None:
        if cols.noise not in df.columns:
            raise ValueError(
                f"interaction file {path.name!r} has no noise column {cols.noise!r} (its "
                f"columns: {found}); fix --data.noise_col or leave it unset"
            )
        values = set(pd.unique(df[cols.noise]).tolist())
        if not values <= {0, 1}:  # True == 1 and False == 0
            raise ValueError(
                f"noise column {cols.noise!r} of {path.name!r} must hold 0/1 or true/false, "
                f"got values {sorted(map(str, values))[:5]}"
            )
    if rating_threshold is not None:
        if cols.rating not in df.columns:
            raise ValueError(
                f"--data.rating_threshold {rating_threshold} needs a rating column, but "
                f"{path.name!r} has no column {cols.rating!r} (its columns: {found}); name it "
                "with --data.rating_col"
            )
        df = df[df[cols.rating] >= rating_threshold]
    return df


def _unique_ids(values) -> tuple[Tensor | list[str], Any]:
    """Sorted unique ids and the inverse index; integer ids stay a LongTensor, others strings."""
    import numpy as np

    pd = _require_pandas()
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_float_dtype(values):
        uniq, inv = np.unique(values.to_numpy().astype(np.int64), return_inverse=True)
        return torch.from_numpy(uniq), inv
    uniq, inv = np.unique(values.astype(str).to_numpy(), return_inverse=True)
    return uniq.tolist(), inv


def load_interactions(
    path: str | Path | None = None,
    *,
    train_path: str | Path | None = None,
    val_path: str | Path | None = None,
    test_path: str | Path | None = None,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    timestamp_col: str = "timestamp",
    noise_col: str | None = None,
    sep: str | None = None,
    split: str = "loo",
    rating_threshold: float | None = None,
    test_fraction: float = 0.2,
    val_fraction: float | None = None,
    val: bool = True,
    drop_sparse_users: bool = False,
    seed: int = 0,
) -> InteractionData:
    """Load user-supplied interactions (CSV/TSV/Parquet) and split them into train/val/test.

    Either one file (`path`), split here, or pre-split files (`train_path` and optionally
    `val_path`, `test_path`), used as they are. User and item ids may be integers or strings;
    they are remapped to contiguous ids (the originals kept in `user_ids` / `item_ids`).

    Args:
        path: one interaction file, split by `split`.
        train_path: pre-split training file (instead of `path`).
        val_path: pre-split validation file (optional, with `train_path`).
        test_path: pre-split test file (optional, with `train_path`).
        user_col: column of the user ids.
        item_col: column of the item ids.
        rating_col: column of the ratings (only read with `rating_threshold`).
        timestamp_col: column of the timestamps (optional: orders `"loo"`, needed by
            `"temporal"`).
        noise_col: optional 0/1 column marking known-noisy interactions; its training rows
            become `train_noisy`, so the recipes can log the share of noisy positives.
        sep: CSV separator (default `","`, tab for `.tsv`; e.g. `"::"` for MovieLens `.dat`).
        split: `"loo"`: per user, the last interaction (by timestamp when present, else a random
            one) is the test item and, with `val`, the one before it the validation item;
            `"random"`: per user, a seeded random `test_fraction` of the interactions is test
            (at least one when the user has two or more) and `val_fraction` validation;
            `"temporal"`: a global time cut, the latest `test_fraction` of all interactions
            are test and the `val_fraction` before them validation.
        rating_threshold: keep only rows with `rating >= rating_threshold`.
        test_fraction: share of test interactions (`"random"`, `"temporal"`).
        val_fraction: share of validation interactions (`"random"`, `"temporal"`); default
            the same as `test_fraction`.
        val: carve out a validation split (single file only).
        drop_sparse_users: drop users left with no training interaction instead of raising
            (their validation/test rows are dropped too).
        seed: randomness of `"loo"` without timestamps and of `"random"`.

    Returns:
        The splits with contiguous ids.

    Raises:
        ValueError: a missing or malformed column, no rows left, a temporal split without
            timestamps, users without a training interaction, or `path` together with
            `train_path`. The message names the `--data.*` flag to change.
        FileNotFoundError: a file does not exist.

    Example:
        >>> import pandas as pd, tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "inter.csv")
        >>> pd.DataFrame({"uid": ["ann", "ann", "ann", "bob", "bob"],
        ...               "iid": ["x", "y", "z", "x", "z"]}).to_csv(f, index=False)
        >>> d = load_interactions(f, user_col="uid", item_col="iid")
        >>> d.user_ids, d.item_ids, len(d.train[0]), len(d.val[0]), len(d.test[0])
        (['ann', 'bob'], ['x', 'y', 'z'], 2, 1, 2)
    """
    import numpy as np

    pd = _require_pandas()
    if split not in SPLITS:
        raise ValueError(f"--data.split must be one of {list(SPLITS)}, got {split!r}")
    val_fraction = test_fraction if val_fraction is None else val_fraction
    if not 0.0 < test_fraction < 1.0 or not 0.0 <= val_fraction < 1.0:
        raise ValueError(
            "--data.test_fraction must be in (0, 1) and --data.val_fraction in [0, 1), got "
            f"{test_fraction} and {val_fraction}"
        )
    if (path is None) == (train_path is None):
        raise ValueError(
            "give either one interaction file (--data.path, split here) or pre-split files "
            "(--data.train_path with --data.val_path / --data.test_path), not "
            + ("both" if path is not None else "neither")
        )
    if path is not None and (val_path is not None or test_path is not None):
        raise ValueError(
            "--data.val_path / --data.test_path go with --data.train_path, not --data.path"
        )
    cols = _Columns(user_col, item_col, rating_col, timestamp_col, noise_col)

    # -- read every file into one frame with a "_part" column (0 train, 1 val, 2 test) --------
    files = (
        [(Path(path), -1)]
        if path is not None
        else [(Path(p), k) for p, k in ((train_path, 0), (val_path, 1), (test_path, 2)) if p]
    )
    frames = []
    for file, part in files:
        df = _check_table(_read_table(file, sep), file, cols, rating_threshold)
        df = df.assign(_part=part, _file=file.name)
        if noise_col is not None and part > 0:
            df = df.drop(columns=[noise_col])  # only training noise matters
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    name = Path(path).name if path is not None else Path(train_path).name
    has_time = timestamp_col in df.columns
    if split == "temporal" and path is not None and not has_time:
        raise ValueError(
            f"--data.split temporal needs a timestamp column, but {name!r} has no column "
            f"{timestamp_col!r} (its columns: {[c for c in df.columns if c[0] != '_']}); name "
            "it with --data.timestamp_col"
        )
    if has_time:
        df = df.sort_values(timestamp_col, kind="stable")
    if path is None:  # pre-split files: an interaction listed twice counts in the earliest split
        df = df.sort_values("_part", kind="stable")
    df = df.drop_duplicates([user_col, item_col], keep="first")  # the earliest one counts
    if len(df) == 0 or not (df["_part"] <= 0).any():
        raise ValueError(f"no interactions left in {name!r} (after --data.rating_threshold)")

    user_ids, u = _unique_ids(df[user_col])
    item_ids, i = _unique_ids(df[item_col])
    noisy = None
    if noise_col is not None:
        noisy = df[noise_col].fillna(0).astype(bool).to_numpy()
    n = len(u)
    n_users = len(user_ids)
    if path is None:
        part = df["_part"].to_numpy().astype(np.int64)
    else:
        part = np.zeros(n, dtype=np.int64)  # 0 train, 1 val, 2 test
        counts = np.bincount(u, minlength=n_users)
        if split == "loo":
            rng = np.random.default_rng(seed)
            key = np.arange(n) if has_time else rng.permutation(n)
            order = np.lexsort((key, u))  # by user, then time (or random)
            u_sorted = u[order]
            last = np.r_[u_sorted[1:] != u_sorted[:-1], True]
            part[order[last]] = 2
            if val:
                second = np.r_[last[1:], False] & (counts[u_sorted] >= 3)
                part[order[second]] = 1
        elif split == "random":
            rng = np.random.default_rng(seed)
            order = np.lexsort((rng.permutation(n), u))  # by user, random within the user
            u_sorted = u[order]
            start = np.r_[0, np.flatnonzero(u_sorted[1:] != u_sorted[:-1]) + 1]
            rank = np.arange(n) - np.repeat(start, counts[u_sorted[start]])
            c = counts[u_sorted]
            n_test = np.where(c >= 2, np.clip(np.rint(c * test_fraction), 1, c - 1), 0)
            n_val = np.rint(c * val_fraction) if val else np.zeros_like(c, dtype=float)
            n_val = np.clip(n_val, 0, np.maximum(c - 1 - n_test, 0))
            part[order[rank < n_test]] = 2
            part[order[(rank >= n_test) & (rank < n_test + n_val)]] = 1
        else:
            n_test = max(1, round(n * test_fraction))
            part[n - n_test :] = 2
            if val:
                n_val = round(n * val_fraction)
                part[max(0, n - n_test - n_val) : n - n_test] = 1
    has_train = np.bincount(u[part == 0], minlength=n_users) > 0
    sparse = np.flatnonzero(~has_train)
    if len(sparse):
        if not drop_sparse_users:
            how = f"the {split!r} split" if path is not None else "reading the pre-split files"
            example = [user_ids[k] for k in sparse[:5].tolist()]
            raise ValueError(
                f"{len(sparse)} user(s) of {name!r} would have no training interaction after "
                f"{how} (e.g. user ids {example}); remove them or pass "
                "--data.drop_sparse_users true"
            )
        keep = ~np.isin(u, sparse)
        u, i, part = u[keep], i[keep], part[keep]
        noisy = None if noisy is None else noisy[keep]
        kept_users, u = np.unique(u, return_inverse=True)
        user_ids = (
            user_ids[torch.from_numpy(kept_users)]
            if isinstance(user_ids, Tensor)
            else [user_ids[k] for k in kept_users.tolist()]
        )
    if len(u) == 0:
        raise ValueError(f"no users left in {name!r}")

    def pick(k: int) -> tuple[Tensor, Tensor]:
        m = part == k
        return torch.from_numpy(u[m].astype(np.int64)), torch.from_numpy(i[m].astype(np.int64))

    return InteractionData(
        num_users=len(user_ids),
        num_items=len(item_ids),
        train=pick(0),
        val=pick(1),
        test=pick(2),
        train_noisy=None if noisy is None else torch.from_numpy(noisy[part == 0].copy()),
        user_ids=user_ids,
        item_ids=item_ids,
    )


# ------------------------------------------------------------------------------- datasets
class _CSR:
    """Per-user item lists: `indptr [U+1]`, `items` sorted by user, `perm` = input order."""

    def __init__(self, users: Tensor, items: Tensor, num_users: int) -> None:
        self.perm = torch.argsort(users, stable=True)
        self.users = users[self.perm]
        self.items = items[self.perm]
        counts = torch.bincount(users, minlength=num_users)
        self.indptr = torch.zeros(num_users + 1, dtype=torch.long)
        self.indptr[1:] = counts.cumsum(0)
        self.degree = counts


class TrainBatches(IterableDataset):
    """One epoch of dict batches (module docstring schema); rank `r` of `w` takes every
    `w`-th batch, and every rank yields the same number of batches (DDP needs equal steps).

    Randomness depends only on `(seed, epoch, batch index)`, so a resumed run, or another
    world size, sees the same batches.

    Args:
        data: the interactions (only `train` and `train_noisy` are read).
        batch_size: instances per batch.
        pool_size: candidate positives per instance `k`.
        num_negatives: negatives per instance `K`.
        seed: sampling seed.
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
    """Users with at least one target item; `collate` builds dense `target` / `exclude`.

    Args:
        num_users: number of users.
        num_items: number of items (width of the dense masks).
        target: `(users, items)` of the interactions to retrieve.
        exclude: `(users, items)` pairs masked out of the ranking (seen items).
    """

    def __init__(
        self, num_users: int, num_items: int, target: tuple[Tensor, Tensor], exclude: list
    ) -> None:
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
    """Implicit feedback for the recsys recipe: synthetic by default, or your own files.

    Interface used by `lightning_losses.recipes.recsys`: `num_users`, `num_items`,
    `data.train` (after `setup`), dict training batches as in the module docstring.

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
            *(
                (k, v)
                for k, v in (
                    ("num_users", num_users),
                    ("num_items", num_items),
                    ("rank", rank),
                    ("positives_per_user", positives_per_user),
                )
                if v is not None
            ),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--data.{name} must be a positive int, got {value!r}")
        if not isinstance(drop_sparse_users, bool):
            raise TypeError(f"--data.drop_sparse_users must be a bool, got {drop_sparse_users!r}")
        if split not in SPLITS:
            raise ValueError(f"--data.split must be one of {list(SPLITS)}, got {split!r}")
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
        if noise_rate is not None and not 0.0 <= noise_rate < 1.0:
            raise ValueError(f"--data.noise_rate must be in [0, 1), got {noise_rate}")
        self.save_hyperparameters()
        self.data: InteractionData | None = None
        self._train: TrainBatches | None = None

    def _load(self) -> InteractionData:
        h = self.hparams
        if h.path is None and h.train_path is None:
            return synthetic_interactions(
                **{k: (v if h[k] is None else h[k]) for k, v in SYNTHETIC_DEFAULTS.items()},
                seed=h.seed,
            )
        return load_interactions(
            h.path,
            train_path=h.train_path,
            val_path=h.val_path,
            test_path=h.test_path,
            user_col=h.user_col,
            item_col=h.item_col,
            rating_col=h.rating_col,
            timestamp_col=h.timestamp_col,
            noise_col=h.noise_col,
            sep=h.sep,
            split=h.split,
            rating_threshold=h.rating_threshold,
            test_fraction=h.test_fraction,
            val_fraction=h.val_fraction,
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
