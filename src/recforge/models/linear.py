"""Linear item-item models solved in closed form: EASE (Steck 2019).

Also holds the blocked, multi-threaded item Gram ``X^T X`` of a sparse users x items matrix, which the
neighbourhood models reuse (:mod:`recforge.models.neighbors`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from recforge.data.interactions import Interactions
from recforge.models.base import BaseRecommender
from recforge.models.params import PositiveFloat, hyperparameters
from recforge.models.weighted import WeightingParams

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart
    from recforge.training.options import TrainingOptions

T = TypeVar("T")

#: Bytes of dense float32 scratch a block of Gram rows may take (rows x n_items x 4).
BLOCK_BYTES = 1 << 27
#: Bytes of one column block of EASE's ``B`` when scoring on CPU: ~1,000 columns at 20,720 items (on the dev
#: machine narrower 256-column blocks were no faster than whole rows; see benchmarks/RESULTS.md).
SCORE_BLOCK_BYTES = 80 << 20


def gram_block_rows(n_items: int, *, budget_bytes: int = BLOCK_BYTES) -> int:
    """Rows per block so that a dense float32 block of ``rows x n_items`` fits in ``budget_bytes``."""
    return max(1, min(n_items, budget_bytes // (4 * max(n_items, 1))))


def map_blocks(
    n: int, block: int, fn: Callable[[int, int], T], *, n_threads: int | None = None
) -> Iterator[tuple[int, int, T]]:
    """``(start, stop, fn(start, stop))`` for consecutive blocks of ``range(n)``, in order.

    ``fn`` runs on ``n_threads`` threads (default: torch's intra-op thread count); at most ``n_threads``
    blocks are in flight, so memory stays bounded by a few blocks. scipy's sparse products and numpy's
    big array operations release the GIL, so the threads really run in parallel.
    """
    n_threads = max(1, n_threads or torch.get_num_threads())
    starts = range(0, n, block)
    if n_threads == 1:
        for a in starts:
            b = min(n, a + block)
            yield a, b, fn(a, b)
        return
    with ThreadPoolExecutor(n_threads) as pool:
        pending: deque[tuple[int, int, Future[T]]] = deque()
        for a in starts:
            b = min(n, a + block)
            pending.append((a, b, pool.submit(fn, a, b)))
            if len(pending) >= n_threads:
                a0, b0, fut = pending.popleft()
                yield a0, b0, fut.result()
        while pending:
            a0, b0, fut = pending.popleft()
            yield a0, b0, fut.result()


def item_gram_rows(matrix: sp.csr_array) -> Callable[[int, int], sp.csr_array]:
    """A function ``(a, b) -> (X^T X)[a:b]`` (sparse CSR float32) for the users x items ``matrix``.

    Each block is one sparse-sparse product ``X[:, a:b]^T X``: it costs the co-occurrences it finds,
    never ``n_items^2``, and the full Gram is never held in sparse form.
    """
    x = sp.csr_array(matrix, dtype=np.float32)
    xt = x.T.tocsr()  # items x users: row slices are the item columns of X

    def rows(a: int, b: int) -> sp.csr_array:
        return sp.csr_array(xt[a:b] @ x)

    return rows


def dense_item_gram(matrix: sp.csr_array, device: torch.device, *, n_threads: int | None = None) -> torch.Tensor:
    """The dense float32 item Gram ``X^T X`` (n_items x n_items) on ``device``, from the sparse ``matrix``.

    Built in row blocks of sparse products (on CPU threads); only the dense result and a few blocks
    are ever in memory.
    """
    n = matrix.shape[1]
    rows = item_gram_rows(matrix)
    on_cpu = device.type == "cpu"
    gram = torch.zeros((n, n), dtype=torch.float32, device=device)
    dense_view = gram.numpy() if on_cpu else None

    def fill(a: int, b: int) -> None:
        block = rows(a, b)
        if dense_view is not None:
            block.toarray(out=dense_view[a:b])  # adds into the zeroed rows, no temporary
        else:
            gram[a:b] = torch.from_numpy(block.toarray()).to(device)

    for _ in map_blocks(n, gram_block_rows(n), fill, n_threads=n_threads):
        pass
    return gram


@hyperparameters
class EASE(WeightingParams, BaseRecommender):
    r"""Embarrassingly Shallow Autoencoder: a dense item-item weight matrix with a zero diagonal, in closed form.

    Steck, H. (2019). *Embarrassingly Shallow Autoencoders for Sparse Data.* WWW '19, 3251-3257.

    .. math::
        G = X^\top X + \lambda I,\qquad P = G^{-1},\qquad
        B_{ij} = -\frac{P_{ij}}{P_{jj}}\ (i \ne j),\qquad B_{jj} = 0,

    and a user with history row :math:`x_u` gets the scores :math:`x_u B`.

    ``X`` is the training matrix weighted by ``weighting`` (:class:`~recforge.models.weighted.WeightingParams`;
    default ``"none"``, the values as given: EASE was published on 0/1 data, ``data.binarize``), and so is every
    scored history row.
    The Gram is built in float32 from sparse row blocks of ``X^T X`` (``X`` is never densified), then
    inverted with a Cholesky factorisation and ``cholesky_inverse`` in place (never a general inverse),
    so fitting holds one dense ``n_items x n_items`` float32 matrix (4 n_items^2 bytes: 1.7 GB at 20,720
    items) plus a few blocks. ``device`` (``"auto"``: CUDA, then MPS, then CPU) holds ``B`` and does the
    dense algebra and the scoring. Scores depend on the history only, so new users fold in for free.
    """

    name: ClassVar[str] = "ease"
    folds_in_from_history: ClassVar[bool] = True

    l2: PositiveFloat = 500.0

    def _fit(self, train: Interactions, valid: EvalPart | None, options: TrainingOptions) -> None:
        log = options.log or (lambda _message: None)
        n = train.n_items
        t0 = time.perf_counter()
        log(f"EASE: item Gram X^T X ({n:,} x {n:,}, {4 * n * n / 1e9:.2f} GB float32) on {self.device_} ...")
        gram = dense_item_gram(self.fit_weighting(train.matrix), self.device_)
        gram.diagonal().add_(float(self.l2))
        log(f"EASE: Gram done in {time.perf_counter() - t0:.1f}s; Cholesky inversion ...")
        t0 = time.perf_counter()
        weights = ease_weights_(gram)
        log(f"EASE: inversion done in {time.perf_counter() - t0:.1f}s")
        self._set_weights(weights)

    def _set_weights(self, weights: torch.Tensor) -> None:
        """Keep ``B`` for scoring (:func:`score_blocks`)."""
        self.weights_ = score_blocks(weights)

    def item_weights(self) -> torch.Tensor:
        """The learned ``n_items x n_items`` matrix ``B`` (zero diagonal), assembled on its device."""
        self.check_fitted()
        blocks = self.weights_
        return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=1)

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        history = self._check_history(history, users)
        return blocked_scores(self.weigh(history), self.weights_, self.n_items)

    def _state(self) -> dict[str, torch.Tensor]:
        return {"weights": self.item_weights()}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self._set_weights(tensors["weights"].to(self.device_, torch.float32))


def score_blocks(weights: torch.Tensor) -> list[torch.Tensor]:
    """A dense ``n_items x n_items`` weight matrix kept for :func:`blocked_scores`: whole on an accelerator, as
    cache-sized column blocks on CPU.

    ``history @ B`` reads one row of ``B`` per stored history entry; over whole rows of a large ``B`` that
    traffic misses every cache, while a block of columns (``SCORE_BLOCK_BYTES``) stays in the last-level cache
    for the whole batch of users: about 2x faster at 20,000 items.
    """
    n = weights.shape[1]
    if weights.device.type != "cpu":
        return [weights]
    width = max(64, SCORE_BLOCK_BYTES // (4 * max(n, 1)) // 64 * 64)
    if width >= n:
        return [weights.contiguous()]
    return [weights[:, a : a + width].contiguous() for a in range(0, n, width)]


def blocked_scores(history: sp.csr_array, blocks: list[torch.Tensor], n_items: int) -> torch.Tensor:
    """``history @ B`` (rows x n_items float32, a fresh tensor) with ``B`` kept as :func:`score_blocks`."""
    device = blocks[0].device
    if history.nnz == 0:
        return torch.zeros((history.shape[0], n_items), dtype=torch.float32, device=device)
    # history @ B as a weighted sum of B's rows per user: embedding_bag's kernel is ~2x torch.sparse.mm here
    items = torch.from_numpy(history.indices.astype(np.int64)).to(device)
    starts = torch.from_numpy(history.indptr[:-1].astype(np.int64)).to(device)
    values = torch.from_numpy(history.data.astype(np.float32)).to(device)

    def rows_times(block: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(items, block, starts, mode="sum", per_sample_weights=values)

    if len(blocks) == 1:
        return rows_times(blocks[0])
    out = torch.empty((history.shape[0], n_items), dtype=torch.float32, device=device)
    start = 0
    for block in blocks:
        stop = start + block.shape[1]
        out[:, start:stop] = rows_times(block)
        start = stop
    return out


def spd_inverse_(matrix: torch.Tensor, *, what: str = "EASE: X^T X + l2 I", fix: str = "increase l2") -> torch.Tensor:
    """The inverse of the symmetric positive definite ``matrix``, written into ``matrix``'s own storage.

    The Cholesky factor and the inverse are written through ``matrix``'s transpose (for a symmetric matrix the
    same matrix, in the column-major layout LAPACK works in), so no second ``n x n`` matrix is allocated where
    the backend allows it. The result is C-contiguous (it may be a transposed view of ``matrix``'s storage).
    A matrix that is not positive definite in float32 raises ``ValueError`` naming ``what`` and the ``fix``.
    """
    view = matrix.mT  # Fortran-contiguous and equal to matrix: LAPACK factors it in place
    try:
        factor, info = torch.linalg.cholesky_ex(
            view, out=(view, torch.empty(0, dtype=torch.int32, device=matrix.device))
        )
        inverse = torch.cholesky_inverse(factor, out=factor) if int(info) == 0 else None
    except RuntimeError:  # a backend that refuses aliased outputs: pay for one more matrix
        factor, info = torch.linalg.cholesky_ex(matrix)
        inverse = torch.cholesky_inverse(factor) if int(info) == 0 else None
        del factor
    if inverse is None:
        raise ValueError(f"{what} is not positive definite in float32 (leading minor {int(info)} failed); {fix}")
    # the inverse is symmetric, so its transpose is it too: take whichever view is C-ordered (no copy).
    return (inverse if inverse.is_contiguous() else inverse.mT).contiguous()


def ease_weights_(gram: torch.Tensor) -> torch.Tensor:
    """EASE's ``B = I - P / diag(P)`` with ``P = gram^{-1}``, overwriting the symmetric positive definite ``gram``.

    ``P`` is computed in ``gram``'s own storage (:func:`spd_inverse_`), so no second ``n x n`` matrix is
    allocated where the backend allows it.
    """
    weights = spd_inverse_(gram)
    diag = weights.diagonal().clone()
    weights.div_(diag.neg_())  # B_ij = -P_ij / P_jj (column j divided by P_jj)
    weights.fill_diagonal_(0.0)
    return weights
