"""Your own implicit feedback: CSV/TSV/Parquet files read, id-remapped and split.

[load_interactions][lightning_losses.data.interactions.load_interactions] reads files with any
column names (`user_col`, `item_col`, ...), integer or string ids, one file split here
(`"loo"`, `"random"`, `"temporal"`) or pre-split files (`train_path`, `val_path`,
`test_path`), and an optional 0/1 noise column (`noise_col`). pandas (and pyarrow for Parquet)
is imported only here, when a file is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightning_losses.data.interactions.splits import InteractionData
from lightning_losses.validation import check_choice, check_number

__all__ = ["SPLITS", "load_interactions"]

SPLITS = ("loo", "random", "temporal")


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


def _split_parts(
    u: Any,
    n_users: int,
    split: str,
    has_time: bool,
    val: bool,
    test_fraction: float,
    val_fraction: float,
    seed: int,
) -> Any:
    """The split of each row of one file: 0 train, 1 val, 2 test (rows in time order if timed).

    `u` holds the contiguous user id of each row; see `load_interactions` for the splits.
    """
    import numpy as np

    n = len(u)
    part = np.zeros(n, dtype=np.int64)
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
        user_test = np.where(c >= 2, np.clip(np.rint(c * test_fraction), 1, c - 1), 0)
        user_val = np.rint(c * val_fraction) if val else np.zeros_like(c, dtype=float)
        user_val = np.clip(user_val, 0, np.maximum(c - 1 - user_test, 0))
        part[order[rank < user_test]] = 2
        part[order[(rank >= user_test) & (rank < user_test + user_val)]] = 1
    else:  # temporal: a global cut over the time-ordered rows
        n_test = max(1, round(n * test_fraction))
        part[n - n_test :] = 2
        if val:
            n_val = round(n * val_fraction)
            part[max(0, n - n_test - n_val) : n - n_test] = 1
    return part


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
    check_choice("--data.split", split, SPLITS)
    check_number(
        "--data.test_fraction",
        test_fraction,
        low=0.0,
        high=1.0,
        low_inclusive=False,
        high_inclusive=False,
    )
    val_fraction = test_fraction if val_fraction is None else val_fraction
    check_number("--data.val_fraction", val_fraction, low=0.0, high=1.0, high_inclusive=False)
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
    for file, file_part in files:
        df = _check_table(_read_table(file, sep), file, cols, rating_threshold)
        df = df.assign(_part=file_part, _file=file.name)
        if noise_col is not None and file_part > 0:
            df = df.drop(columns=[noise_col])  # only training noise matters
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    name = files[0][0].name  # the one file, or the training file
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
    n_users = len(user_ids)
    if path is None:
        part = df["_part"].to_numpy().astype(np.int64)
    else:
        part = _split_parts(u, n_users, split, has_time, val, test_fraction, val_fraction, seed)
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
