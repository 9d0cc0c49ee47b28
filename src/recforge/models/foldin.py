r"""Fold-in of new users: their own parameters fitted to their history rows against fixed item parameters.

Three ways, for every history row at once (batched; nothing here changes a model or its module):

* :func:`solve_ridge_rows` -- explicit ratings, squared error on the rated items only, ridge penalty
  (matrix factorisation, CoFi);
* :func:`solve_confidence_rows` -- implicit feedback, confidence-weighted squared error over **every** item
  (Hu, Koren, Volinsky 2008, the iALS user step), computed from the Gram matrix of all item factors plus
  corrections on the observed items only; it is one case of :func:`solve_gram_rows`, the batched solve of
  :math:`(G + \sum_{i \in I_u} a_{ui} f_i f_i^\top + \Lambda_u) x_u = \sum_{i \in I_u} b_{ui} f_i` over rows held as
  :class:`PaddedRows` (exact, by batched Cholesky, or by a few conjugate-gradient steps from a warm start), which
  the iALS model (:mod:`recforge.models.ials`) trains with;
* :func:`fold_in_by_gradient` -- any differentiable model (NCF): Adam steps on the new users' vectors
  only, the network frozen by construction (the gradient is taken with respect to the new vectors alone).

The ridge solve and :func:`solve_confidence_rows` are exact (normal equations, batched, in float64).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "PaddedRows",
    "RowBlock",
    "fold_in_by_gradient",
    "solve_confidence_rows",
    "solve_gram_rows",
    "solve_ridge_rows",
]

#: Bytes of per-event outer products (nnz x k x k float64) built at a time by the solves.
_SOLVE_CHUNK_BYTES = 64 << 20

#: Output of the network for per-event user vectors (one tensor per user table, gathered by event) and items.
Forward = Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]
#: Per-event loss of (outputs, targets).
EventLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _history_events(
    history: sp.csr_array, device: torch.device
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(events per row, row of each event, item of each event, value of each event) of a CSR history."""
    counts = np.diff(history.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(history.shape[0]), counts)).to(device)
    items = torch.from_numpy(history.indices.astype(np.int64)).to(device)
    values = torch.from_numpy(history.data.astype(np.float32)).to(device)
    return counts, rows, items, values


