from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.filters import min_rating
from recforge.data.interactions import Interactions
from recforge.data.synthetic import (
    ML20M_RATING_DISTRIBUTION,
    ML20M_SHAPE,
    make_implicit,
    make_implicit_frame,
    make_ml20m_like,
    write_ratings_csv,
)


@pytest.fixture(scope="module")
def small() -> Interactions:
    return make_implicit(2_000, 500, 50_000, seed=0)


def keys(x: Interactions) -> np.ndarray:
    return x.user_idx * np.int64(x.n_items) + x.item_idx


# ---------------------------------------------------------------------- shape and invariants
def test_exact_shape_and_count(small):
    assert (small.n_users, small.n_items, len(small)) == (2_000, 500, 50_000)
    assert small.nnz == 50_000  # no duplicate (user, item) pairs
    assert len(np.unique(keys(small))) == 50_000
    assert small.users.ids.tolist() == list(range(2_000))
    assert not small.explicit and np.all(small.values == 1.0)


def test_per_user_minimum_and_long_tailed_activity(small):
    counts = small.user_counts()
    assert counts.min() >= 5
    assert counts.max() <= 250  # max_user_share=0.5 of the items
    assert counts.max() > 5 * np.median(counts)


def test_item_popularity_is_long_tailed():
    x = make_implicit(3_000, 3_000, 150_000, seed=1)
    counts = np.sort(x.item_counts())[::-1]
    share = counts / counts.sum()
    assert share[:30].sum() > 0.05  # top 1% of the items: > 5x their uniform share
    assert share[:300].sum() > 0.3  # top 10%: > 3x
    assert counts[0] > 10 * np.median(counts)
    assert counts[0] < 0.6 * x.n_users  # but the head is not in everyone's history


def test_timestamps_strictly_increase_per_user(small):
    u, t = small.user_idx, small.timestamps
    assert t is not None and t.dtype == np.int64
    assert np.all(np.diff(u) >= 0)
    same = u[1:] == u[:-1]
    assert np.all(np.diff(t)[same] > 0)
    assert t.min() >= 946_684_800 and t.max() < 1_427_760_000
    # the order of a user's items is random, not by item index
    assert not np.all(np.diff(small.item_idx)[same] > 0)
    assert small.sorted() is small  # already in Interactions order


def test_without_timestamps_sorted_by_user_then_item():
    x = make_implicit(100, 80, 1_000, timestamps=False)
    assert x.timestamps is None
    assert np.all(np.diff(keys(x)) > 0)


def test_frame_matches_interactions(small):
    f = make_implicit_frame(2_000, 500, 50_000, seed=0)
    assert list(f.columns) == ["user", "item", "timestamp"]
    assert all(f[c].dtype == np.int64 for c in f.columns)
    np.testing.assert_array_equal(f["user"].to_numpy(), small.user_idx)
    np.testing.assert_array_equal(f["item"].to_numpy(), small.item_idx)
    np.testing.assert_array_equal(f["timestamp"].to_numpy(), small.timestamps)
    again = Interactions.from_frame(f)
    np.testing.assert_array_equal(again.item_idx, small.item_idx)


def test_seeded(small):
    same = make_implicit(2_000, 500, 50_000, seed=0)
    np.testing.assert_array_equal(keys(same), keys(small))
    np.testing.assert_array_equal(same.timestamps, small.timestamps)
    other = make_implicit(2_000, 500, 50_000, seed=1)
    assert len(other) == 50_000
    assert len(np.intersect1d(keys(other), keys(small))) < 0.5 * 50_000


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((10, 20, 100), {}),  # every user at the cap of 10 items
        ((50, 30, 600), {"n_clusters": 100, "cluster_strength": 1.0}),  # clusters without items
        ((200, 400, 30_000), {"cluster_strength": 1.0, "max_user_share": 0.9}),  # heavy users
        ((1, 5, 5), {}),
    ],
)
def test_exact_count_in_edge_cases(shape, kwargs):
    x = make_implicit(*shape, **kwargs)
    assert len(x) == x.nnz == shape[2]
    assert x.user_counts().min() >= min(5, shape[1])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="min_per_user"):
        make_implicit(100, 50, 499)  # fewer than 5 per user
    with pytest.raises(ValueError, match="max_user_share"):
        make_implicit(10, 20, 101)  # more than half the items per user
    with pytest.raises(ValueError, match="cluster_strength"):
        make_implicit(10, 20, 50, cluster_strength=1.5)
    with pytest.raises(ValueError, match="scale"):
        make_ml20m_like(scale=0)


