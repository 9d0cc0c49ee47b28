"""Split protocols: partition invariants, sizes, seeding, id maps, and Liang et al. 2018 exactness on ML-100K."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.data.splits import (
    PRESETS,
    SPLITS,
    EvalPart,
    Split,
    _sample_negatives,
    density,
    every_nth_split,
    heldout_users_split,
    leave_last_out,
    liang2018,
    predefined_split,
    random_split,
    temporal_split,
)


# ---------------------------------------------------------------------- fixtures and helpers
def _frame(n_users: int = 60, n_items: int = 40, seed: int = 1) -> pd.DataFrame:
    """Events with distinct (user, item) pairs, 1..30 per user, timestamps with some ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        k = int(rng.integers(1, 31))
        for i in rng.choice(n_items, size=k, replace=False):
            rows.append((f"u{u:03d}", int(i) * 10, int(rng.integers(1, 6)), int(rng.integers(0, 50))))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


@pytest.fixture(scope="module")
def data() -> Interactions:
    return Interactions.from_frame(_frame())


def pairs(x: Interactions) -> list[tuple]:
    """Raw (user, item, timestamp) events, as a sorted list (a multiset)."""
    ts = x.timestamps if x.timestamps is not None else np.zeros(len(x), dtype=np.int64)
    users, items = x.users.ids_of(x.user_idx).tolist(), x.items.ids_of(x.item_idx).tolist()
    return sorted(zip(users, items, ts.tolist(), strict=True))


def event_set(x: Interactions) -> set[tuple]:
    out = pairs(x)
    assert len(set(out)) == len(out)
    return set(out)


def assert_weak_partition(data: Interactions, split: Split, *, complete: bool = True) -> None:
    train, test, valid = split.train, split.test, split.valid
    assert train.users is data.users and train.items is data.items
    parts = [event_set(train), event_set(test.target)]
    assert test.known_users and test.target.users is train.users and test.target.items is train.items
    assert test.history.users is train.users and test.history.items is train.items
    if valid is not None:
        assert valid.known_users and valid.history is train
        assert valid.target.users is train.users and valid.target.items is train.items
        parts.append(event_set(valid.target))
        assert event_set(test.history) >= event_set(train) | event_set(valid.target)
    else:
        assert test.history is train
    union = set().union(*parts)
    assert sum(map(len, parts)) == len(union), "parts overlap"
    if complete:
        assert union == event_set(data)


def same_split(a: Split, b: Split) -> bool:
    same = pairs(a.train) == pairs(b.train) and pairs(a.test.target) == pairs(b.test.target)
    if a.valid is not None:
        same = same and pairs(a.valid.target) == pairs(b.valid.target)
    return same


# ---------------------------------------------------------------------- random
def test_random_global_sizes_partition_seed(data):
    s = random_split(data, valid=0.2, test=0.1, seed=3)
    assert s.protocol == "random" and s.params == {"test": 0.1, "valid": 0.2, "seed": 3, "per_user": False}
    assert_weak_partition(data, s)
    n = len(data)
    assert len(s.test.target) == int(np.floor(0.1 * n + 0.5))
    assert len(s.valid.target) == int(np.floor(0.2 * n + 0.5))
    assert same_split(s, random_split(data, valid=0.2, test=0.1, seed=3))
    assert not same_split(s, random_split(data, valid=0.2, test=0.1, seed=4))
    s90 = random_split(data, test=0.1)
    assert s90.valid is None
    assert_weak_partition(data, s90)


