from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recforge.data.filters import binarize, deduplicate, k_core, min_rating, positive_weight
from recforge.data.interactions import Interactions


@pytest.fixture
def ratings() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": ["a", "a", "b", "b", "c", "c"],
            "item": [1, 2, 1, 3, 2, 3],
            "rating": [5.0, 3.0, 3.5, np.nan, 4.0, 1.0],
            "timestamp": [10, 20, 30, 40, 50, 60],
            "review": ["r0", "r1", "r2", "r3", "r4", "r5"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )


def pairs(frame: pd.DataFrame) -> list[tuple]:
    return list(zip(frame["user"], frame["item"], strict=True))


# ---------------------------------------------------------------------- min_rating / binarize / weights
def test_min_rating_keeps_order_columns_and_resets_index(ratings):
    before = ratings.copy()
    out = min_rating(ratings, 3.5)
    assert pairs(out) == [("a", 1), ("b", 1), ("c", 2)]
    assert list(out.columns) == list(ratings.columns)
    assert out["review"].tolist() == ["r0", "r2", "r4"]
    assert out.index.tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(ratings, before)  # input untouched


def test_min_rating_strict_and_nan(ratings):
    assert pairs(min_rating(ratings, 3.5, strict=True)) == [("a", 1), ("c", 2)]
    assert len(min_rating(ratings, -np.inf)) == 5  # the NaN rating is dropped


def test_min_rating_other_column():
    f = pd.DataFrame({"user": [1, 2], "item": [1, 1], "score": [0.2, 0.9]})
    assert min_rating(f, 0.5, column="score")["user"].tolist() == [2]


def test_min_rating_missing_column_names_it_and_the_columns():
    f = pd.DataFrame({"user": [1], "item": [2], "weight": [3]})
    with pytest.raises(ValueError, match=r"'rating'.*\['user', 'item', 'weight'\]"):
        min_rating(f, 3.0)


def test_binarize_threshold_drops_values(ratings):
    out = binarize(ratings, 3.5)
    assert pairs(out) == [("a", 1), ("b", 1), ("c", 2)]
    assert list(out.columns) == ["user", "item", "timestamp", "review"]
    inter = Interactions.from_frame(out)
    assert not inter.explicit
    assert np.all(inter.values == 1.0)


def test_binarize_without_threshold_keeps_every_row(ratings):
    out = binarize(ratings)
    assert len(out) == len(ratings) and "rating" not in out.columns
    assert out.index.tolist() == list(range(6))
    # no value column at all is fine without a threshold ...
    assert binarize(out).equals(out)
    # ... but not with one
    with pytest.raises(ValueError, match="rating"):
        binarize(out, 3.0)


def test_binarize_drops_weight_too():
    f = pd.DataFrame({"user": [1, 1], "item": [1, 2], "weight": [0, 7], "rating": [1.0, 2.0]})
    assert list(binarize(f, 1.5).columns) == ["user", "item"]
    g = pd.DataFrame({"user": [1, 1], "item": [1, 2], "plays": [0, 7]})
    out = binarize(g, 0, strict=True, column="plays")
    assert out.to_dict("list") == {"user": [1], "item": [2]}


def test_positive_weight():
    f = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2], "weight": [0, 3, np.nan, 1]})
    out = positive_weight(f)
    assert pairs(out) == [(1, 2), (2, 2)]
    assert out["weight"].tolist() == [3, 1]  # kept: Interactions.from_frame uses it as the value
    assert pairs(positive_weight(f, threshold=2)) == [(1, 2)]
    with pytest.raises(ValueError, match="'plays'"):
        positive_weight(f, column="plays")


# ---------------------------------------------------------------------- k_core
def chain_frame() -> pd.DataFrame:
    # user 1: items 1,2,3; user 2: items 1,2; user 3: item 1; user 4: items 3, 4
    return pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 3, 4, 4],
            "item": [1, 2, 3, 1, 2, 1, 3, 4],
            "extra": list("abcdefgh"),
        }
    )


def test_k_core_iterative_known_outcome():
    out = k_core(chain_frame(), min_user=2, min_item=2)
    # item 4 (1 event) goes -> user 4 has 1 event -> goes -> item 3 has 1 -> goes -> user 3 (1 event) goes
    # -> user 1 has items 1, 2; users 1, 2 remain with items 1, 2 (each twice)
    assert pairs(out) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert out["extra"].tolist() == ["a", "b", "d", "e"]
    assert out.index.tolist() == [0, 1, 2, 3]


