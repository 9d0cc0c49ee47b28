"""ItemKNN: the contract, hand-computed shrunk cosines, top-n pruning, blocking, and real data."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models import neighbors
from recforge.models.neighbors import ItemKNN, shrunk_cosine_top_n
from recforge.models.popularity import Popularity
from recforge.testing import RecommenderContract, recall_at_k

# items 0, 1, 2 as columns: x0 = (1,1,1,0), x1 = (1,0,1,0), x2 = (0,0,1,1)
X = sp.csr_array(np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=np.float32))


class TestItemKNNContract(RecommenderContract):
    invalid_params = ({"n_neighbors": 0}, {"shrinkage": -1.0}, {"shrinkage": float("inf")})

    def make_model(self) -> ItemKNN:
        return ItemKNN(n_neighbors=15, shrinkage=1.0)


def test_shrunk_cosine_by_hand():
    s01 = 2 / (np.sqrt(3) * np.sqrt(2) + 1)
    s02 = 1 / (np.sqrt(3) * np.sqrt(2) + 1)
    s12 = 1 / (np.sqrt(2) * np.sqrt(2) + 1)
    expected = np.array([[0, s01, s02], [s01, 0, s12], [s02, s12, 0]])
    sim = shrunk_cosine_top_n(X, n_neighbors=5, shrinkage=1.0)
    np.testing.assert_allclose(sim.toarray(), expected, rtol=1e-6)
    plain = shrunk_cosine_top_n(X, n_neighbors=5, shrinkage=0.0)  # the plain cosine
    np.testing.assert_allclose(plain.toarray()[0, 1], 2 / np.sqrt(6), rtol=1e-6)


def test_top_n_pruning_keeps_best_neighbours_per_column():
    sim = shrunk_cosine_top_n(X, n_neighbors=1, shrinkage=1.0).toarray()
    # column j keeps the single item most similar to j: 0 <- 1, 1 <- 0, 2 <- 1 (1/3 > 1/(sqrt 6 + 1))
    assert (sim > 0).sum(axis=0).tolist() == [1, 1, 1]
    assert np.argmax(sim, axis=0).tolist() == [1, 0, 1]
    assert np.all(np.diag(sim) == 0)
    model = ItemKNN(n_neighbors=1, shrinkage=1.0).fit(Interactions.from_csr(X))
    scores = model.score(sp.csr_array(np.array([[1, 0, 0]], dtype=np.float32)), None)  # history: item 0
    np.testing.assert_allclose(scores.numpy(), [[0, 2 / (np.sqrt(6) + 1), 0]], rtol=1e-6)


def _reference(x: np.ndarray, n_neighbors: int, shrinkage: float) -> np.ndarray:
    norms = np.linalg.norm(x, axis=0)
    sim = (x.T @ x) / (np.outer(norms, norms) + shrinkage)
    np.fill_diagonal(sim, 0)
    out = np.zeros_like(sim)
    for j in range(sim.shape[1]):
        best = np.argsort(-sim[:, j])[:n_neighbors]
        out[best, j] = sim[best, j]
    return np.where(out > 0, out, 0)


def test_blocked_similarity_matches_dense_reference(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.random((60, 37)) * (rng.random((60, 37)) < 0.3)  # real values: no ties
    expected = _reference(x, n_neighbors=4, shrinkage=2.0)
    one_block = shrunk_cosine_top_n(sp.csr_array(x), 4, 2.0)
    monkeypatch.setattr(neighbors, "_BLOCK_BYTES", 5 * 37 * 4)  # 5 rows a block: 8 blocks
    blocked = shrunk_cosine_top_n(sp.csr_array(x), 4, 2.0)
    np.testing.assert_allclose(one_block.toarray(), expected, rtol=1e-5, atol=1e-7)
    assert (one_block != blocked).nnz == 0
    assert one_block.nnz <= 4 * 37


def test_binarize_ignores_values():
    weighted = X.copy()
    weighted.data = np.array([5, 1, 2, 4, 3, 1, 2], dtype=np.float32)
    model = ItemKNN(n_neighbors=5, shrinkage=1.0, weighting="binary").fit(Interactions.from_csr(weighted))
    np.testing.assert_allclose(model.similarity_.toarray(), shrunk_cosine_top_n(X, 5, 1.0).toarray())
    history = sp.csr_array(np.array([[3, 0, 0]], dtype=np.float32))
    assert torch.equal(model.score(history, None), model.score(sp.csr_array(history > 0, dtype=np.float32), None))
    raw = ItemKNN(n_neighbors=5, shrinkage=1.0).fit(Interactions.from_csr(weighted))
    assert not np.allclose(raw.similarity_.toarray(), model.similarity_.toarray())


def test_scoring_in_row_blocks_matches_one_product(planted, monkeypatch):
    model = ItemKNN(n_neighbors=10).fit(planted.train)
    whole = model.score(planted.train.matrix, None)
    monkeypatch.setattr(neighbors, "_SCORE_ROWS", 7)
    assert torch.equal(model.score(planted.train.matrix, None), whole)
    np.testing.assert_allclose(whole.numpy(), (planted.train.matrix @ model.similarity_).toarray(), rtol=1e-6)


def test_items_nobody_interacted_with():
    x = sp.csr_array(np.array([[1, 0, 1], [1, 0, 0]], dtype=np.float32))  # item 1 never seen
    sim = shrunk_cosine_top_n(x, 5, 0.0).toarray()
    assert np.isfinite(sim).all() and np.all(sim[1] == 0) and np.all(sim[:, 1] == 0)


def test_ml100k_beats_popularity(ml100k_holdout):
    train, test = ml100k_holdout.train, ml100k_holdout.test
    knn = recall_at_k(ItemKNN(n_neighbors=50, shrinkage=10.0).fit(train), train, test, 20)
    pop = recall_at_k(Popularity().fit(train), train, test, 20)
    assert knn > 1.1 * pop, f"ItemKNN recall@20 {knn:.3f} vs Popularity {pop:.3f}"