def test_random_per_user_rule(data):
    s = random_split(data, valid=0.2, test=0.2, seed=0, per_user=True)
    assert_weak_partition(data, s)
    total = data.user_counts()
    n_test = s.test.target.user_counts()
    n_valid = s.valid.target.user_counts()
    n_train = s.train.user_counts()
    for c, t, v, tr in zip(total, n_test, n_valid, n_train, strict=True):
        want_t, want_v = int(np.floor(0.2 * c + 0.5)), int(np.floor(0.2 * c + 0.5))
        excess = max(want_t + want_v - (c - 1), 0)
        want_v -= min(excess, want_v)
        want_t -= excess - min(excess, int(np.floor(0.2 * c + 0.5)))
        assert (t, v) == (want_t, want_v)
        assert tr >= 1
    assert (n_test[total == 1] == 0).all() and (n_valid[total == 1] == 0).all()
    assert same_split(s, random_split(data, valid=0.2, test=0.2, seed=0, per_user=True))
    assert not same_split(s, random_split(data, valid=0.2, test=0.2, seed=1, per_user=True))


def test_presets_are_valid_calls(data):
    for name, (protocol, params) in PRESETS.items():
        small = {**params, "n_negatives": 5} if "n_negatives" in params else params  # only 40 items here
        s = SPLITS[protocol](data, **small)
        assert s.protocol == protocol, name
    s = SPLITS["random"](data, **PRESETS["random_70_20_10"][1])
    assert len(s.valid.target) == round(0.2 * len(data)) and len(s.test.target) == round(0.1 * len(data))


# ---------------------------------------------------------------------- every n-th
def test_every_nth(data):
    s = every_nth_split(data, n=8)
    assert_weak_partition(data, s)
    i = np.arange(len(data))
    held = i[i % 8 == 0]
    key = list(zip(data.users.ids_of(data.user_idx), data.items.ids_of(data.item_idx), data.timestamps, strict=True))
    assert event_set(s.valid.target) == {key[j] for j in held[0::2]}
    assert event_set(s.test.target) == {key[j] for j in held[1::2]}
    no_valid = every_nth_split(data, n=5, valid_fraction=0.0)
    assert no_valid.valid is None and len(no_valid.test.target) == len(i[i % 5 == 0])
    order = np.random.default_rng(0).permutation(len(data))
    given = every_nth_split(data, n=8, order=order)
    assert event_set(given.valid.target) == {key[j] for j in order[::8][0::2]}
    assert same_split(s, every_nth_split(data, n=8))


# ---------------------------------------------------------------------- leave last out
def test_leave_last_out_latest_and_eligibility(data):
    s = leave_last_out(data)
    assert_weak_partition(data, s)
    counts = data.user_counts()
    frame = data.to_frame(raw_ids=False)
    frame["pos"] = np.arange(len(frame))
    last = frame.sort_values(["user", "timestamp", "pos"]).groupby("user").tail(2)
    for u, g in last.groupby("user"):
        if counts[u] < 3:
            continue
        test_ev = s.test.target.select(s.test.target.user_idx == u)
        valid_ev = s.valid.target.select(s.valid.target.user_idx == u)
        assert test_ev.item_idx.tolist() == [g["item"].iloc[-1]]
        assert valid_ev.item_idx.tolist() == [g["item"].iloc[-2]]
        user_ts = data.timestamps[data.user_idx == u]
        assert test_ev.timestamps[0] == user_ts.max()
    assert (s.test.target.user_counts()[counts < 3] == 0).all()
    assert (s.test.target.user_counts()[counts >= 3] == 1).all()
    s0 = leave_last_out(data, n_valid=0)
    assert s0.valid is None
    assert (s0.test.target.user_counts()[counts >= 2] == 1).all()
    assert (s0.test.target.user_counts()[counts < 2] == 0).all()


