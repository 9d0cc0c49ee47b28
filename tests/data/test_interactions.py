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


def test_from_csr_keeps_the_explicit_flag_and_stored_zero_ratings():
    import scipy.sparse as sp

    ratings = sp.csr_array((np.array([4.0, 0.0, 5.0]), (np.array([0, 0, 1]), np.array([0, 2, 1]))), shape=(2, 3))
    data = Interactions.from_csr(ratings, explicit=True)
    assert data.explicit and len(data) == 3  # the stored 0.0 is a rating
    assert sorted(zip(data.user_idx.tolist(), data.item_idx.tolist(), data.values.tolist(), strict=True)) == [
        (0, 0, 4.0),
        (0, 2, 0.0),
        (1, 1, 5.0),
    ]
    assert not Interactions.from_csr(ratings).explicit  # the default stays implicit


def test_from_dense_ratings_is_the_cofi_input():
    # Y: items x users ratings, R: 1 where rated -- as in the collaborative-filtering notebook
    Y = np.array([[5.0, 0.0, 0.0], [0.0, 3.0, 0.0], [4.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    R = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    data = Interactions.from_dense_ratings(Y, R)
    assert data.explicit and (data.n_users, data.n_items) == (3, 4)
    events = sorted(zip(data.user_idx.tolist(), data.item_idx.tolist(), data.values.tolist(), strict=True))
    # user 1 rated item 0 with 0: an explicit zero rating is kept; the unrated zeros are not events
    assert events == [(0, 0, 5.0), (0, 2, 4.0), (1, 0, 0.0), (1, 1, 3.0), (2, 2, 1.0)]
    assert data.matrix.shape == (3, 4) and data.matrix.nnz == 5
    frame = data.to_frame()
    assert list(frame.columns) == ["user", "item", "rating"]
    # the same matrices users x items; NaN where unrated is fine; bool masks too
    Yt = np.where(R.T == 1, Y.T, np.nan)
    again = Interactions.from_dense_ratings(Yt, R.T.astype(bool), items_by_users=False)
    assert (again.matrix != data.matrix).nnz == 0 and again.explicit
    # without R: the non-zero, non-NaN cells are the ratings
    implicit_mask = Interactions.from_dense_ratings(Y)
    assert len(implicit_mask) == 4 and implicit_mask.explicit
    # named ids
    users, items = IdMap(["ann", "bob", "cy"], kind="user"), IdMap(["m1", "m2", "m3", "m4"])
    named = Interactions.from_dense_ratings(Y, R, users=users, items=items)
    assert named.to_frame().query("user == 'bob' and item == 'm1'")["rating"].tolist() == [0.0]


@pytest.mark.parametrize(
    ("Y", "R", "words"),
    [
        (np.zeros((2, 3)), np.zeros((3, 2)), "same"),
        (np.zeros(3), None, "2-D"),
        (np.zeros((2, 2)), np.array([[0, 2], [1, 0]]), "only 0 and 1"),
        (np.array([[np.nan, 1.0], [2.0, 3.0]]), np.ones((2, 2)), "Y[0, 0] = nan is rated"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), np.ones((2, 2)), "Y[0, 1] = inf is rated"),
        (np.array([[1.0, 1e39], [2.0, 3.0]]), np.ones((2, 2)), "float32 range"),
    ],
)
def test_from_dense_ratings_errors(Y, R, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        Interactions.from_dense_ratings(Y, R)
    with pytest.raises(ValueError, match="id maps"):
        Interactions.from_dense_ratings(np.ones((2, 3)), users=IdMap([1, 2]))
