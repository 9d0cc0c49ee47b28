"""EASE: the contract, B against a float64 reference, the blocked Gram and scoring, and real data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models import linear
from recforge.models.linear import EASE, dense_item_gram, ease_weights_, map_blocks
from recforge.models.popularity import Popularity
from recforge.testing import RecommenderContract, recall_at_k
from recforge.training.options import TrainingOptions


class TestEASEContract(RecommenderContract):
    invalid_params = ({"l2": 0.0}, {"l2": -3.0}, {"l2": float("nan")})

    def make_model(self) -> EASE:
        return EASE(l2=50.0)


def _reference_b(x: np.ndarray, l2: float) -> np.ndarray:
    x = x.astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.fixture
def small_binary() -> sp.csr_array:
    rng = np.random.default_rng(3)
    return sp.csr_array((rng.random((50, 13)) < 0.3).astype(np.float32))


def test_weights_match_float64_reference(small_binary):
    model = EASE(l2=2.0).fit(Interactions.from_csr(small_binary))
    b = model.item_weights()
    assert b.dtype == torch.float32 and b.shape == (13, 13)
    np.testing.assert_allclose(b.numpy(), _reference_b(small_binary.toarray(), 2.0), atol=1e-4)
    assert torch.all(b.diagonal() == 0)
    history = small_binary[:4]
    np.testing.assert_allclose(model.score(history, None).numpy(), history.toarray() @ b.numpy(), atol=1e-5)


def test_values_used_as_given():
    x = sp.csr_array(np.array([[5, 1, 0], [0, 4, 2], [3, 0, 1], [1, 1, 1]], dtype=np.float32))
    model = EASE(l2=1.0).fit(Interactions.from_csr(x))
    np.testing.assert_allclose(model.item_weights().numpy(), _reference_b(x.toarray(), 1.0), atol=1e-4)


def test_blocked_gram_is_exact(small_binary, monkeypatch):
    monkeypatch.setattr(linear, "BLOCK_BYTES", 3 * 13 * 4)  # 3 rows a block
    for threads in (1, 2):
        gram = dense_item_gram(small_binary, torch.device("cpu"), n_threads=threads)
        assert torch.equal(gram, torch.from_numpy((small_binary.T @ small_binary).toarray()))


def test_blocked_scoring_matches_whole_matrix(planted, monkeypatch):
    whole = EASE(l2=5.0).fit(planted.train)
    monkeypatch.setattr(linear, "SCORE_BLOCK_BYTES", 1)  # the narrowest blocks: 64 columns... of 60 items
    assert len(whole.weights_) == 1
    monkeypatch.setattr(linear, "SCORE_BLOCK_BYTES", 0)
    whole._set_weights(whole.item_weights())
    assert len(whole.weights_) == 1  # width never drops below 64 columns
    x = sp.random_array((40, 300), density=0.1, rng=np.random.default_rng(0), dtype=np.float32)
    x.data[:] = 1.0
    full = EASE(l2=5.0).fit(Interactions.from_csr(x))
    b = full.item_weights()
    assert len(full.weights_) == 5  # 300 columns in blocks of 64
    np.testing.assert_allclose(full.score(x, None).numpy(), x.toarray() @ b.numpy(), atol=1e-5)


def test_map_blocks_order_and_results():
    out = list(map_blocks(10, 3, lambda a, b: list(range(a, b)), n_threads=2))
    assert [(a, b) for a, b, _ in out] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [i for _, _, r in out for i in r] == list(range(10))


def test_not_positive_definite_is_a_clear_error():
    with pytest.raises(ValueError, match="increase l2"):
        ease_weights_(-torch.eye(4))


def test_items_nobody_interacted_with_get_zero_weights():
    x = sp.csr_array(np.array([[1, 0, 1], [1, 0, 0]], dtype=np.float32))
    b = EASE(l2=1.0).fit(Interactions.from_csr(x)).item_weights()
    assert torch.all(b[1] == 0) and torch.all(b[:, 1] == 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(planted):
    cpu = EASE(l2=5.0).fit(planted.train)
    gpu = EASE(l2=5.0).fit(planted.train, options=TrainingOptions(device="cuda"))
    torch.testing.assert_close(gpu.item_weights().cpu(), cpu.item_weights(), atol=1e-4, rtol=1e-4)
    scores = gpu.score(planted.train.matrix, None)
    assert scores.device.type == "cuda"
    torch.testing.assert_close(scores.cpu(), cpu.score(planted.train.matrix, None), atol=1e-4, rtol=1e-4)


def test_ml100k_beats_popularity(ml100k_holdout):
    train, test = ml100k_holdout.train, ml100k_holdout.test
    ease = recall_at_k(EASE(l2=200.0).fit(train), train, test, 20)
    pop = recall_at_k(Popularity().fit(train), train, test, 20)
    assert ease > 1.3 * pop, f"EASE recall@20 {ease:.3f} vs Popularity {pop:.3f}"