def test_leave_last_out_negatives():
    rng = np.random.default_rng(5)
    n_users, n_items = 80, 150
    rows = [(u, i, t) for u in range(n_users) for t, i in enumerate(rng.choice(n_items, rng.integers(3, 40), False))]
    rows += [(n_users, i, i) for i in range(n_items - 7)]  # a user who saw all but 7 items: exact sampling path
    data = Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    s = leave_last_out(data, n_negatives=7, seed=11)
    for part in (s.test, s.valid):
        neg = part.negatives
        assert neg.shape == (data.n_users, 7) and neg.dtype == np.int64
        has_target = part.target.user_counts() > 0
        assert (neg[~has_target] == -1).all()
        assert (neg[has_target] >= 0).all()
        seen = data.binary
        for u in np.flatnonzero(has_target):
            assert len(set(neg[u])) == 7
            assert not set(neg[u]) & set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]])
    assert sorted(s.test.negatives[n_users]) == list(range(n_items - 7, n_items))
    again = leave_last_out(data, n_negatives=7, seed=11)
    assert np.array_equal(again.test.negatives, s.test.negatives)
    assert not np.array_equal(leave_last_out(data, n_negatives=7, seed=12).test.negatives, s.test.negatives)
    with pytest.raises(ValueError, match="n_negatives"):
        leave_last_out(data, n_negatives=8)


def test_sample_negatives_is_uniform_over_unseen():
    n_rows, n_items = 4000, 30
    seen = sp.csr_array(
        (np.ones(n_rows * 10, np.float32), (np.repeat(np.arange(n_rows), 10), np.tile(np.arange(10), n_rows))),
        shape=(n_rows, n_items),
    )
    neg = _sample_negatives(seen, np.arange(n_rows), 5, np.random.default_rng(0))
    assert (neg >= 10).all()
    assert all(len(set(r)) == 5 for r in neg[:200])
    freq = np.bincount(neg.ravel(), minlength=n_items)[10:]
    expected = n_rows * 5 / 20
    assert np.abs(freq - expected).max() < 5 * np.sqrt(expected)


# ---------------------------------------------------------------------- temporal
def test_temporal(data):
    s = temporal_split(data, test=0.2, valid=0.1)
    assert s.protocol == "temporal"
    assert_weak_partition(data, s, complete=False)
    assert s.train.timestamps.max() <= s.valid.target.timestamps.min()
    assert s.valid.target.timestamps.max() <= s.test.target.timestamps.min()
    n = len(data)
    n_test, n_valid = int(np.floor(0.2 * n + 0.5)), int(np.floor(0.1 * n + 0.5))
    assert len(s.train) == n - n_test - n_valid
    assert len(s.test.target) + s.params["dropped_test_events"] == n_test
    assert len(s.valid.target) + s.params["dropped_valid_events"] == n_valid
    assert len(s.test.history) == n - n_test  # train + the whole validation period
    known_u, known_i = s.train.user_counts() > 0, s.train.item_counts() > 0
    for part in (s.valid, s.test):
        assert known_u[part.target.user_idx].all() and known_i[part.target.item_idx].all()
    ts = pd.Series(data.timestamps)
    assert s.params["test_start"] == ts.sort_values(kind="stable").iloc[n - n_test]
    with pytest.raises(ValueError, match="timestamps"):
        temporal_split(Interactions.from_frame(_frame().drop(columns="timestamp")))


def test_temporal_drops_unknown_users_and_items():
    frame = pd.DataFrame(
        {"user": [1, 1, 2, 2, 1, 3, 2], "item": [1, 2, 1, 2, 3, 1, 1], "timestamp": [1, 2, 3, 4, 5, 6, 7]}
    )
    frame.loc[6, "item"] = 9  # unknown item at the end
    s = temporal_split(Interactions.from_frame(frame), test=3 / 7)
    # test period: (1, 3) unknown item, (3, 1) unknown user, (2, 9) unknown item
    assert len(s.test.target) == 0 and s.params["dropped_test_events"] == 3


