"""IdMap and Interactions: indexing, views, duplicates, sub-sets and error messages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.ids import IdMap, UnknownIdError
from recforge.data.interactions import Interactions


def test_idmap_round_trip_and_errors():
    m, codes = IdMap.from_values([30, 10, 20, 10], kind="user")
    assert m.ids.tolist() == [10, 20, 30] and codes.tolist() == [2, 0, 1, 0]
    assert m.index([20, 30]).tolist() == [1, 2]
    assert m.ids_of([0, 2]).tolist() == [10, 30]
    assert IdMap.from_json(m.to_json()) == m
    assert m.index([99, 10], missing="minus_one").tolist() == [-1, 0]
    with pytest.raises(UnknownIdError, match=r"unknown user id.*99"):
        m.index([10, 99])
    assert m.coerce(["10", "x"]) == [10, "x"]
    with pytest.raises(ValueError, match="unique"):
        IdMap([1, 1])


def test_idmap_string_ids():
    m, _ = IdMap.from_values(["b", "a"])
    assert IdMap.from_json(m.to_json()) == m
    assert m.index(["b"]).tolist() == [1]


def frame():
    return pd.DataFrame(
        {
            "user": [7, 7, 5, 5, 9],
            "item": ["x", "y", "x", "z", "y"],
            "rating": [4.0, 3.0, 5.0, 1.0, 2.0],
            "timestamp": [20, 10, 5, 6, 1],
        }
    )


def test_from_frame_indexes_sorts_and_builds_csr():
    data = Interactions.from_frame(frame())
    assert (data.n_users, data.n_items, len(data), data.nnz) == (3, 3, 5, 5)
    assert data.explicit
    # sorted by user index (5, 7, 9) then time: user 7 saw y (t=10) before x (t=20)
    assert data.to_frame()[["user", "item"]].values.tolist() == [[5, "x"], [5, "z"], [7, "y"], [7, "x"], [9, "y"]]
    m = data.matrix
    assert m.dtype == np.float32 and m.shape == (3, 3)
    assert m[1, 0] == 4.0 and m[0, 2] == 1.0
    assert data.binary.data.tolist() == [1.0] * 5
    assert data.user_counts().tolist() == [2, 2, 1]
    assert data.item_counts().tolist() == [2, 2, 1]


def test_from_frame_values_default_to_weight_then_ones():
    f = frame().drop(columns="rating").assign(weight=[1.0, 2.0, 3.0, 4.0, 5.0])
    data = Interactions.from_frame(f)
    assert not data.explicit and sorted(data.values.tolist()) == [1, 2, 3, 4, 5]
    ones = Interactions.from_frame(f.drop(columns="weight"))
    assert ones.values.tolist() == [1.0] * 5


def test_from_frame_errors_name_the_column_and_id():
    with pytest.raises(ValueError, match=r"'uid'.*columns"):
        Interactions.from_frame(frame(), user_col="uid")
    users = IdMap([5, 7], kind="user")
    with pytest.raises(UnknownIdError, match="9"):
        Interactions.from_frame(frame(), users=users)


def test_info_frames_are_aligned_to_the_id_map():
    info = pd.DataFrame({"title": ["Z", "X", "Y"]}, index=pd.Index(["z", "x", "y"], name="item"))
    data = Interactions.from_frame(frame(), item_info=info)
    assert data.item_info["title"].tolist() == ["X", "Y", "Z"]
    sub = data.restrict_items(np.array([2, 0]))
    assert sub.item_info["title"].tolist() == ["Z", "X"]
    assert sub.items.ids.tolist() == ["z", "x"] and len(sub) == 3


def test_restrict_users_reindexes_in_given_order():
    data = Interactions.from_frame(frame())
    sub = data.restrict_users(np.array([2, 0]))  # users 9 and 5
    assert sub.users.ids.tolist() == [9, 5]
    assert sub.to_frame()[["user", "item"]].values.tolist() == [[9, "y"], [5, "x"], [5, "z"]]


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("last", {("u", "a"): 4.0}),
        ("first", {("u", "a"): 2.0}),
        ("sum", {("u", "a"): 7.0}),
        ("max", {("u", "a"): 4.0}),
    ],
)
def test_duplicates(how, expected):
    f = pd.DataFrame({"user": ["u"] * 3 + ["v"], "item": ["a", "a", "b", "a"], "weight": [1.0, 2.0, 5.0, 3.0]})
    f["timestamp"] = [1, 2, 3, 4]
    f.loc[1, "weight"] = 4.0  # events of (u, a): t=1 -> 1.0, t=2 -> 4.0; plus one at t=0 -> 2.0
    f = pd.concat([f, pd.DataFrame({"user": ["u"], "item": ["a"], "weight": [2.0], "timestamp": [0]})])
    data = Interactions.from_frame(f, duplicates=how)
    values = {(u, i): v for u, i, v, _ in data.to_frame().values.tolist()}
    assert values[("u", "a")] == expected[("u", "a")]
    assert len(data) == 3
    with pytest.raises(ValueError, match="duplicate events for user 'u' and item 'a'"):
        Interactions.from_frame(f, duplicates="error")
    assert len(Interactions.from_frame(f, duplicates="keep")) == 5


def test_from_csr_and_select():
    data = Interactions.from_frame(frame())
    again = Interactions.from_csr(data.matrix, data.users, data.items)
    assert (again.matrix != data.matrix).nnz == 0
    part = data.select(data.values >= 3)
    assert len(part) == 3 and part.users == data.users
