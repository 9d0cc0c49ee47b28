"""Confidence weighting: every scheme's values on a hand-made 3 x 4 matrix, computed entry by entry from its formula;
new rows weighted with the training statistics; BM25 and tf-idf equal to the ``implicit`` package's functions when
it is installed; clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.data.weighting import fit_weighting, weight_matrix

#: users x items play counts; user 2 has one item, item 0 two users
DENSE = np.array(
    [
        [1.0, 0.0, 3.0, 0.0],
        [2.0, 4.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 5.0],
    ]
)
MATRIX = sp.csr_array(DENSE)
ENTRIES = [(0, 0), (0, 2), (1, 0), (1, 1), (2, 3)]  # the stored entries, in CSR order


def values(weighted: sp.csr_array) -> list[float]:
    assert weighted.dtype == np.float32
    np.testing.assert_array_equal(weighted.indptr, MATRIX.indptr)
    np.testing.assert_array_equal(weighted.indices, MATRIX.indices)
    return weighted.data.tolist()


def test_none_binary_linear_log():
    assert values(weight_matrix(MATRIX, "none")) == [1, 3, 2, 4, 5]
    assert values(weight_matrix(MATRIX, "binary")) == [1, 1, 1, 1, 1]
    assert values(weight_matrix(MATRIX, "linear", alpha=40.0)) == [41, 121, 81, 161, 201]
    got = values(weight_matrix(MATRIX, "log", alpha=2.0, eps=0.5))
    expected = [1 + 2 * math.log(1 + r / 0.5) for r in (1, 3, 2, 4, 5)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # defaults alpha = 1, eps = 1: 1 + log(1 + r)
    np.testing.assert_allclose(values(weight_matrix(MATRIX, "log")), [1 + math.log(1 + r) for r in (1, 3, 2, 4, 5)])


def test_bm25_items_as_documents():
    k1, b = 1.5, 0.75
    # documents = items: idf per user from its number of items among the 4 items; item lengths 3, 4, 3, 5
    idf = {0: math.log(4) - math.log(3), 1: math.log(4) - math.log(3), 2: math.log(4) - math.log(2)}
    mean = (3 + 4 + 3 + 5) / 4
    length = {0: 3, 1: 4, 2: 3, 3: 5}
    expected = [
        DENSE[u, i] * (k1 + 1) / (k1 * ((1 - b) + b * length[i] / mean) + DENSE[u, i]) * idf[u] for u, i in ENTRIES
    ]
    np.testing.assert_allclose(values(weight_matrix(MATRIX, "bm25", k1=k1, b=b)), expected, rtol=1e-6)
    # user 0, item 2: 3 * 2.5 / (1.5 * (0.25 + 0.75 * 3 / 3.75) + 3) * log(4/3)
    assert expected[1] == pytest.approx(3 * 2.5 / (1.5 * 0.85 + 3) * math.log(4 / 3))


def test_bm25_users_as_documents():
    k1, b = 1.5, 0.75
    # documents = users: idf per item from its number of users among the 3 users; user lengths 4, 6, 5
    df = {0: 2, 1: 1, 2: 1, 3: 1}
    length = {0: 4, 1: 6, 2: 5}
    mean = 5.0
    expected = [
        DENSE[u, i]
        * (k1 + 1)
        / (k1 * ((1 - b) + b * length[u] / mean) + DENSE[u, i])
        * (math.log(3) - math.log1p(df[i]))
        for u, i in ENTRIES
    ]
    got = values(weight_matrix(MATRIX, "bm25", k1=k1, b=b, documents="users"))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert got[0] == got[2] == 0.0  # item 0 is in 2 of 3 users: idf log 3 - log 3


def test_tfidf():
    by_items = values(weight_matrix(MATRIX, "tfidf"))
    idf_user = [math.log(4) - math.log(3)] * 4 + [math.log(4) - math.log(2)]
    np.testing.assert_allclose(
        by_items, [math.sqrt(r) * w for r, w in zip((1, 3, 2, 4, 5), idf_user, strict=True)], rtol=1e-6
    )
    by_users = values(weight_matrix(MATRIX, "tfidf", documents="users"))
    idf_item = [math.log(3) - math.log1p(df) for df in (2, 1, 2, 1, 1)]  # items 0, 2, 0, 1, 3
    np.testing.assert_allclose(
        by_users, [math.sqrt(r) * w for r, w in zip((1, 3, 2, 4, 5), idf_item, strict=True)], atol=1e-7
    )


@pytest.mark.parametrize(
    ("scheme", "params"),
    [
        ("log", {"alpha": 3.0}),
        ("bm25", {}),
        ("bm25", {"documents": "users"}),
        ("tfidf", {}),
        ("tfidf", {"documents": "users"}),
    ],
)
def test_new_rows_use_the_training_statistics(scheme, params):
    fitted = fit_weighting(MATRIX, scheme, **params)
    whole = weight_matrix(MATRIX, scheme, **params)
    assert (fitted.transform(MATRIX) != whole).nnz == 0
    # a new user with user 1's row gets user 1's weights (the other rows' statistics are the training ones)
    again = fitted.transform(MATRIX[[1, 1]])
    np.testing.assert_array_equal(again.toarray(), whole[[1, 1]].toarray())
    assert fitted.transform(sp.csr_array((2, 4))).nnz == 0


def test_duplicates_summed_and_input_untouched():
    coo = sp.coo_array((np.array([1.0, 2.0]), (np.array([0, 0]), np.array([1, 1]))), shape=(1, 4))
    assert weight_matrix(coo, "none").toarray().tolist() == [[0.0, 3.0, 0.0, 0.0]]
    before = MATRIX.copy()
    weight_matrix(MATRIX, "bm25")
    assert (before != MATRIX).nnz == 0


def test_equals_the_implicit_package():
    nn = pytest.importorskip("implicit.nearest_neighbours")
    rng = np.random.default_rng(0)
    counts = sp.random_array((30, 12), density=0.3, rng=rng, format="csr")
    counts.data = rng.integers(1, 50, counts.nnz).astype(np.float64)
    # implicit weights the rows of what it gets: items x users for documents = items (its Last.fm example)
    for documents, given in (("items", counts.T), ("users", counts)):
        theirs = sp.csr_array(nn.bm25_weight(sp.coo_matrix(given), K1=100, B=0.8))
        theirs = theirs.T if documents == "items" else theirs
        ours = weight_matrix(counts, "bm25", k1=100, b=0.8, documents=documents)
        np.testing.assert_allclose(ours.toarray(), sp.csr_array(theirs).toarray(), rtol=1e-5, atol=1e-6)
        theirs = sp.csr_array(nn.tfidf_weight(sp.coo_matrix(given)))
        theirs = theirs.T if documents == "items" else theirs
        ours = weight_matrix(counts, "tfidf", documents=documents)
        np.testing.assert_allclose(ours.toarray(), sp.csr_array(theirs).toarray(), rtol=1e-5, atol=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown weighting 'bm26'; known: none, binary"):
        weight_matrix(MATRIX, "bm26")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes no parameter k1; its parameters: alpha, eps"):
        weight_matrix(MATRIX, "log", k1=1.0)
    with pytest.raises(ValueError, match="alpha must be"):
        weight_matrix(MATRIX, "linear", alpha=0.0)
    with pytest.raises(ValueError, match="b must be in"):
        weight_matrix(MATRIX, "bm25", b=1.5)
    with pytest.raises(ValueError, match="documents must be"):
        weight_matrix(MATRIX, "tfidf", documents="rows")
    with pytest.raises(ValueError, match=">= 0"):
        weight_matrix(sp.csr_array(-DENSE), "log")
    with pytest.raises(ValueError, match="5 item columns, the weighting was fitted on 4"):
        fit_weighting(MATRIX, "bm25").transform(sp.csr_array((1, 5)))