# ---------------------------------------------------------------------- held-out users
def test_heldout_users(data):
    s = heldout_users_split(data, n_heldout=10, seed=2)
    assert s.protocol == "heldout_users"
    train_users = set(s.train.users.ids)
    items_in_train = set(s.train.items.ids)
    assert items_in_train == set(s.train.items.ids_of(s.train.item_idx))
    seen_heldout: set = set()
    for part in (s.valid, s.test):
        assert isinstance(part, EvalPart) and not part.known_users
        assert part.history.items == s.train.items and part.target.items == s.train.items
        users = set(part.history.users.ids)
        assert len(users) == 10 and not users & train_users and not users & seen_heldout
        seen_heldout |= users
        assert not event_set(part.history) & event_set(part.target)
        expected = {e for e in event_set(data) if e[0] in users and e[1] in items_in_train}
        assert event_set(part.history) | event_set(part.target) == expected
        c = part.history.user_counts() + part.target.user_counts()
        want = np.where(c >= 5, np.floor(0.2 * c), 0)
        assert np.array_equal(part.target.user_counts(), want)
    assert train_users | seen_heldout == set(data.users.ids)
    assert event_set(s.train) == {e for e in event_set(data) if e[0] in train_users}
    assert same_split(s, heldout_users_split(data, n_heldout=10, seed=2))
    assert not same_split(s, heldout_users_split(data, n_heldout=10, seed=3))


def test_heldout_users_explicit_lists(data):
    s = heldout_users_split(data, valid_users=0, test_users=["u000", "u001"], seed=0)
    assert s.valid is None and list(s.test.history.users.ids) == ["u000", "u001"]
    with pytest.raises(ValueError, match="test_users"):
        heldout_users_split(data, valid_users=0, test_users=["nobody"])
    with pytest.raises(ValueError, match="overlap"):
        heldout_users_split(data, valid_users=["u000"], test_users=["u000"])
    with pytest.raises(ValueError, match="n_heldout"):
        heldout_users_split(data, n_heldout=30)
    with pytest.raises(ValueError, match="n_heldout"):
        heldout_users_split(data)


# ---------------------------------------------------------------------- predefined
def test_predefined():
    frame = _frame(seed=4)
    rng = np.random.default_rng(0)
    part = rng.choice(3, size=len(frame), p=[0.7, 0.1, 0.2])
    tr, va, te = frame[part == 0], frame[part == 1], frame[part == 2]
    with pytest.warns(UserWarning, match="predefined split: dropped"):
        s = predefined_split(tr, te, valid_frame=va)
    assert s.protocol == "predefined"
    assert s.train.users == Interactions.from_frame(tr).users
    known = tr["user"].unique(), tr["item"].unique()

    def n_unknown(f: pd.DataFrame) -> int:
        return int((~(f["user"].isin(known[0]) & f["item"].isin(known[1]))).sum())

    assert s.params["dropped_test_events"] == n_unknown(te) and len(s.test.target) == len(te) - n_unknown(te)
    assert s.params["dropped_valid_events"] == n_unknown(va)
    assert s.valid.history is s.train and s.test.known_users
    assert event_set(s.test.history) == event_set(s.train) | event_set(s.valid.target)
    assert s.test.target.users is s.train.users and s.test.target.items is s.train.items


def test_predefined_reports_what_it_drops():
    train = pd.DataFrame({"user": [1, 1, 2, 2], "item": [10, 11, 10, 12], "rating": [4.0, 3.0, 5.0, 1.0]})
    test = pd.DataFrame(
        {"user": [1, 2, 3, 3, 4, 1], "item": [12, 11, 10, 11, 99, 98], "rating": [2.0, 3.0, 4.0, 5.0, 1.0, 2.0]}
    )
    # kept: (1, 12), (2, 11); dropped: user 3 twice, user 4 (and item 99), item 98 -> 4 events, 2 users, 2 items
    with pytest.warns(UserWarning) as caught:
        s = predefined_split(train, test)
    message = str(caught[0].message)
    assert "dropped 4 of 6 test events" in message and "2 unknown user(s), 2 unknown item(s)" in message
    assert (s.params["dropped_test_events"], s.params["dropped_test_users"], s.params["dropped_test_items"]) == (
        4,
        2,
        2,
    )
    assert len(s.test.target) == 2
    summary = s.summary()
    assert (summary["dropped_test_events"], summary["dropped_test_users"], summary["dropped_test_items"]) == (4, 2, 2)
    assert summary["dropped_train_events"] == 0
    with warnings.catch_warnings():  # nothing dropped: nothing to say
        warnings.simplefilter("error")
        clean = predefined_split(train, test.iloc[:2])
    assert clean.summary()["dropped_test_events"] == 0


