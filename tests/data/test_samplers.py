"""Mini-batch samplers: coverage, order, seeding, padding, negatives and conditioned examples."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.samplers import (
    ConditionedRows,
    HeldOutRows,
    RatingTriples,
    Sequences,
    UserRows,
    pad_sequences,
    sample_negatives,
)


@pytest.fixture
def matrix() -> sp.csr_array:
    """7 users x 6 items; user 2 and user 5 have no events."""
    dense = np.array(
        [
            [1, 0, 1, 0, 0, 0],
            [0, 1, 0, 0, 1, 1],
            [0, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 2],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 3, 0, 1, 0],
        ],
        dtype=np.float32,
    )
    return sp.csr_array(dense)


# ---------------------------------------------------------------------- UserRows
def test_user_rows_cover_active_users_once_in_order(matrix):
    sampler = UserRows(matrix, batch_size=2)
    batches = list(sampler())
    users = np.concatenate([u for u, _ in batches])
    assert users.tolist() == [0, 1, 3, 4, 6]  # empty users skipped, index order without rng
    assert len(sampler) == len(batches) == 3
    for u, rows in batches:
        assert (rows != matrix[u]).nnz == 0


def test_user_rows_shuffle_is_seeded(matrix):
    def order(seed):
        return np.concatenate([u for u, _ in UserRows(matrix, batch_size=3)(np.random.default_rng(seed))]).tolist()

    assert order(1) == order(1)
    assert sorted(order(1)) == [0, 1, 3, 4, 6]
    assert any(order(1) != order(s) for s in range(2, 6))
    with pytest.raises(ValueError, match="batch_size"):
        list(UserRows(matrix, batch_size=0)())


# ---------------------------------------------------------------------- HeldOutRows
def test_held_out_rows_pair_fold_in_and_target(matrix):
    dense = np.eye(7, 6, dtype=np.float32)
    dense[1] = 0  # user 1 has nothing to find
    target = sp.csr_array(dense)
    batches = list(HeldOutRows(matrix, target, batch_size=4)())
    users = np.concatenate([u for u, _, _ in batches])
    assert users.tolist() == [0, 2, 3, 4, 5]
    for u, fold_in, tgt in batches:
        assert (fold_in != matrix[u]).nnz == 0 and (tgt != target[u]).nnz == 0


# ---------------------------------------------------------------------- RatingTriples
def test_rating_triples_are_a_seeded_permutation():
    users, items = np.arange(10), np.arange(10)[::-1].copy()
    values = np.linspace(1, 5, 10).astype(np.float32)
    sampler = RatingTriples(users, items, values, batch_size=4)
    batches = list(sampler(np.random.default_rng(0)))
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    u = np.concatenate([b[0] for b in batches])
    assert sorted(u.tolist()) == list(range(10)) and u.tolist() != list(range(10))
    for bu, bi, bv in batches:
        assert np.array_equal(bi, items[bu]) and np.array_equal(bv, values[bu])  # triples stay together
    again = np.concatenate([b[0] for b in sampler(np.random.default_rng(0))])
    assert np.array_equal(u, again)
    assert np.concatenate([b[0] for b in sampler()]).tolist() == list(range(10))
    # the whole epoch at once (what the rating models slice per batch): the same batches, concatenated
    for got, part in zip(sampler.epoch(np.random.default_rng(0)), range(3), strict=True):
        assert np.array_equal(got, np.concatenate([b[part] for b in batches]))


# ---------------------------------------------------------------------- negatives
def test_negatives_are_never_seen_and_roughly_uniform():
    rng = np.random.default_rng(0)
    seen = sp.random_array((50, 40), density=0.5, rng=rng, format="csr", dtype=np.float32)
    users = np.repeat(np.arange(50), 4)
    neg = sample_negatives(seen, users, 50, np.random.default_rng(1))
    assert neg.shape == (200, 50)
    dense = seen.toarray() != 0
    assert not dense[users[:, None], neg].any()
    # uniform over each user's unseen items: per-user counts close to the expectation
    for u in range(0, 50, 7):
        rows = neg[users == u].ravel()
        unseen = np.flatnonzero(~dense[u])
        counts = np.bincount(rows, minlength=40)[unseen]
        expected = len(rows) / len(unseen)
        chi2 = ((counts - expected) ** 2 / expected).sum()
        assert chi2 < 3 * len(unseen), (u, chi2)  # df = |unseen| - 1; mean chi2 ~ df
    again = sample_negatives(seen, users, 50, np.random.default_rng(1))
    assert np.array_equal(neg, again)


def test_negatives_for_a_user_who_saw_everything_raise():
    seen = sp.csr_array(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="every item"):
        sample_negatives(seen, np.array([0]), 1, np.random.default_rng(0))


def test_negatives_with_no_seen_item_at_all():
    seen = sp.csr_array((3, 5), dtype=np.float32)
    neg = sample_negatives(seen, np.arange(3), 4, np.random.default_rng(0))
    assert neg.shape == (3, 4) and neg.min() >= 0 and neg.max() < 5


# ---------------------------------------------------------------------- sequences
def test_sequences_pad_keep_order_and_truncate_to_the_most_recent():
    # events sorted by user then time: user 0 has 5, user 1 none, user 2 has 2
    user_idx = np.array([0, 0, 0, 0, 0, 2, 2])
    item_idx = np.array([4, 3, 2, 1, 0, 7, 8])
    batches = list(Sequences(user_idx, item_idx, n_users=3, batch_size=10, max_length=3)())
    assert len(batches) == 1
    users, padded, lengths = batches[0]
    assert users.tolist() == [0, 2]
    assert lengths.tolist() == [3, 2]
    assert padded.tolist() == [[3, 2, 1], [8, 9, 0]]  # items + 1, the last 3 of user 0, 0 = padding


def test_sequences_shuffle_batches_and_widths():
    user_idx = np.repeat(np.arange(6), [1, 2, 3, 4, 5, 6])
    item_idx = np.arange(len(user_idx))
    sampler = Sequences(user_idx, item_idx, n_users=6, batch_size=2, max_length=10)
    batches = list(sampler(np.random.default_rng(3)))
    assert sorted(np.concatenate([b[0] for b in batches]).tolist()) == list(range(6))
    for users, padded, lengths in batches:
        assert padded.shape == (len(users), lengths.max())  # padded to the longest of the batch
        for row, u in enumerate(users):
            expected = item_idx[user_idx == u] + 1
            assert padded[row, : lengths[row]].tolist() == expected.tolist()
            assert (padded[row, lengths[row] :] == 0).all()
    assert [b[0].tolist() for b in batches] == [b[0].tolist() for b in sampler(np.random.default_rng(3))]


def test_pad_sequences_of_given_rows_including_empty_ones():
    indptr = np.array([0, 3, 3, 4])
    items = np.array([5, 6, 7, 9])
    padded, lengths = pad_sequences(indptr, items, np.array([1, 2, 0]), max_length=2)
    assert lengths.tolist() == [0, 1, 2]
    assert padded.tolist() == [[0, 0], [10, 0], [7, 8]]
    padded, lengths = pad_sequences(indptr, items, np.array([1]), max_length=5)
    assert padded.shape == (1, 1) and lengths.tolist() == [0]
    with pytest.raises(ValueError, match="max_length"):
        pad_sequences(indptr, items, np.array([0]), max_length=0)


# ---------------------------------------------------------------------- conditioned
@pytest.fixture
def genres() -> sp.csr_array:
    """6 items x 3 conditions; item 5 has none."""
    return sp.csr_array(np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=np.float32))


def test_conditioned_examples_and_targets(matrix, genres):
    sampler = ConditionedRows(matrix, genres, batch_size=100)
    users, conditions = sampler.examples
    # user 0: items 0, 2 -> conditions {0, 1}; user 1: items 1, 4, 5 -> {0, 1, 2}; user 3: 0-3 -> {0, 1, 2};
    # user 4: item 5 only -> no condition; user 6: items 2, 4 -> {1, 2}
    expected = [(0, -1), (0, 0), (0, 1), (1, -1), (1, 0), (1, 1), (1, 2), (3, -1), (3, 0), (3, 1), (3, 2)]
    expected += [(4, -1), (6, -1), (6, 1), (6, 2)]
    assert list(zip(users.tolist(), conditions.tolist(), strict=True)) == expected
    assert len(sampler) == 1
    ((b_users, b_conds, rows, targets),) = list(sampler())
    dense_genres = genres.toarray() > 0
    for r, (u, c) in enumerate(zip(b_users, b_conds, strict=True)):
        row = matrix[[u]].toarray()[0]
        assert np.array_equal(rows[[r]].toarray()[0], row)  # the input is the whole row
        want = row if c < 0 else row * dense_genres[:, c]
        assert np.array_equal(targets[[r]].toarray()[0], want)
        assert targets[[r]].nnz > 0  # every example has something to reconstruct


def test_conditioned_rows_seeded_shuffle_and_options(matrix, genres):
    sampler = ConditionedRows(matrix, genres, batch_size=4)
    first = [(b[0].tolist(), b[1].tolist()) for b in sampler(np.random.default_rng(5))]
    again = [(b[0].tolist(), b[1].tolist()) for b in sampler(np.random.default_rng(5))]
    assert first == again and len(first) == len(sampler) == 4
    pairs = sorted((u, c) for us, cs in first for u, c in zip(us, cs, strict=True))
    assert pairs == sorted(zip(*(a.tolist() for a in sampler.examples), strict=True))
    only_conditioned = ConditionedRows(matrix, genres, include_unconditioned=False)
    assert (only_conditioned.examples[1] >= 0).all() and len(only_conditioned.examples[0]) == 10
    with pytest.raises(ValueError, match="items"):
        ConditionedRows(matrix, genres[:4])
    with pytest.raises(ValueError, match="condition"):
        ConditionedRows(matrix, sp.csr_array((6, 0), dtype=np.float32))