def _row_sums(
    n_rows: int,
    features: torch.Tensor,
    rows: torch.Tensor,
    items: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per row ``u``, in float64: :math:`\sum_{e \in u} w_e a_{i_e} a_{i_e}^\top` (rows x k x k) and
    :math:`\sum_{e \in u} t_e a_{i_e}` (rows x k), over the events ``e`` (``weight`` None: :math:`w_e = 1`)."""
    device, k = features.device, features.shape[1]
    gram = torch.zeros((n_rows, k, k), dtype=torch.float64, device=device)
    rhs = torch.zeros((n_rows, k), dtype=torch.float64, device=device)
    chunk = max(1, _SOLVE_CHUNK_BYTES // (8 * k * k))
    for start in range(0, len(items), chunk):
        sl = slice(start, start + chunk)
        a = features[items[sl]].double()
        outer = a[:, :, None] * a[:, None, :]
        if weight is not None:
            outer *= weight[sl, None, None].double()
        gram.index_add_(0, rows[sl], outer)
        rhs.index_add_(0, rows[sl], a * target[sl, None].double())
    return gram, rhs


def solve_ridge_rows(
    history: sp.csr_array,
    features: torch.Tensor,
    offset: torch.Tensor,
    reg: torch.Tensor,
    *,
    count_weighted: bool,
) -> torch.Tensor:
    r"""Fold-in: for every history row ``u`` at once, the ridge solution
    :math:`\arg\min_x \sum_{i \in I_u} (r_{ui} - o_i - a_i \cdot x)^2 + \sum_k \lambda_{uk} x_k^2`.

    ``history`` (rows x n_items CSR) holds the ratings :math:`r_{ui}`; ``features`` (n_items x k) the fixed
    item rows :math:`a_i`; ``offset`` (n_items) the fixed part :math:`o_i` of each item's prediction; ``reg``
    (k) the ridge weights, multiplied by the row's number of ratings (at least 1) when ``count_weighted``
    (the frequency-weighted penalty that a per-event L2 term in a mini-batch loss amounts to). All rows are
    solved at once from their normal equations :math:`(A_u^\top A_u + \Lambda_u) x = A_u^\top (r_u - o)`
    with one batched ``torch.linalg.solve``; a row without ratings gets ``x = 0``. Returns rows x k float32
    on the device of ``features``.
    """
    history = sp.csr_array(history)
    device = features.device
    n_rows, k = history.shape[0], features.shape[1]
    counts, rows, items, ratings = _history_events(history, device)
    gram, rhs = _row_sums(n_rows, features, rows, items, ratings - offset[items], None)
    lam = reg.double().to(device).expand(n_rows, k)
    if count_weighted:
        lam = lam * torch.from_numpy(np.maximum(counts, 1).astype(np.float64)).to(device)[:, None]
    gram.diagonal(dim1=1, dim2=2).add_(lam)
    return torch.linalg.solve(gram, rhs).float()


def solve_confidence_rows(
    history: sp.csr_array, features: torch.Tensor, reg: float | torch.Tensor, *, alpha: float
) -> torch.Tensor:
    r"""Fold-in for implicit feedback: for every history row ``u`` at once, the weighted least-squares solution

    .. math::
        \arg\min_x \sum_{i=1}^{n} c_{ui} (p_{ui} - a_i \cdot x)^2 + \lambda \lVert x \rVert^2, \qquad
        c_{ui} = 1 + \alpha r_{ui},\ p_{ui} = 1 \text{ on the observed items } I_u, \quad
        c_{ui} = 1,\ p_{ui} = 0 \text{ elsewhere}

    over **all** items (Hu, Koren, Volinsky 2008, the user step of implicit ALS). ``history`` (rows x n_items
    CSR) holds the values :math:`r_{ui} \ge 0` of the observed items, ``features`` (n_items x k) the fixed item
    rows :math:`a_i`, ``reg`` the ridge weight :math:`\lambda` (a float or k weights), ``alpha`` the
    confidence scale. The normal equations
    :math:`(A^\top A + \sum_{i \in I_u} \alpha r_{ui} a_i a_i^\top + \lambda I) x = \sum_{i \in I_u} c_{ui} a_i`
    are built the iALS way -- the Gram matrix :math:`A^\top A` of every item once, plus the corrections of the
    observed items only, never a dense rows x items weight matrix -- and solved at once (:func:`solve_gram_rows`,
    batched Cholesky in float64). A row without observed items gets ``x = 0``. Returns rows x k float32 on the
    device of ``features``.
    """
    history = sp.csr_array(history)
    device, k = features.device, features.shape[1]
    extra = alpha * history.data.astype(np.float64)  # c_ui - 1 on the observed items
    rows = PaddedRows.build(history, extra, 1.0 + extra, device=device, dtype=torch.float64, dim=k)
    all_items = features.double()
    lam = torch.as_tensor(reg, dtype=torch.float64, device=device).reshape(1, -1).expand(1, k)
    solution = solve_gram_rows(rows, features, all_items.T @ all_items, lam)
    assert isinstance(solution, torch.Tensor)
    return solution.float()


# ====================================================================== batched solves over padded rows
#: Padded (row, entry) slots x feature size, in elements, of one block of :class:`PaddedRows` for the exact solve
#: (its rows x k x k systems count too); the conjugate-gradient solve wants smaller blocks, whose gathered feature
#: rows stay in cache across its steps (:data:`CG_BLOCK_ELEMENTS`).
EXACT_BLOCK_ELEMENTS = 1 << 22
CG_BLOCK_ELEMENTS = 1 << 19


#: How :func:`solve_gram_rows` solves: exactly (batched Cholesky) or by a few conjugate-gradient steps.
Solver = Literal["cholesky", "cg"]


@dataclass
class RowBlock:
    """Rows of similar length, padded to the longest: ``cols`` (rows x length, flattened) are the column of each
    slot (``n_cols`` in the padding, the index of an all-zero feature row), ``a`` and ``b`` its two weights (0 in
    the padding)."""

    rows: torch.Tensor
    cols: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    length: int


@dataclass
class PaddedRows:
    r"""The stored entries of a sparse matrix, row by row, in blocks of rows of similar length padded to a common
    length: the layout :func:`solve_gram_rows` computes on. Each entry carries two weights, ``a`` (in the system
    matrix) and ``b`` (in the right-hand side). Rows without entries are in no block (they solve to 0).

    Rows are sorted by length and cut into blocks of at most ``block_elements`` padded slots x ``dim`` (and, with
    ``dim``, at most ``block_elements / dim^2`` rows, the size of their systems), so padding wastes little and a
    block's gathered feature rows fit in a bounded buffer. Built once per matrix (the training data of both sides
    of iALS) and reused by every sweep.
    """

    n_rows: int
    n_cols: int
    counts: np.ndarray
    blocks: list[RowBlock]

    @classmethod
    def build(
        cls,
        matrix: sp.csr_array,
        a: np.ndarray,
        b: np.ndarray,
        *,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
        dim: int,
        solver: Solver = "cholesky",
    ) -> PaddedRows:
        """``a``, ``b``: one weight per stored entry of the CSR ``matrix`` (in its order); ``dim``: the feature size
        k; ``solver``: what the blocks are sized for (:data:`EXACT_BLOCK_ELEMENTS`, :data:`CG_BLOCK_ELEMENTS`)."""
        matrix = sp.csr_array(matrix)
        n_rows, n_cols = matrix.shape
        counts = np.diff(matrix.indptr)
        order = np.argsort(counts, kind="stable")
        order = order[counts[order] > 0]
        sorted_counts = counts[order]
        dim = max(dim, 1)
        budget = EXACT_BLOCK_ELEMENTS if solver == "cholesky" else CG_BLOCK_ELEMENTS
        max_slots = max(1, budget // dim)
        max_rows = max(1, budget // (dim * dim)) if solver == "cholesky" else max_slots
        a, b = np.asarray(a), np.asarray(b)
        blocks: list[RowBlock] = []
        start, n = 0, len(order)
        while start < n:
            # the most rows from ``start`` whose padded slots (rows x count of the last, longest) fit the budget
            window = sorted_counts[start : start + min(max_rows, max_slots)]
            fits = int(np.searchsorted(window * np.arange(1, len(window) + 1), max_slots, side="right"))
            stop = start + max(fits, 1)
            rows = order[start:stop]
            length = int(sorted_counts[stop - 1])
            first = matrix.indptr[rows][:, None]
            slot = np.arange(length)[None, :]
            inside = slot < counts[rows][:, None]
            entry = np.where(inside, first + slot, 0)
            cols = np.where(inside, matrix.indices[entry], n_cols).astype(np.int64)
            blocks.append(
                RowBlock(
                    rows=torch.from_numpy(rows.astype(np.int64)).to(device),
                    cols=torch.from_numpy(cols.reshape(-1)).to(device),
                    a=torch.from_numpy(np.where(inside, a[entry], 0.0)).to(device=device, dtype=dtype),
                    b=torch.from_numpy(np.where(inside, b[entry], 0.0)).to(device=device, dtype=dtype),
                    length=length,
                )
            )
            start = stop
        return cls(n_rows, n_cols, counts, blocks)


def _row_reg(reg: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """The block's part of ``reg`` (n_rows or 1) x (k or 1)."""
    return reg[rows] if reg.shape[0] == n_rows and n_rows > 1 else reg