def test_summary_has_the_density():
    train = pd.DataFrame({"user": [1, 1, 2, 3], "item": [10, 11, 10, 12]})
    s = predefined_split(train, train.iloc[:1])
    summary = s.summary()
    assert (summary["train_users"], summary["items"], summary["train_interactions"]) == (3, 3, 4)
    assert summary["train_density"] == pytest.approx(4 / 9)
    assert json.loads(json.dumps(summary)) == summary  # plain JSON numbers
    assert density(0, 0, 5) == 0.0


# ---------------------------------------------------------------------- bad arguments, registry
@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda d: random_split(d, test=0.0), "test"),
        (lambda d: random_split(d, test=1.2), "test"),
        (lambda d: random_split(d, test=0.5, valid=-0.1), "valid"),
        (lambda d: random_split(d, test=0.6, valid=0.5), "test \\+ valid"),
        (lambda d: temporal_split(d, test=0.7, valid=0.3), "test \\+ valid"),
        (lambda d: every_nth_split(d, n=1), "n must"),
        (lambda d: every_nth_split(d, valid_fraction=1.0), "valid_fraction"),
        (lambda d: every_nth_split(d, order=np.zeros(len(d), int)), "order"),
        (lambda d: leave_last_out(d, n_valid=-1), "n_valid"),
        (lambda d: leave_last_out(d, n_negatives=1000), "n_negatives"),
        (lambda d: heldout_users_split(d, n_heldout=5, target_fraction=0.0), "target_fraction"),
        (lambda d: heldout_users_split(d, n_heldout=5, min_events=0), "min_events"),
        (lambda d: liang2018(d, heldout_users=1000), "heldout_users"),
        (lambda d: liang2018(d.to_frame(), heldout_users=2, rating_col="stars"), "stars"),
    ],
)
def test_bad_arguments(data, call, name):
    with pytest.raises(ValueError, match=name):
        call(data)


def test_registry():
    assert set(SPLITS) == {
        "random",
        "every_nth",
        "leave_last_out",
        "temporal",
        "heldout_users",
        "liang2018",
        "predefined",
    }


def test_liang2018_on_synthetic_interactions(data):
    s = liang2018(data, heldout_users=5, min_rating=2.5)
    assert s.params["train_users"] == s.train.n_users == s.params["filtered_users"] - 10
    assert not s.train.explicit and (s.train.values == 1.0).all()
    assert not s.test.known_users and s.test.history.items is not None
    assert s.test.target.items == s.train.items


# ---------------------------------------------------------------------- Liang et al. 2018 on ML-100K
def _ml100k() -> Path:
    root = os.environ.get("RECFORGE_DATA")
    path = Path(root or "/nonexistent") / "ml-100k" / "u.data"
    if not root or not path.exists():
        pytest.skip("needs RECFORGE_DATA with ml-100k/u.data")
    return path


