"""Implicit-feedback data: synthetic generator, file loader (and its errors), batch schema."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from lightning_losses.data import InteractionDataModule, load_interactions, synthetic_interactions
from lightning_losses.data.interactions import TrainBatches


def pairs_set(pair):
    return set(zip(pair[0].tolist(), pair[1].tolist(), strict=True))


@pytest.mark.parametrize("noise", [0.1, 0.2, 0.3])
def test_synthetic_noise_share_and_clean_disjoint_splits(noise):
    d = synthetic_interactions(num_users=50, num_items=300, positives_per_user=40, noise_rate=noise)
    assert d.train_noisy.float().mean().item() == pytest.approx(noise, abs=0.02)
    train, val, test = pairs_set(d.train), pairs_set(d.val), pairs_set(d.test)
    assert not (train & test) and not (train & val) and not (val & test)
    assert len(test) == 50 * 8 and len(val) == 50 * 4
    # Noisy items are not true positives: none of them is a held-out (true) positive either,
    # and clean training items are.
    noisy_pairs = {p for p, n in zip(zip(*[t.tolist() for t in d.train]), d.train_noisy) if n}
    assert not (noisy_pairs & (val | test))


def test_synthetic_is_seeded_and_structured():
    a, b = synthetic_interactions(seed=3), synthetic_interactions(seed=3)
    assert torch.equal(a.train[1], b.train[1]) and torch.equal(a.train_noisy, b.train_noisy)
    assert not torch.equal(a.train[1], synthetic_interactions(seed=4).train[1])


def write(tmp_path, df, name="inter.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def test_loader_leave_one_out_by_timestamp_and_rating_threshold(tmp_path):
    df = pd.DataFrame(
        {
            "user": [10, 10, 10, 10, 20, 20, 20, 20],
            "item": [1, 2, 3, 4, 1, 5, 6, 2],
            "rating": [5, 4, 1, 5, 5, 5, 4, 5],
            "timestamp": [4, 1, 2, 3, 1, 2, 3, 4],
        }
    )
    for name in ("inter.csv", "inter.parquet"):
        d = load_interactions(write(tmp_path, df, name), split="loo", rating_threshold=4)
        uid, iid = d.user_ids.tolist(), d.item_ids.tolist()
        orig = lambda pair, uid=uid, iid=iid: {(uid[u], iid[i]) for u, i in pairs_set(pair)}  # noqa: E731
        # user 10 keeps items 2(t1), 4(t3), 1(t4): test = 1, val = 4; user 20: test 2, val 6
        assert orig(d.test) == {(10, 1), (20, 2)}
        assert orig(d.val) == {(10, 4), (20, 6)}
        assert orig(d.train) == {(10, 2), (20, 1), (20, 5)}
        assert (d.num_users, d.num_items) == (2, 5)


def test_loader_temporal_split(tmp_path):
    df = pd.DataFrame(
        {
            "user": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1],
            "item": list(range(10)),
            "timestamp": list(range(10)),
        }
    )
    d = load_interactions(write(tmp_path, df), split="temporal", test_fraction=0.2)
    assert sorted(d.test[1].tolist()) == [8, 9] and sorted(d.val[1].tolist()) == [6, 7]
    assert sorted(d.train[1].tolist()) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "df,kwargs,match",
    [
        (
            pd.DataFrame({"user": [1, 2], "itm": [1, 2]}),
            {},
            r"no column 'item' \(its columns: \['user', 'itm'\]\); .* --data.item_col",
        ),
        (pd.DataFrame({"user": [1, 2], "item": [1.5, 2.0]}), {}, "'item' .* integer or string"),
        (pd.DataFrame({"user": [1, None], "item": [1, 2]}), {}, "'user' .* missing ids"),
        (
            pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 3]}),
            {},
            r"1 user\(s\) .* no training .* --data.drop_sparse_users true",
        ),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2]}),
            {"rating_threshold": 3},
            "--data.rating_threshold 3 needs a rating column.*--data.rating_col",
        ),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2]}),
            {"split": "temporal"},
            "--data.split temporal needs a timestamp column.*--data.timestamp_col",
        ),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2], "rating": [1, 2]}),
            {"rating_threshold": 3},
            "no interactions left",
        ),
        (pd.DataFrame({"user": [1, 1], "item": [1, 2]}), {"split": "rand"}, "--data.split must"),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2]}),
            {"noise_col": "noisy"},
            "no noise column 'noisy'.*--data.noise_col",
        ),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2], "noisy": [0, 2]}),
            {"noise_col": "noisy"},
            "must hold 0/1",
        ),
        (pd.DataFrame({"user": [1, 1], "item": [1, 2]}), {"test_fraction": 1.0}, "test_fraction"),
    ],
)
def test_loader_errors_are_clear_and_name_the_cli_flag(tmp_path, df, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_interactions(write(tmp_path, df), **kwargs)


def test_column_mapping_and_string_ids_csv_and_parquet(tmp_path):
    df = pd.DataFrame(
        {
            "uid": ["ann", "ann", "ann", "bob", "bob", "bob", -7, -7],
            "movie": ["m1", "m2", "m3", "m1", "m4", "m2", "m3", "m4"],
            "stars": [5, 4, 5, 5, 5, 1, 5, 5],
            "when": [1, 2, 3, 1, 2, 3, 1, 2],
        }
    )
    df["uid"] = df["uid"].astype(str)  # mixed ids read back as strings
    for name in ("inter.csv", "inter.parquet"):
        d = load_interactions(
            write(tmp_path, df, name),
            user_col="uid",
            item_col="movie",
            rating_col="stars",
            timestamp_col="when",
            rating_threshold=4,
        )
        assert d.user_ids == ["-7", "ann", "bob"] and d.item_ids == ["m1", "m2", "m3", "m4"]
        orig = {
            k: {(d.user_ids[u], d.item_ids[i]) for u, i in pairs_set(getattr(d, k))}
            for k in ("train", "val", "test")
        }
        # ann: m1 (t1) train, m2 (t2) val, m3 (t3) test; bob's m2 has 1 star and is dropped.
        assert orig["test"] == {("ann", "m3"), ("bob", "m4"), ("-7", "m4")}
        assert orig["val"] == {("ann", "m2")}
        assert orig["train"] == {("ann", "m1"), ("bob", "m1"), ("-7", "m3")}


def test_random_holdout_is_per_user_seeded_and_keeps_a_training_item(tmp_path):
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 30, (600,), generator=g)
    items = torch.randint(0, 200, (600,), generator=g)
    path = write(tmp_path, pd.DataFrame({"user": users.numpy(), "item": items.numpy()}))
    a = load_interactions(path, split="random", test_fraction=0.2, val_fraction=0.1, seed=1)
    b = load_interactions(path, split="random", test_fraction=0.2, val_fraction=0.1, seed=1)
    c = load_interactions(path, split="random", test_fraction=0.2, val_fraction=0.1, seed=2)
    assert pairs_set(a.test) == pairs_set(b.test) and pairs_set(a.test) != pairs_set(c.test)
    total = len(a.train[0]) + len(a.val[0]) + len(a.test[0])
    assert total == len(set(zip(users.tolist(), items.tolist(), strict=True)))
    assert len(a.test[0]) / total == pytest.approx(0.2, abs=0.03)
    assert len(a.val[0]) / total == pytest.approx(0.1, abs=0.03)
    per_user = torch.bincount(a.train[0], minlength=a.num_users)
    assert (per_user >= 1).all()  # every user keeps training interactions
    assert set(a.test[0].tolist()) == set(range(a.num_users))  # and gets a test item
    train, val, test = pairs_set(a.train), pairs_set(a.val), pairs_set(a.test)
    assert not (train & val) and not (train & test) and not (val & test)


def test_pre_split_files(tmp_path):
    train = write(tmp_path, pd.DataFrame({"u": [1, 1, 2, 2], "i": [10, 11, 10, 12]}), "tr.csv")
    val = write(tmp_path, pd.DataFrame({"u": [1], "i": [12]}), "va.csv")
    test = write(tmp_path, pd.DataFrame({"u": [1, 2, 2], "i": [13, 11, 10]}), "te.csv")
    d = load_interactions(
        train_path=train, val_path=val, test_path=test, user_col="u", item_col="i"
    )
    assert d.user_ids.tolist() == [1, 2] and d.item_ids.tolist() == [10, 11, 12, 13]
    orig = lambda pair: {(int(d.user_ids[u]), int(d.item_ids[i])) for u, i in pairs_set(pair)}  # noqa: E731
    assert orig(d.train) == {(1, 10), (1, 11), (2, 10), (2, 12)}
    assert orig(d.val) == {(1, 12)}
    # (2, 10) is also a training interaction: it counts once, in train.
    assert orig(d.test) == {(1, 13), (2, 11)}
    only_test = write(tmp_path, pd.DataFrame({"u": [3], "i": [10]}), "te2.csv")
    with pytest.raises(ValueError, match=r"pre-split files .* --data.drop_sparse_users true"):
        load_interactions(train_path=train, test_path=only_test, user_col="u", item_col="i")
    d = load_interactions(
        train_path=train, test_path=only_test, user_col="u", item_col="i", drop_sparse_users=True
    )
    assert d.user_ids.tolist() == [1, 2] and len(d.test[0]) == 0 and len(d.val[0]) == 0
    with pytest.raises(ValueError, match="either one interaction file"):
        load_interactions(train, train_path=train)
    with pytest.raises(ValueError, match=r"--data.val_path / --data.test_path go with"):
        load_interactions(train, test_path=test, user_col="u", item_col="i")


def test_noise_column_makes_noisy_share_measurable(tmp_path):
    g = torch.Generator().manual_seed(0)
    users = torch.arange(40).repeat_interleave(10)
    items = torch.stack([torch.randperm(100, generator=g)[:10] for _ in range(40)]).reshape(-1)
    noisy = torch.rand(400, generator=g) < 0.3
    df = pd.DataFrame({"user": users.numpy(), "item": items.numpy(), "bad": noisy.numpy()})
    path = write(tmp_path, df, "noisy.parquet")
    dm = InteractionDataModule(
        path=str(path), noise_col="bad", split="random", batch_size=32, pool_size=3, seed=0
    )
    dm.setup("fit")
    d = dm.data
    truth = {(u, i): n for u, i, n in zip(users.tolist(), items.tolist(), noisy.tolist())}
    uid, iid = d.user_ids.tolist(), d.item_ids.tolist()
    got = [truth[(uid[u], iid[i])] for u, i in zip(*[t.tolist() for t in d.train], strict=True)]
    assert d.train_noisy.tolist() == got
    share = sum(got) / len(got)
    seen = torch.cat([b["pos_is_noisy"] for b in dm.train_dataloader()])
    assert seen.float().mean().item() == pytest.approx(share)  # one epoch = every interaction


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"noise_rate": 0.2},
            r"--data.noise_rate only apply to the synthetic data .* --data.path.*--data.noise_col",
        ),
        ({"num_users": 10, "rank": 2}, "--data.num_users, --data.rank only apply"),
        ({"train_path": "x.csv"}, "not both"),
        ({"split": "time"}, "--data.split must be one of"),
        ({"batch_size": 0}, "--data.batch_size must be ≥ 1, got 0"),
    ],
)
def test_datamodule_rejects_ignored_or_conflicting_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InteractionDataModule(path="inter.csv", **kwargs)


def test_datamodule_option_errors_without_a_file():
    with pytest.raises(ValueError, match=r"--data.noise_col needs a file"):
        InteractionDataModule(noise_col="bad")
    with pytest.raises(ValueError, match=r"--data.val_path and --data.test_path need"):
        InteractionDataModule(test_path="t.csv")
    with pytest.raises(ValueError, match="noise_rate"):
        InteractionDataModule(noise_rate=1.0)


def test_loader_file_errors_and_dropping_sparse_users(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_interactions(tmp_path / "nope.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="csv"):
        load_interactions(tmp_path / "x.json")
    df = pd.DataFrame({"user": [1, 1, 1, 2], "item": [1, 2, 3, 4]})
    d = load_interactions(write(tmp_path, df), drop_sparse_users=True)
    assert d.user_ids.tolist() == [1] and len(d.train[0]) == 1


def test_train_batches_schema_pools_and_negatives():
    d = synthetic_interactions(num_users=30, num_items=200, positives_per_user=20)
    ds = TrainBatches(d, batch_size=64, pool_size=4, num_negatives=3, seed=0)
    positives = pairs_set(d.train)
    noisy_of = {p: bool(n) for p, n in zip(zip(*[t.tolist() for t in d.train]), d.train_noisy)}
    seen = []
    for batch in ds:
        u, cand, neg = batch["user"], batch["cand_items"], batch["neg_item"]
        assert cand.shape == (len(u), 4) and neg.shape == (len(u), 3)
        assert torch.equal(batch["pos_item"], cand[:, 0])
        for row in range(len(u)):
            uu = int(u[row])
            assert all((uu, int(i)) in positives for i in cand[row])
            assert all((uu, int(j)) not in positives for j in neg[row])
            assert [noisy_of[(uu, int(i))] for i in cand[row]] == batch["cand_noisy"][row].tolist()
        seen += list(zip(u.tolist(), cand[:, 0].tolist(), strict=True))
    # One epoch = every training interaction exactly once (standard BPR epoch).
    assert sorted(seen) == sorted(positives)


def test_train_batches_rank_sharding_and_epoch_determinism():
    d = synthetic_interactions(num_users=30, num_items=200, positives_per_user=20)
    make = lambda: TrainBatches(d, batch_size=50, pool_size=3, num_negatives=1, seed=1)  # noqa: E731
    full = list(make())
    shards = []
    for rank in (0, 1):
        ds = make()
        ds.rank, ds.world_size = rank, 2
        shards.append(list(ds))
    assert len(shards[0]) == len(shards[1]) == len(full) // 2
    assert torch.equal(shards[0][0]["user"], full[0]["user"])
    assert torch.equal(shards[1][0]["cand_items"], full[1]["cand_items"])
    ds = make()
    first, second = list(ds), list(ds)  # epochs 0 and 1 differ, a fresh dataset repeats epoch 0
    assert not torch.equal(first[0]["user"], second[0]["user"])
    assert torch.equal(first[0]["neg_item"], full[0]["neg_item"])


def test_datamodule_eval_batches_exclude_seen_items():
    dm = InteractionDataModule(num_users=20, num_items=80, positives_per_user=10, eval_batch_size=8)
    dm.setup("fit")
    d = dm.data
    train, val = pairs_set(d.train), pairs_set(d.val)
    for loader, target, excluded in (
        (dm.val_dataloader(), val, train),
        (dm.test_dataloader(), pairs_set(d.test), train | val),
    ):
        got_t, got_x = set(), set()
        for b in loader:
            for row, u in enumerate(b["user"].tolist()):
                got_t |= {(u, i) for i in b["target"][row].nonzero().flatten().tolist()}
                got_x |= {(u, i) for i in b["exclude"][row].nonzero().flatten().tolist()}
        assert got_t == target and got_x == excluded


@pytest.mark.parametrize("flag", ["path", "train_path"])
def test_a_missing_file_fails_when_the_module_is_built(tmp_path, flag):
    with pytest.raises(FileNotFoundError, match=rf"--data\.{flag} '.*nope\.csv': no such file"):
        InteractionDataModule(**{flag: str(tmp_path / "nope.csv")})
    (tmp_path / "train.csv").write_text("user,item\n0,1\n")
    with pytest.raises(FileNotFoundError, match=r"--data\.val_path '.*nope\.csv'"):
        InteractionDataModule(
            train_path=str(tmp_path / "train.csv"), val_path=str(tmp_path / "nope.csv")
        )