def solve_gram_rows(
    data: PaddedRows,
    features: torch.Tensor,
    gram: torch.Tensor,
    reg: torch.Tensor,
    *,
    solver: Solver = "cholesky",
    start: torch.Tensor | None = None,
    cg_steps: int = 3,
    out: torch.Tensor | None = None,
    objective: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, float]:
    r"""For every row ``u`` of ``data`` at once, the solution of

    .. math::
        \Bigl(G + \sum_{i \in I_u} a_{ui} f_i f_i^\top + \operatorname{diag}(\lambda_u)\Bigr) x_u
        = \sum_{i \in I_u} b_{ui} f_i,

    the normal equations of :math:`\sum_{i \in I_u} [a_{ui} (f_i \cdot x)^2 - 2 b_{ui} f_i \cdot x]
    + x^\top G x + \sum_k \lambda_{uk} x_k^2` (the iALS step: :math:`G` the weighted Gram matrix of every feature
    row, the sums over the row's stored entries only). ``features``: n_cols x k (:math:`f_i`); ``gram``: k x k;
    ``reg``: (n_rows or 1) x (k or 1). Computed in the dtype of ``gram`` (features are cast), on its device.

    ``solver="cholesky"``: exact, the k x k systems of a block built by one batched product and factorised by one
    batched Cholesky (a system that float rounding made indefinite is solved again in float64).
    ``solver="cg"``: ``cg_steps`` conjugate-gradient steps per row from ``start`` (rows x k, the current factors:
    a warm start, as the ``implicit`` package does), never forming the systems -- each step costs two batched
    products with the block's gathered feature rows, O(|I_u| k) per row instead of O(|I_u| k^2 + k^3).
    Rows without entries get 0. Returns n_rows x k (``out`` when given, written in place); with ``objective``,
    also :math:`\sum_u (x_u^\top A_u x_u - 2 b_u^\top x_u)` at the returned :math:`x_u` (:math:`A_u` the system,
    :math:`b_u` the right-hand side), in float64, from the residuals :math:`r_u = b_u - A_u x_u` the solve has at
    hand (:math:`x^\top A x = x^\top (b - r)`): the rows' part of the objective at no extra pass over the data.

    On the CPU with ``torch.get_num_threads() = T > 1``, the blocks are shared out among T threads that each run
    their blocks' (small) operations on one core, instead of every operation being split T ways: one solve makes
    thousands of operations of a few microseconds each, and per-operation thread hand-offs cost more than they
    gain (on two cores, 2.5x slower than one thread on a quiet machine, 10-50x on a busy one). Torch's
    intra-operation thread count is set to 1 for the duration (it is process-wide) and restored after. Each row is
    solved by the same operations either way, so the result does not depend on T.
    """
    dtype, device = gram.dtype, gram.device
    k = gram.shape[0]
    if solver == "cg" and start is None:
        raise ValueError("the conjugate-gradient solve starts from the current factors: pass start")
    if out is None:
        out = torch.zeros((data.n_rows, k), dtype=dtype, device=device)
    if solver == "cg" and start is not None and start is not out:
        out.copy_(start)
    empty = torch.from_numpy(np.flatnonzero(data.counts == 0)).to(device)
    if len(empty):
        out[empty] = 0
    padded = torch.cat([features.to(dtype), torch.zeros((1, k), dtype=dtype, device=device)])
    reg = reg.to(dtype)

    def solve(blocks: Sequence[RowBlock]) -> torch.Tensor:
        """Solve ``blocks`` into ``out``; their part of the objective (0 without ``objective``)."""
        largest = max((len(blk.rows) * blk.length for blk in blocks), default=0)
        buffer = torch.empty(largest * k, dtype=dtype, device=device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for blk in blocks:
            n = len(blk.rows)
            f = torch.index_select(padded, 0, blk.cols, out=buffer[: n * blk.length * k].view(-1, k))
            f = f.view(n, blk.length, k)
            lam = _row_reg(reg, blk.rows, data.n_rows).expand(n, k)
            # the right-hand side apart only where it is needed: the CG start folds it into its first residual
            rhs = torch.bmm(blk.b.unsqueeze(1), f).squeeze(1) if solver == "cholesky" or objective else None
            if solver == "cholesky":
                x, r = _exact_block(f, blk.a, rhs, gram, lam)
            else:
                x, r = _cg_block(f, blk.a, blk.b, rhs, gram, lam, out[blk.rows], cg_steps)
            out[blk.rows] = x
            if objective:  # x'Ax - 2b'x = x'(b - r) - 2 b'x = -x'(b + r)
                total -= (x * (rhs + r)).sum(dtype=torch.float64)
        return total

    workers = torch.get_num_threads() if device.type == "cpu" else 1
    if workers <= 1 or len(data.blocks) < 2 * workers:
        total = solve(data.blocks)
    else:
        with _one_thread_per_operation(), ThreadPoolExecutor(workers) as pool:
            # blocks are sorted by row length: every worker gets a like share of short and long rows
            parts = pool.map(solve, [data.blocks[w::workers] for w in range(workers)])
            total = sum(parts, torch.zeros((), dtype=torch.float64))
    return (out, float(total)) if objective else out


_single_threaded = {"depth": 0, "threads": 1}
_single_threaded_lock = threading.Lock()


@contextmanager
def _one_thread_per_operation() -> Iterator[None]:
    """Torch operations on one thread each (process-wide) inside the block; the previous setting after the last of
    overlapping blocks (solves running at once in several threads, as a server's fold-ins do) has ended."""
    with _single_threaded_lock:
        if _single_threaded["depth"] == 0:
            _single_threaded["threads"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _single_threaded["depth"] += 1
    try:
        yield
    finally:
        with _single_threaded_lock:
            _single_threaded["depth"] -= 1
            if _single_threaded["depth"] == 0:
                torch.set_num_threads(_single_threaded["threads"])


def _exact_block(
    f: torch.Tensor, a: torch.Tensor, rhs: torch.Tensor, gram: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(solution, residual) of a block's systems, exactly."""
    system = torch.baddbmm(gram.expand(len(f), -1, -1), f.mT * a.unsqueeze(1), f)
    system.diagonal(dim1=1, dim2=2).add_(lam)
    chol, info = torch.linalg.cholesky_ex(system)
    x = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2)
    bad = torch.nonzero(info).squeeze(1)
    if len(bad):  # indefinite through rounding (tiny regularisation): solve those again in float64
        x[bad] = torch.linalg.solve(system[bad].double(), rhs[bad].double()).to(x.dtype)
    return x, rhs - torch.bmm(system, x.unsqueeze(2)).squeeze(2)


def _cg_block(
    f: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    rhs: torch.Tensor | None,
    gram: torch.Tensor,
    lam: torch.Tensor,
    x: torch.Tensor,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(solution, residual) after ``steps`` conjugate-gradient steps from ``x``; the right-hand side ``rhs`` when
    the caller has it, else the first residual :math:`\sum_i (b_i - a_i f_i \cdot x) f_i - G x - \lambda x` in one
    pass over the slots instead of two."""

    def along(p: torch.Tensor) -> torch.Tensor:  # f_i . p on every slot
        return torch.bmm(p.unsqueeze(1), f.mT).squeeze(1)

    def back(weights: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # sum_i w_i f_i + G p + lam p
        return torch.addmm(torch.bmm(weights.unsqueeze(1), f).squeeze(1), p, gram).addcmul_(lam, p)

    def product(p: torch.Tensor) -> torch.Tensor:
        return back(along(p).mul_(a), p)

    r = rhs - product(x) if rhs is not None else back(torch.addcmul(b, along(x), a, value=-1.0), -x)
    p = r.clone()
    rs = torch.linalg.vecdot(r, r)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(steps):  # few operations per step: a solve runs thousands of blocks
        ap = product(p)
        step = (rs / torch.linalg.vecdot(p, ap).clamp_min_(tiny)).unsqueeze_(1)
        x = x.addcmul(step, p)
        r.addcmul_(step, ap, value=-1.0)
        rs_new = torch.linalg.vecdot(r, r)
        p = torch.addcmul(r, (rs_new / rs.clamp_min_(tiny)).unsqueeze_(1), p)
        rs = rs_new
    return x, r


def fold_in_by_gradient(
    start: Sequence[torch.Tensor],
    rows: torch.Tensor,
    items: torch.Tensor,
    target: torch.Tensor,
    *,
    forward: Forward,
    event_loss: EventLoss,
    steps: int,
    lr: float,
    l2: float = 0.0,
) -> list[torch.Tensor]:
    r"""New users' vectors learned by ``steps`` Adam steps on their history, the network frozen.

    ``start`` holds the initial vectors (one rows x d tensor per user table, e.g. a GMF and an MLP embedding);
    the events are the parallel ``rows`` (the history row of each event), ``items`` and ``target``. Each step
    minimises :math:`\sum_e \ell(f(v_{r_e}, i_e), t_e) + l2 \sum_e \lVert v_{r_e} \rVert^2` (``forward`` is
    :math:`f`, ``event_loss`` is :math:`\ell`) over the vectors only: the gradient is
    ``torch.autograd.grad(loss, vectors)``, so the network's parameters, their ``requires_grad`` flags and
    ``.grad`` and its train/eval mode are never touched, and concurrent calls on one network are safe.
    ``forward`` runs as given: call it on a module in eval mode (as after ``fit`` or ``load``) so that dropout
    is off. Returns the learned vectors, detached; with no step or no event, copies of ``start``.
    """
    vectors = [v.detach().clone().requires_grad_(True) for v in start]
    if steps == 0 or len(rows) == 0:
        return [v.detach() for v in vectors]
    optimizer = torch.optim.Adam(vectors, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = event_loss(forward([v[rows] for v in vectors], items), target).sum()
            if l2 > 0:
                loss = loss + l2 * sum(v[rows].square().sum() for v in vectors)
            grads = torch.autograd.grad(loss, vectors)
            for vector, grad in zip(vectors, grads, strict=True):
                vector.grad = grad
            optimizer.step()
    return [v.detach() for v in vectors]
