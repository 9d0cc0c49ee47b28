"""The fold-in module: the ridge and confidence-weighted solves against dense per-row numpy solutions, the gradient
fold-in against the exact solve it approximates, and NCF's fold-in, which never modifies the shared network (no
``requires_grad``, ``.grad`` or train/eval change) and runs from two threads at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.models.foldin import fold_in_by_gradient, solve_confidence_rows, solve_ridge_rows
from recforge.models.ncf import NeuMF


def random_history(n_rows: int = 5, n_items: int = 12, seed: int = 0) -> sp.csr_array:
    """Random positive values, and an empty last row."""
    rng = np.random.default_rng(seed)
    history = sp.random_array((n_rows, n_items), density=0.4, rng=rng, dtype=np.float32, format="csr")
    history.data[:] = rng.integers(1, 6, size=history.nnz)
    return sp.vstack([history, sp.csr_array((1, n_items), dtype=np.float32)]).tocsr()


def test_solve_ridge_rows_matches_a_per_row_solve():
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(12, 3)).astype(np.float32))
    offset = torch.from_numpy(rng.normal(size=12).astype(np.float32))
    reg = torch.tensor([0.5, 0.5, 0.1])
    history = random_history()
    for weighted in (False, True):
        got = solve_ridge_rows(history, features, offset, reg, count_weighted=weighted).numpy()
        for u in range(history.shape[0]):
            idx = history.indices[history.indptr[u] : history.indptr[u + 1]]
            a = features.numpy()[idx].astype(np.float64)
            t = history.data[history.indptr[u] : history.indptr[u + 1]] - offset.numpy()[idx]
            lam = reg.numpy() * (max(len(idx), 1) if weighted else 1)
            expected = np.linalg.solve(a.T @ a + np.diag(lam), a.T @ t)
            np.testing.assert_allclose(got[u], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(got[-1], 0.0)


@pytest.mark.parametrize("reg", [0.3, torch.tensor([0.3, 1.0, 0.1, 2.0])])
def test_solve_confidence_rows_matches_a_dense_weighted_solve(reg):
    rng = np.random.default_rng(1)
    n_items, k, alpha = 15, 4, 2.5
    features = torch.from_numpy(rng.normal(size=(n_items, k)).astype(np.float32))
    history = random_history(n_rows=6, n_items=n_items, seed=1)
    got = solve_confidence_rows(history, features, reg, alpha=alpha).numpy()
    a = features.numpy().astype(np.float64)
    lam = np.diag(np.broadcast_to(np.asarray(reg, dtype=np.float64), (k,)))
    for u, r in enumerate(history.toarray().astype(np.float64)):
        c = 1.0 + alpha * r  # confidence 1 on every unobserved item
        p = (r > 0).astype(np.float64)  # preference 1 on the observed items, 0 elsewhere
        expected = np.linalg.solve(a.T @ (c[:, None] * a) + lam, a.T @ (c * p))
        np.testing.assert_allclose(got[u], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[-1], 0.0)


def test_gradient_fold_in_of_a_dot_product_reaches_the_ridge_solution():
    rng = np.random.default_rng(2)
    items_f = torch.from_numpy(rng.normal(size=(12, 3)).astype(np.float32))
    history = random_history(seed=2)
    rows = torch.from_numpy(np.repeat(np.arange(history.shape[0]), np.diff(history.indptr)))
    items = torch.from_numpy(history.indices.astype(np.int64))
    target = torch.from_numpy(history.data)
    start = torch.zeros((history.shape[0], 3))
    (learned,) = fold_in_by_gradient(
        [start],
        rows,
        items,
        target,
        forward=lambda vectors, items: (vectors[0] * items_f[items]).sum(-1),
        event_loss=lambda output, target: (output - target).square(),
        steps=1500,
        lr=0.05,
        l2=0.2,
    )
    # sum_e (r_e - v . q_e)^2 + 0.2 sum_e |v|^2: the ridge problem with the penalty weighted by the row's count
    exact = solve_ridge_rows(history, items_f, torch.zeros(12), torch.full((3,), 0.2), count_weighted=True)
    torch.testing.assert_close(learned, exact, atol=2e-3, rtol=0)
    assert torch.equal(start, torch.zeros_like(start)) and not learned.requires_grad
    (kept,) = fold_in_by_gradient([start], rows, items, target, forward=None, event_loss=None, steps=0, lr=0.05)  # type: ignore[arg-type]
    assert torch.equal(kept, start)


# ---------------------------------------------------------------------- NCF: the shared network stays untouched
@pytest.fixture(scope="module")
def neumf(planted):
    return NeuMF(
        embedding_dim=4, layers=(16, 8), dropout=0.3, loss="bce", learning_rate=0.05, max_epochs=3, batch_size=64,
        fold_in_steps=60,
    ).fit(planted.train)  # fmt: skip


def _network_state(module: torch.nn.Module) -> list[tuple]:
    """Every parameter's ``requires_grad`` and ``.grad`` (what fit left there) and every submodule's mode."""
    params = [(name, p.requires_grad, p.grad) for name, p in module.named_parameters()]
    return params + [(name, m.training) for name, m in module.named_modules()]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    def equal(x: object, y: object) -> bool:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
        return x == y

    return len(a) == len(b) and all(equal(x, y) for s, t in zip(a, b, strict=True) for x, y in zip(s, t, strict=True))


def _snapshot(module: torch.nn.Module) -> list[tuple]:
    return [tuple(v.clone() if isinstance(v, torch.Tensor) else v for v in s) for s in _network_state(module)]


def test_ncf_fold_in_never_changes_the_network(planted, neumf):
    module = neumf.module_
    before = _snapshot(module)
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    during: list[list[tuple]] = []
    hook = module.predict.register_forward_pre_hook(lambda m, args: during.append(_snapshot(module)))
    try:
        scores = neumf.score(planted.train.matrix[:6], None)
    finally:
        hook.remove()
    assert len(during) == neumf.fold_in_steps + 1  # every fold-in step, then the scoring pass
    assert all(_same(state, before) for state in during)  # never frozen, no other mode, no gradient into .grad
    assert _same(_snapshot(module), before)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in weights.items())
    assert all(p.requires_grad for p in module.parameters()) and not module.training
    assert torch.isfinite(scores).all()


def test_ncf_fold_in_from_two_threads_at_once_matches_one_at_a_time(planted, neumf):
    histories = [planted.train.matrix[:30], planted.train.matrix[30:60]]
    before = _snapshot(neumf.module_)
    alone = [neumf.score(h, None) for h in histories]
    barrier = threading.Barrier(2)
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = neumf.score(histories[i], None)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(2):
        assert torch.equal(results[i], alone[i])
    assert _same(_snapshot(neumf.module_), before)  # flags, .grad and modes as fit left them
