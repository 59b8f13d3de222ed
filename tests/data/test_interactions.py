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
            r"missing required column\(s\) \['item'\]",
        ),
        (pd.DataFrame({"user": ["a", "b"], "item": [1, 2]}), {}, "'user' .* integer ids"),
        (pd.DataFrame({"user": [1, 2], "item": [1.5, 2.0]}), {}, "'item' .* integer ids"),
        (pd.DataFrame({"user": [1, -2], "item": [1, 2]}), {}, "negative ids"),
        (pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 3]}), {}, r"1 user\(s\) .* no training"),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2]}),
            {"rating_threshold": 3},
            "'rating' column",
        ),
        (pd.DataFrame({"user": [1, 1], "item": [1, 2]}), {"split": "temporal"}, "'timestamp'"),
        (
            pd.DataFrame({"user": [1, 1], "item": [1, 2], "rating": [1, 2]}),
            {"rating_threshold": 3},
            "no interactions left",
        ),
        (pd.DataFrame({"user": [1, 1], "item": [1, 2]}), {"split": "random"}, "split must be"),
    ],
)
def test_loader_errors_are_clear(tmp_path, df, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_interactions(write(tmp_path, df), **kwargs)


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