def test_ml20m_like_scales_the_shape():
    x = make_ml20m_like(seed=3, scale=0.02)
    assert x.n_users == round(ML20M_SHAPE["n_users"] * 0.02)
    assert x.n_items == round(ML20M_SHAPE["n_items"] * 0.02)
    assert len(x) == x.nnz == round(ML20M_SHAPE["n_interactions"] * 0.02)


# ---------------------------------------------------------------------- learnable structure
def recall_at_10(train: sp.csr_array, test: sp.csr_array, scores: np.ndarray) -> float:
    scores = np.where(train.toarray() > 0, -np.inf, scores)  # never recommend what is known
    top = np.argpartition(-scores, 10, axis=1)[:, :10]
    truth = test.toarray() > 0
    hits = np.take_along_axis(truth, top, axis=1).sum(axis=1)
    n = truth.sum(axis=1)
    ok = n > 0
    return float(np.mean(hits[ok] / np.minimum(n[ok], 10)))


def cooccurrence_vs_popularity(x: Interactions) -> tuple[float, float]:
    rng = np.random.default_rng(42)
    coo = x.binary.tocoo()
    held = rng.random(coo.nnz) < 0.2
    train = sp.csr_array((coo.data[~held], (coo.row[~held], coo.col[~held])), shape=coo.shape)
    test = sp.csr_array((coo.data[held], (coo.row[held], coo.col[held])), shape=coo.shape)
    cooc = (train.T @ train).toarray()
    np.fill_diagonal(cooc, 0.0)
    item_item = train @ cooc
    popularity = np.broadcast_to(train.sum(axis=0), coo.shape)
    return recall_at_10(train, test, item_item), recall_at_10(train, test, popularity)


def test_structure_is_learnable(small):
    item_item, popularity = cooccurrence_vs_popularity(small)
    assert item_item > 2 * popularity
    assert item_item - popularity > 0.1


def test_no_cluster_structure_means_nothing_to_learn():
    flat = make_implicit(2_000, 500, 50_000, seed=0, cluster_strength=0.0)
    item_item, popularity = cooccurrence_vs_popularity(flat)
    assert abs(item_item - popularity) < 0.05


# ---------------------------------------------------------------------- ratings.csv
def test_write_ratings_csv_movielens_format(tmp_path):
    x = make_implicit(3_000, 400, 60_000, seed=5)
    path = write_ratings_csv(x, tmp_path / "ratings.csv", seed=1)
    assert path.read_text().splitlines()[0] == "userId,movieId,rating,timestamp"
    assert path.read_text().splitlines()[1].split(",")[2] in {f"{r:.1f}" for r in ML20M_RATING_DISTRIBUTION}
    df = pd.read_csv(path)
    assert len(df) == 60_000
    assert list(df.columns) == ["userId", "movieId", "rating", "timestamp"]
    order = np.lexsort((df["movieId"], df["userId"]))
    np.testing.assert_array_equal(order, np.arange(len(df)))  # sorted by user, then movie
    assert set(df["rating"]) <= set(ML20M_RATING_DISTRIBUTION)
    share = df["rating"].value_counts(normalize=True)
    for rating, p in ML20M_RATING_DISTRIBUTION.items():
        assert abs(share.get(rating, 0.0) - p) < 0.03
    # the events and their timestamps are the data's own
    written = set(zip(df["userId"], df["movieId"], df["timestamp"], strict=True))
    assert written == set(zip(x.user_idx, x.item_idx, x.timestamps, strict=True))


def test_write_ratings_csv_positives_only_and_own_ratings(tmp_path):
    f = make_implicit_frame(300, 100, 3_000, seed=2)
    pos = pd.read_csv(write_ratings_csv(f, tmp_path / "pos.csv", explicit=False))
    assert pos["rating"].min() >= 3.5
    assert len(min_rating(pos, 3.5, column="rating")) == len(pos)

    own = pd.DataFrame({"user": ["u2", "u1", "u1"], "item": ["m1", "m2", "m1"], "rating": [1.0, 4.5, 2.0]})
    path = write_ratings_csv(own, tmp_path / "own.csv")
    lines = path.read_text().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == ["u1,m1,2.0", "u1,m2,4.5", "u2,m1,1.0"]
    assert all(946_684_800 <= int(line.rsplit(",", 1)[1]) < 1_427_760_000 for line in lines[1:])