def test_k_core_single_pass_orders():
    f = chain_frame()
    # items first: drop item 4 -> counts users: 1:3, 2:2, 3:1, 4:1 -> drop users 3, 4
    items_first = k_core(f, min_user=2, min_item=2, iterative=False)
    assert pairs(items_first) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    # item 3 is left with a single event: one pass does not give a core
    assert items_first["item"].value_counts()[3] == 1
    # users first: drop user 3 -> items 1:2, 2:2, 3:2, 4:1 -> drop item 4
    users_first = k_core(f, min_user=2, min_item=2, iterative=False, order="users_first")
    assert pairs(users_first) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (4, 3)]


def test_k_core_user_only_like_liang2018():
    f = chain_frame()
    out = k_core(f, min_user=3, iterative=False)
    assert pairs(out) == [(1, 1), (1, 2), (1, 3)]


def test_k_core_counts_rows_or_pairs():
    f = pd.DataFrame({"user": [1, 1, 1, 2, 2, 2], "item": [1, 1, 2, 1, 2, 3]})
    assert len(k_core(f, min_user=3)) == 6  # user 1 has 3 rows
    assert pairs(k_core(f, min_user=3, count="pairs")) == [(2, 1), (2, 2), (2, 3)]


def test_k_core_trivial_and_empty():
    f = chain_frame()
    pd.testing.assert_frame_equal(k_core(f), f)
    pd.testing.assert_frame_equal(k_core(f, min_user=1, min_item=1), f)
    assert len(k_core(f, min_user=10)) == 0
    empty = f.iloc[:0]
    assert len(k_core(empty, min_user=3, min_item=3)) == 0


def test_k_core_warns_when_not_converged():
    with pytest.warns(RuntimeWarning, match="did not converge"):
        out = k_core(chain_frame(), min_user=2, min_item=2, max_iter=1)
    assert pairs(out) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]  # = one items-first pass


def test_k_core_errors():
    f = chain_frame()
    with pytest.raises(ValueError, match="order"):
        k_core(f, min_user=2, order="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count"):
        k_core(f, min_user=2, count="events")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'user'"):
        k_core(f.rename(columns={"user": "uid"}), min_user=2)
    with pytest.raises(ValueError, match=">= 0"):
        k_core(f, min_user=-1)
    with pytest.raises(ValueError, match="max_iter"):
        k_core(f, min_user=2, max_iter=0)


