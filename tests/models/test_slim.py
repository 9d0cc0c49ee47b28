"""ADMM-SLIM: the contract, the closed form and its ADMM limit, the two B-step solvers, sparsity, and real data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models import slim
from recforge.models.linear import EASE
from recforge.models.popularity import Popularity
from recforge.models.slim import ADMMSLIM, admm_slim
from recforge.testing import RecommenderContract, recall_at_k
from recforge.training.options import TrainingOptions


class TestADMMSLIMContract(RecommenderContract):
    invalid_params = ({"l1": -1.0}, {"l2": 0.0}, {"l2": float("nan")}, {"rho": 0.0}, {"iterations": 0})

    def make_model(self) -> ADMMSLIM:
        return ADMMSLIM(l1=0.5, l2=5.0, iterations=10)


class TestADMMSLIMBiasContract(RecommenderContract):
    def make_model(self) -> ADMMSLIM:
        return ADMMSLIM(l1=0.5, l2=5.0, item_bias=True, iterations=10)


class TestClosedFormContract(RecommenderContract):
    def make_model(self) -> ADMMSLIM:
        return ADMMSLIM(l1=0.0, nonnegative=False, l2=50.0)


@pytest.fixture
def small() -> sp.csr_array:
    rng = np.random.default_rng(3)
    return sp.csr_array((rng.random((40, 60)) < 0.2).astype(np.float32))


def _ease64(x: np.ndarray, l2: float) -> np.ndarray:
    x = x.astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def _objective(x: np.ndarray, b: np.ndarray, l1: float, l2: float) -> float:
    x, b = x.astype(np.float64), b.astype(np.float64)
    return 0.5 * ((x - x @ b) ** 2).sum() + 0.5 * l2 * (b**2).sum() + l1 * np.abs(b).sum()


@pytest.mark.parametrize("solver", ["items", "users"])
def test_closed_form_is_ease_and_admm_converges_to_it(small, solver):
    closed = admm_slim(small, l1=0.0, l2=4.0, rho=4.0, nonnegative=False, solver=solver)
    assert closed.dense is not None
    np.testing.assert_allclose(closed.dense.numpy(), _ease64(small.toarray(), 4.0), atol=1e-5)
    ease = EASE(l2=4.0).fit(Interactions.from_csr(small)).item_weights()
    np.testing.assert_allclose(closed.dense.numpy(), ease.numpy(), atol=1e-5)
    iterated = admm_slim(
        small, l1=0.0, l2=4.0, rho=4.0, nonnegative=False, solver=solver, closed_form=False, iterations=60
    )
    np.testing.assert_allclose(iterated.to_dense().numpy(), closed.dense.numpy(), atol=1e-4)


@pytest.mark.parametrize("item_bias", [False, True])
@pytest.mark.parametrize(("l1", "nonnegative"), [(0.5, True), (0.5, False), (0.0, True)])
def test_item_and_user_space_solvers_agree(small, l1, nonnegative, item_bias):
    kw = {"l1": l1, "l2": 3.0, "rho": 6.0, "nonnegative": nonnegative, "item_bias": item_bias, "iterations": 25}
    a = admm_slim(small, solver="items", **kw).to_dense()
    b = admm_slim(small, solver="users", **kw).to_dense()
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_constraints_hold_and_admm_minimises_the_objective(small):
    x = small.toarray()
    c = admm_slim(small, l1=0.5, l2=3.0, rho=3.0, nonnegative=True, iterations=300).to_dense().numpy()
    assert (c >= 0).all() and (np.diag(c) == 0).all()
    best = _objective(x, c, 0.5, 3.0)
    rng = np.random.default_rng(0)
    for _ in range(20):  # no feasible nearby point does better
        trial = np.maximum(c + rng.normal(0, 1e-3, c.shape) * (rng.random(c.shape) < 0.05), 0)
        np.fill_diagonal(trial, 0)
        assert _objective(x, trial, 0.5, 3.0) >= best - 1e-4
    shrunk = admm_slim(small, l1=0.5, l2=3.0, rho=3.0, nonnegative=False, iterations=300).to_dense().numpy()
    assert (shrunk < 0).any() and (np.diag(shrunk) == 0).all()


def test_blocks_of_columns_give_the_same_result(small, monkeypatch):
    kw = {"l1": 0.3, "l2": 3.0, "rho": 3.0, "nonnegative": True, "iterations": 15}
    whole = admm_slim(small, **kw).to_dense()
    unblocked_closed = admm_slim(small, l1=0.0, l2=3.0, rho=3.0, nonnegative=False, item_bias=True).dense
    monkeypatch.setattr(slim, "ADMM_BLOCK_BYTES", 4 * 60 * 7)  # 7 columns a block
    assert slim._block_width(60) == 7
    for solver in ("items", "users"):
        np.testing.assert_allclose(admm_slim(small, solver=solver, **kw).to_dense().numpy(), whole.numpy(), atol=1e-5)
        closed = admm_slim(small, l1=0.0, l2=3.0, rho=3.0, nonnegative=False, item_bias=True, solver=solver)
        np.testing.assert_allclose(closed.dense.numpy(), unblocked_closed.numpy(), atol=1e-5)


def test_l1_keeps_c_sparse_and_scores_match_dense(planted):
    model = ADMMSLIM(l1=2.0, l2=5.0, iterations=30).fit(planted.train)
    n = planted.train.n_items
    w = model.weights_
    assert w.dense is None and model.sparse_.layout == torch.sparse_csr
    assert w.nnz < n * n / 4
    c = model.item_weights()
    assert int(torch.count_nonzero(c)) == w.nnz and torch.all(c >= 0)
    history = planted.train.matrix
    np.testing.assert_allclose(model.score(history, None).numpy(), history.toarray() @ c.numpy(), atol=1e-5)


def test_item_bias_scores(planted):
    model = ADMMSLIM(l1=0.5, l2=5.0, item_bias=True, iterations=10).fit(planted.train)
    x = planted.train.matrix.toarray()
    b = x.mean(0)
    c = model.item_weights().numpy()
    history = planted.train.matrix[:5]
    expected = (history.toarray() - b) @ c + b
    np.testing.assert_allclose(model.score(history, None).numpy(), expected, atol=1e-5)


def test_default_rho_follows_l2():
    assert ADMMSLIM(l2=40.0).penalty == slim.RHO_PER_L2 * 40.0
    assert ADMMSLIM(l2=40.0, rho=7.0).penalty == 7.0


def test_progress_is_logged(planted):
    lines: list[str] = []
    ADMMSLIM(l1=0.5, l2=5.0, iterations=10).fit(planted.train, options=TrainingOptions(log=lines.append))
    assert any("||B - C||" in line for line in lines)


def test_not_positive_definite_is_a_clear_error():
    with pytest.raises(ValueError, match="increase l2"):
        slim.spd_inverse_(-torch.eye(3), what="ADMM-SLIM: X^T X + (l2 + rho) I", fix="increase l2")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(planted):
    cpu = ADMMSLIM(l1=0.5, l2=5.0, iterations=20).fit(planted.train)
    gpu = ADMMSLIM(l1=0.5, l2=5.0, iterations=20).fit(planted.train, options=TrainingOptions(device="cuda"))
    torch.testing.assert_close(gpu.item_weights().cpu(), cpu.item_weights(), atol=1e-4, rtol=1e-4)
    scores = gpu.score(planted.train.matrix, None)
    assert scores.device.type == "cuda"
    torch.testing.assert_close(scores.cpu(), cpu.score(planted.train.matrix, None), atol=1e-4, rtol=1e-4)


def test_ml100k_beats_popularity(ml100k_holdout):
    train, test = ml100k_holdout.train, ml100k_holdout.test
    model = ADMMSLIM(l1=1.0, l2=200.0, iterations=20).fit(train)
    assert model.weights_.dense is None  # C stays sparse on real data
    assert model.weights_.nnz < 0.2 * train.n_items**2
    ours = recall_at_k(model, train, test, 20)
    pop = recall_at_k(Popularity().fit(train), train, test, 20)
    assert ours > 1.3 * pop, f"ADMM-SLIM recall@20 {ours:.3f} vs Popularity {pop:.3f}"
