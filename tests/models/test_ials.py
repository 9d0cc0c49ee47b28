"""iALS: the contract (exact and conjugate-gradient solves), one sweep against a dense numpy solve of the same normal
equations, fold-in against the trained factors, the batched solver against per-row solves, and real data."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.data.weighting import weight_matrix
from recforge.models.foldin import PaddedRows, solve_gram_rows
from recforge.models.ials import IALS, IALSModule
from recforge.testing import RecommenderContract

INVALID = (
    {"l2": 0.0},
    {"alpha0": -0.1},
    {"nu": -1.0},
    {"embedding_dim": 0},
    {"weighting": "bm26"},
    {"solver": "lu"},
    {"bm25_b": 1.5},
    {"cg_steps": 0},
    {"monitor": "nope@3"},
    {"alpha0_pairs": "some"},
)


class TestIALS(RecommenderContract):
    invalid_params = INVALID

    def make_model(self):
        return IALS(embedding_dim=8, alpha0=0.3, l2=0.03, max_epochs=6, seed=3)


class TestIALSConjugateGradient(RecommenderContract):
    invalid_params = INVALID[:2]

    def make_model(self):
        return IALS(embedding_dim=8, alpha0=0.3, l2=0.03, max_epochs=6, solver="cg", weighting="bm25", seed=3)


def counts_matrix(n_users: int = 7, n_items: int = 6, seed: int = 0) -> sp.csr_array:
    """Random play counts with an empty user and an item nobody played."""
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 20, (n_users, n_items)) * (rng.random((n_users, n_items)) < 0.5)
    dense[-1] = 0
    dense[:, -1] = 0
    dense[0, :2] = [3, 7]  # no other empty row
    return sp.csr_array(dense.astype(np.float32))


def reference_half(
    c: np.ndarray, fixed: np.ndarray, alpha0: float, l2: float, nu: float, unobserved_only: bool = False
) -> np.ndarray:
    """Each row's exact minimiser given ``fixed``, by a dense numpy solve of its normal equations (float64):
    weights ``c`` (observed) plus ``alpha0`` on every pair, or on the unobserved pairs only."""
    n_rows, k = c.shape[0], fixed.shape[1]
    out = np.zeros((n_rows, k))
    for u in range(n_rows):
        observed = np.flatnonzero(c[u])
        if len(observed) == 0:
            continue
        lam = l2 * (len(observed) + alpha0 * fixed.shape[0]) ** nu
        weight = np.full(fixed.shape[0], alpha0)  # on s^2, per column
        weight[observed] = c[u, observed] + (0.0 if unobserved_only else alpha0)
        target = np.zeros(fixed.shape[0])
        target[observed] = c[u, observed]  # weight x preference (1) on the observed columns
        system = fixed.T @ (weight[:, None] * fixed) + lam * np.eye(k)
        out[u] = np.linalg.solve(system, fixed.T @ target)
    return out


@pytest.mark.parametrize(("weighting", "pairs"), [("log", "all"), ("bm25", "all"), ("linear", "unobserved")])
def test_one_sweep_matches_a_dense_numpy_solve(weighting, pairs):
    counts = counts_matrix()
    params = {"embedding_dim": 3, "alpha0": 0.5, "l2": 0.1, "nu": 1.0, "weighting": weighting, "max_epochs": 1}
    params["alpha0_pairs"] = pairs
    model = IALS(**params, seed=5).fit(Interactions.from_csr(counts))
    start = IALSModule(7, 6, 3, init_std=0.1 / 3**0.5, generator=torch.Generator().manual_seed(5))
    c = weight_matrix(counts, weighting).toarray().astype(np.float64)
    unobserved = pairs == "unobserved"
    items = reference_half(c.T, start.user_factors.double().numpy(), 0.5, 0.1, 1.0, unobserved)  # items first
    users = reference_half(c, items, 0.5, 0.1, 1.0, unobserved)
    np.testing.assert_allclose(model.module_.item_factors.numpy(), items, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.module_.user_factors.numpy(), users, rtol=1e-4, atol=1e-6)
    assert not model.module_.item_factors[-1].any() and not model.module_.user_factors[-1].any()  # empty rows
    # conjugate gradient: close to the exact sweep (3 factors: 3 steps solve each system up to rounding)
    cg = IALS(**params, solver="cg", cg_steps=3, seed=5).fit(Interactions.from_csr(counts))
    np.testing.assert_allclose(cg.module_.item_factors.numpy(), items, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(cg.module_.user_factors.numpy(), users, rtol=1e-3, atol=1e-5)
    fewer = IALS(**params, solver="cg", cg_steps=1, seed=5).fit(Interactions.from_csr(counts))
    assert not np.allclose(fewer.module_.user_factors.numpy(), users, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("pairs", ["all", "unobserved"])
def test_training_loss_falls(pairs):
    counts = counts_matrix(40, 30, seed=1)
    model = IALS(embedding_dim=4, alpha0=0.2, l2=0.05, max_epochs=6, alpha0_pairs=pairs)
    model.fit(Interactions.from_csr(counts))
    losses = [row["train_loss"] for row in model.training_log_]
    assert all(b <= a + 1e-6 for a, b in itertools.pairwise(losses)), losses  # exact ALS never rises
    # the logged loss (from the user half's residuals) is the objective computed directly
    model._prepare(Interactions.from_csr(counts))
    direct = model.module_.loss(model.ials_data_, 0.2, unobserved_only=pairs == "unobserved")
    assert losses[-1] == pytest.approx(direct / model.ials_data_.nnz, rel=1e-5)


@pytest.mark.parametrize(("solver", "weighting"), [("cholesky", "log"), ("cholesky", "bm25"), ("cg", "linear")])
def test_fold_in_of_a_training_row_gives_the_trained_factors(planted, solver, weighting):
    model = IALS(embedding_dim=6, alpha0=0.3, l2=0.03, max_epochs=8, solver=solver, weighting=weighting)
    model.fit(planted.train)
    history = planted.train.matrix
    folded = model.fold_in(history)
    # the user half comes last in a sweep: exact factors are the solve against the final items; CG is close to it
    tol = {"rtol": 1e-4, "atol": 1e-5} if solver == "cholesky" else {"rtol": 0.05, "atol": 2e-3}
    torch.testing.assert_close(folded, model.module_.user_factors, **tol)
    users = np.arange(planted.train.n_users)
    torch.testing.assert_close(model.score(history, None), model.score(history, users), **tol)


def test_solve_gram_rows_matches_per_row_solves_with_small_blocks(monkeypatch):
    import recforge.models.foldin as foldin

    rng = np.random.default_rng(3)
    matrix = counts_matrix(30, 12, seed=3)
    a, b = rng.random(matrix.nnz) + 0.5, rng.random(matrix.nnz) + 1.0
    features = torch.from_numpy(rng.normal(size=(12, 4)))
    gram = 0.7 * features.T @ features
    reg = torch.from_numpy(rng.random((30, 1)) + 0.1)
    expected = np.zeros((30, 4))
    for u in range(30):
        span = slice(matrix.indptr[u], matrix.indptr[u + 1])
        f = features.numpy()[matrix.indices[span]]
        if len(f):
            system = gram.numpy() + f.T @ (a[span, None] * f) + reg.numpy()[u] * np.eye(4)
            expected[u] = np.linalg.solve(system, f.T @ b[span])
    for budget in (16, 1 << 22):  # many tiny blocks (one row each) and one block
        monkeypatch.setattr(foldin, "EXACT_BLOCK_ELEMENTS", budget)
        monkeypatch.setattr(foldin, "CG_BLOCK_ELEMENTS", budget)
        rows = PaddedRows.build(matrix, a, b, device="cpu", dtype=torch.float64, dim=4)
        got = solve_gram_rows(rows, features, gram, reg)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-12)
        cg_rows = PaddedRows.build(matrix, a, b, device="cpu", dtype=torch.float64, dim=4, solver="cg")
        start = torch.zeros(30, 4, dtype=torch.float64)
        cg = solve_gram_rows(cg_rows, features, gram, reg, solver="cg", start=start, cg_steps=4)
        np.testing.assert_allclose(cg.numpy(), expected, rtol=1e-6, atol=1e-8)  # 4 steps: exact for 4 unknowns
        assert not start.any()  # the warm start is read, not written
    with pytest.raises(ValueError, match="pass start"):
        solve_gram_rows(rows, features, gram, reg, solver="cg")


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_solve_gram_rows_shares_blocks_among_threads_with_the_same_result(monkeypatch, solver):
    import recforge.models.foldin as foldin

    rng = np.random.default_rng(4)
    matrix = counts_matrix(60, 20, seed=4)
    a, b = rng.random(matrix.nnz) + 0.5, rng.random(matrix.nnz) + 1.0
    features = torch.from_numpy(rng.normal(size=(20, 4))).float()
    gram, reg = 0.7 * features.T @ features, torch.full((60, 1), 0.3)
    monkeypatch.setattr(foldin, "EXACT_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(foldin, "CG_BLOCK_ELEMENTS", 64)
    rows = PaddedRows.build(matrix, a, b, device="cpu", dim=4, solver=solver)
    assert len(rows.blocks) >= 8
    start = torch.from_numpy(rng.normal(size=(60, 4))).float()
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            results.append(solve_gram_rows(rows, features, gram, reg, solver=solver, start=start, objective=True))
            assert torch.get_num_threads() == n  # restored after the solve
    finally:
        torch.set_num_threads(threads)
    (one, one_objective), (three, three_objective) = results
    assert torch.equal(one, three)
    assert one_objective == pytest.approx(three_objective, rel=1e-12)


def test_unobserved_weight_and_regularisation_are_used(planted):
    base = {"embedding_dim": 6, "max_epochs": 2}
    scores = [
        IALS(**base, **params).fit(planted.train).score(planted.train.matrix[:5], np.arange(5))
        for params in (
            {},
            {"alpha0": 1.0},
            {"l2": 0.3},
            {"nu": 0.0},
            {"weighting": "binary"},
            {"alpha0_pairs": "unobserved"},
        )
    ]
    for other in scores[1:]:
        assert not torch.allclose(scores[0], other)


# ====================================================================== real data
@pytest.fixture(scope="module")
def ml100k_liang():
    if not os.environ.get("RECFORGE_DATA"):
        pytest.skip("set RECFORGE_DATA to the folder holding ml-100k/ to run real-data tests")
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018

    raw = load_dataset("ml-100k", download=False)
    return liang2018(raw.interactions, heldout_users=100)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_ml100k_beats_popularity_clearly(ml100k_liang, solver):
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG
    from recforge.models.popularity import Popularity

    split = ml100k_liang
    model = IALS(solver=solver).fit(split.train, valid=split.valid)
    ials = evaluate_ranking(model, split.test, [NDCG(100)]).metrics["ndcg@100"]
    pop = evaluate_ranking(Popularity().fit(split.train), split.test, [NDCG(100)]).metrics["ndcg@100"]
    assert ials > 1.6 * pop, f"iALS NDCG@100 {ials:.4f} vs popularity {pop:.4f}"
    assert ials > 0.43  # EASE: 0.4737 on this split
    assert len(model.training_log_) < model.max_epochs or model.training_log_[-1]["epoch"] == model.max_epochs - 1