def naive_k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Reference: drop one offending user or item at a time until none is left."""
    f = frame
    while True:
        uc, ic = f["user"].value_counts(), f["item"].value_counts()
        bad_users = uc.index[uc < min_user]
        if len(bad_users):
            f = f[f["user"] != bad_users[0]]
            continue
        bad_items = ic.index[ic < min_item]
        if len(bad_items):
            f = f[f["item"] != bad_items[0]]
            continue
        return f.reset_index(drop=True)


events = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 8)), max_size=80).map(
    lambda rows: pd.DataFrame(rows, columns=["user", "item"], dtype=np.int64)
)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(0, 5), st.integers(0, 5), st.sampled_from(["items_first", "users_first"]))
def test_k_core_is_the_fixed_point(frame, min_user, min_item, order):
    out = k_core(frame, min_user=min_user, min_item=min_item, order=order)
    if len(out):
        assert out["user"].value_counts().min() >= min_user
        assert out["item"].value_counts().min() >= min_item
    # idempotent, and the unique largest core: equal to a naive one-at-a-time reference
    pd.testing.assert_frame_equal(k_core(out, min_user=min_user, min_item=min_item), out)
    pd.testing.assert_frame_equal(out, naive_k_core(frame, min_user, min_item))
    # a single pass keeps a superset of the core, and satisfies the filter it ran last
    once = k_core(frame, min_user=min_user, min_item=min_item, iterative=False, order=order)
    assert set(pairs(out)) <= set(pairs(once))
    last = "user" if order == "items_first" else "item"
    if len(once):
        assert once[last].value_counts().min() >= (min_user if last == "user" else min_item)


# ---------------------------------------------------------------------- deduplicate
@pytest.fixture
def repeats() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": [1, 1, 2, 1, 2, 1],
            "item": [7, 8, 7, 7, 7, 7],
            "timestamp": [50, 10, 30, 20, 5, 40],
            "rating": [1.0, 2.0, 3.0, 4.0, 5.0, 2.5],
            "tag": list("abcdef"),
        }
    )


def test_deduplicate_last_and_first_by_time(repeats):
    last = deduplicate(repeats)
    # (1,7): rows a(50), d(20), f(40) -> latest a; (2,7): c(30), e(5) -> latest c
    assert last["tag"].tolist() == ["a", "b", "c"]
    first = deduplicate(repeats, keep="first")
    assert first["tag"].tolist() == ["b", "d", "e"]  # kept rows stay in their original order
    assert first.index.tolist() == [0, 1, 2]


def test_deduplicate_by_row_order(repeats):
    assert deduplicate(repeats, by_time=False)["tag"].tolist() == ["b", "e", "f"]
    assert deduplicate(repeats, keep="first", by_time=False)["tag"].tolist() == ["a", "b", "c"]
    no_time = repeats.drop(columns="timestamp")
    assert deduplicate(no_time)["tag"].tolist() == ["b", "e", "f"]


def test_deduplicate_time_ties_follow_row_order():
    f = pd.DataFrame({"user": [1, 1, 1], "item": [1, 1, 1], "timestamp": [5, 5, 1], "tag": list("abc")})
    assert deduplicate(f)["tag"].tolist() == ["b"]
    assert deduplicate(f, keep="first")["tag"].tolist() == ["c"]


def test_deduplicate_sum_and_max(repeats):
    summed = deduplicate(repeats, keep="sum")
    assert summed["tag"].tolist() == ["a", "b", "c"]  # the latest row of each pair ...
    assert summed["rating"].tolist() == [7.5, 2.0, 8.0]  # ... with the pair's total
    maxed = deduplicate(repeats, keep="max")
    assert maxed["rating"].tolist() == [4.0, 2.0, 5.0]


def test_deduplicate_sum_keeps_integer_weights_and_counts_plain_events():
    f = pd.DataFrame({"user": [1, 1, 2], "item": [3, 3, 3], "weight": [2, 5, 1]})
    out = deduplicate(f, keep="sum")
    assert out["weight"].tolist() == [7, 1] and out["weight"].dtype == np.int64
    plain = f.drop(columns="weight")
    counted = deduplicate(plain, keep="sum")
    assert counted.to_dict("list") == {"user": [1, 2], "item": [3, 3], "weight": [2, 1]}
    assert deduplicate(plain, keep="max").to_dict("list") == {"user": [1, 2], "item": [3, 3]}


def test_deduplicate_value_col_and_errors(repeats):
    f = repeats.assign(score=[1, 1, 1, 1, 1, 1])
    assert deduplicate(f, keep="sum", value_col="score")["score"].tolist() == [3, 1, 2]
    with pytest.raises(ValueError, match="keep"):
        deduplicate(repeats, keep="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'nope'"):
        deduplicate(repeats, value_col="nope")
    with pytest.raises(ValueError, match="'item'"):
        deduplicate(repeats.drop(columns="item"))
    empty = deduplicate(repeats.iloc[:0].drop(columns="rating"), keep="sum")
    assert len(empty) == 0 and "weight" in empty.columns


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 20)), max_size=40),
    st.sampled_from(["last", "first", "sum", "max"]),
)
def test_deduplicate_gives_each_pair_once(rows, keep):
    f = pd.DataFrame(rows, columns=["user", "item", "timestamp"], dtype=np.int64)
    f["weight"] = np.arange(len(f), dtype=np.int64) + 1
    out = deduplicate(f, keep=keep)
    assert not out.duplicated(["user", "item"]).any()
    assert set(pairs(out)) == set(pairs(f))
    grouped = f.groupby(["user", "item"])["weight"]
    expected = {"sum": grouped.sum(), "max": grouped.max()}.get(keep)
    if expected is not None:
        got = out.set_index(["user", "item"])["weight"].sort_index()
        pd.testing.assert_series_equal(got, expected.sort_index(), check_names=False)