def _notebook_reference(raw_data: pd.DataFrame, heldout_users: int) -> dict:
    """dawenl/vae_cf VAE_ML20M_WWW2018.ipynb, transcribed cell by cell (loop version, legacy global RNG)."""
    raw_data = raw_data[raw_data["rating"] > 3.5]

    def get_count(tp, id):
        # the notebook's `groupby(id, as_index=False).size()` returned this Series in the pandas it was written for
        return tp[[id]].groupby(id).size()

    def filter_triplets(tp, min_uc=5, min_sc=0):
        if min_sc > 0:
            itemcount = get_count(tp, "movieId")
            tp = tp[tp["movieId"].isin(itemcount.index[itemcount >= min_sc])]
        if min_uc > 0:
            usercount = get_count(tp, "userId")
            tp = tp[tp["userId"].isin(usercount.index[usercount >= min_uc])]
        usercount, itemcount = get_count(tp, "userId"), get_count(tp, "movieId")
        return tp, usercount, itemcount

    raw_data, user_activity, _item_popularity = filter_triplets(raw_data)
    unique_uid = user_activity.index
    np.random.seed(98765)
    idx_perm = np.random.permutation(unique_uid.size)
    unique_uid = unique_uid[idx_perm]
    n_users = unique_uid.size
    tr_users = unique_uid[: (n_users - heldout_users * 2)]
    vd_users = unique_uid[(n_users - heldout_users * 2) : (n_users - heldout_users)]
    te_users = unique_uid[(n_users - heldout_users) :]
    train_plays = raw_data.loc[raw_data["userId"].isin(tr_users)]
    unique_sid = pd.unique(train_plays["movieId"])

    def split_train_test_proportion(data, test_prop=0.2):
        data_grouped_by_user = data.groupby("userId")
        tr_list, te_list = list(), list()
        np.random.seed(98765)
        for _, group in data_grouped_by_user:
            n_items_u = len(group)
            if n_items_u >= 5:
                idx = np.zeros(n_items_u, dtype="bool")
                idx[np.random.choice(n_items_u, size=int(test_prop * n_items_u), replace=False).astype("int64")] = True
                tr_list.append(group[np.logical_not(idx)])
                te_list.append(group[idx])
            else:
                tr_list.append(group)
        return pd.concat(tr_list), pd.concat(te_list)

    vad_plays = raw_data.loc[raw_data["userId"].isin(vd_users)]
    vad_plays = vad_plays.loc[vad_plays["movieId"].isin(unique_sid)]
    vad_plays_tr, vad_plays_te = split_train_test_proportion(vad_plays)
    test_plays = raw_data.loc[raw_data["userId"].isin(te_users)]
    test_plays = test_plays.loc[test_plays["movieId"].isin(unique_sid)]
    test_plays_tr, test_plays_te = split_train_test_proportion(test_plays)

    def as_pairs(tp):
        return sorted(zip(tp["userId"].tolist(), tp["movieId"].tolist(), strict=True))

    return {
        "tr_users": list(tr_users),
        "unique_sid": list(unique_sid),
        "train": as_pairs(train_plays),
        "vad_tr": as_pairs(vad_plays_tr),
        "vad_te": as_pairs(vad_plays_te),
        "test_tr": as_pairs(test_plays_tr),
        "test_te": as_pairs(test_plays_te),
    }


def test_liang2018_ml100k_exact():
    path = _ml100k()
    raw = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])
    state = np.random.get_state()
    try:
        ref = _notebook_reference(raw.rename(columns={"user": "userId", "item": "movieId"}), 100)
    finally:
        np.random.set_state(state)
    s = liang2018(raw, heldout_users=100)
    assert s.train.n_users == 738 and s.train.n_items == 1415 and s.train.nnz == 43606
    summary = s.summary()
    assert (summary["train_users"], summary["items"], summary["train_interactions"]) == (738, 1415, 43606)

    def as_pairs(x: Interactions) -> list[tuple]:
        return sorted(zip(x.users.ids_of(x.user_idx).tolist(), x.items.ids_of(x.item_idx).tolist(), strict=True))

    assert list(s.train.users.ids) == ref["tr_users"]
    assert list(s.train.items.ids) == ref["unique_sid"]
    assert as_pairs(s.train) == ref["train"]
    assert as_pairs(s.valid.history) == ref["vad_tr"]
    assert as_pairs(s.valid.target) == ref["vad_te"]
    assert as_pairs(s.test.history) == ref["test_tr"]
    assert as_pairs(s.test.target) == ref["test_te"]
    assert s.valid.n_users == 100 and s.test.n_users == 100
    assert not s.valid.known_users and not s.test.known_users
    assert s.valid.history.items == s.train.items and s.test.target.items == s.train.items
