"""Neighbourhood models: item-item k-nearest neighbours with shrunk cosine similarity (Sarwar et al. 2001)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models.base import BaseRecommender
from recforge.models.linear import gram_block_rows, item_gram_rows, map_blocks
from recforge.models.params import NonNegativeFloat, PositiveInt, hyperparameters
from recforge.models.weighted import WeightingParams

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart
    from recforge.training.options import TrainingOptions

#: Dense float32 scratch per block of similarity rows (a few such blocks are alive per thread).
_BLOCK_BYTES = 1 << 25
#: History rows per scoring block (each block's sparse product is at most rows x n_items entries).
_SCORE_ROWS = 256


def shrunk_cosine_top_n(matrix: sp.csr_array, n_neighbors: int, shrinkage: float) -> sp.csr_array:
    r"""The item-item similarity matrix ``S`` (n_items x n_items CSR float32) of ItemKNN.

    .. math:: s_{ij} = \frac{x_i \cdot x_j}{\lVert x_i \rVert \lVert x_j \rVert + \text{shrinkage}}

    over the item columns ``x_i`` of the users x items ``matrix``. Column ``j`` keeps the
    ``n_neighbors`` largest positive ``s_ij`` (the neighbours that score item ``j``); the diagonal is zero.
    Computed in row blocks of the sparse Gram ``X^T X``: the dense scratch is bounded by a few blocks of
    ``rows x n_items`` and the result holds at most ``n_neighbors x n_items`` entries.
    """
    x = sp.csr_array(matrix, dtype=np.float32)
    n = x.shape[1]
    norms = np.sqrt(np.asarray((x.multiply(x)).sum(axis=0), dtype=np.float64)).ravel().astype(np.float32)
    rows = item_gram_rows(x)
    k = min(n_neighbors, n - 1)
    shrinkage = np.float32(shrinkage)

    def block(a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sim = rows(a, b).toarray()  # rows = target items a..b-1, columns = candidate neighbours
        denom = np.multiply.outer(norms[a:b], norms)
        denom += shrinkage
        denom[denom == 0] = 1.0  # only where the dot product is 0 too (an item nobody interacted with)
        sim /= denom
        del denom
        sim[np.arange(b - a), np.arange(a, b)] = 0.0
        if k <= 0:
            return (np.empty(0, np.int64),) * 2 + (np.empty(0, np.float32),)
        nbr = np.argpartition(sim, n - k, axis=1)[:, n - k :]  # k <= n - 1: the k largest of each row
        val = np.take_along_axis(sim, nbr, axis=1)
        keep = val > 0
        target = np.broadcast_to(np.arange(a, b)[:, None], nbr.shape)
        return nbr[keep].astype(np.int64), target[keep].astype(np.int64), val[keep]

    parts = [out for _, _, out in map_blocks(n, gram_block_rows(n, budget_bytes=_BLOCK_BYTES), block)]
    nbr, target, val = (np.concatenate(p) for p in zip(*parts, strict=True))
    sim = sp.csr_array((val, (nbr, target)), shape=(n, n), dtype=np.float32)
    sim.sum_duplicates()
    sim.sort_indices()
    return sim


@hyperparameters
class ItemKNN(WeightingParams, BaseRecommender):
    r"""Item-based k-nearest-neighbour collaborative filtering with shrunk cosine similarity.

    Sarwar, B., Karypis, G., Konstan, J., Riedl, J. (2001). *Item-based collaborative filtering
    recommendation algorithms.* WWW '01, 285-295 (shrinkage as in Koren's neighbourhood models).

    .. math::
        s_{ij} = \frac{x_i \cdot x_j}{\lVert x_i \rVert\,\lVert x_j \rVert + \text{shrinkage}},\qquad
        \text{score}(u, j) = \sum_{i \in N_k(j)} h_{ui}\, s_{ij}

    where ``x_i`` is item ``i``'s column of the training matrix, ``N_k(j)`` the ``n_neighbors`` items
    most similar to ``j`` (positive similarities only, never ``j`` itself) and ``h_u`` the user's history
    row. ``S`` is a sparse matrix built block by block (see :func:`shrunk_cosine_top_n`), never a dense
    items x items matrix. The training matrix and every scored history row are weighted by ``weighting``
    (:class:`~recforge.models.weighted.WeightingParams`; default ``"none"``, the values as given; ``"binary"``
    uses 0/1 for both). Scoring multiplies the
    sparse history by the sparse ``S`` in row blocks on threads and returns dense float32 rows.
    """

    name: ClassVar[str] = "itemknn"
    folds_in_from_history: ClassVar[bool] = True

    n_neighbors: PositiveInt = 100
    shrinkage: NonNegativeFloat = 10.0

    @classmethod
    def upgrade_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``binarize`` (saved by earlier versions) is ``weighting="binary"`` (True) or ``"none"`` (False)."""
        if "binarize" in params:
            params = dict(params)
            params.setdefault("weighting", "binary" if params.pop("binarize") else "none")
        return params

    def _fit(self, train: Interactions, valid: EvalPart | None, options: TrainingOptions) -> None:
        matrix = self.fit_weighting(train.matrix)
        self.similarity_ = shrunk_cosine_top_n(matrix, int(self.n_neighbors), float(self.shrinkage))

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        history = self.weigh(self._check_history(history, users))
        out = np.zeros((history.shape[0], self.n_items), dtype=np.float32)
        if history.nnz and self.similarity_.nnz:
            history = sp.csr_array(history, dtype=np.float32)
            similarity = self.similarity_

            def fill(a: int, b: int) -> None:
                (history[a:b] @ similarity).toarray(out=out[a:b])  # adds into the zeroed rows

            # sparse x sparse in row blocks on threads: ~4x faster than torch's sparse-sparse mm here,
            # and no dense copy of the history (as a sparse x dense product would need)
            for _ in map_blocks(history.shape[0], _SCORE_ROWS, fill):
                pass
        return torch.from_numpy(out)

    def _state(self) -> dict[str, torch.Tensor]:
        s = self.similarity_
        return {
            "similarity.indptr": torch.from_numpy(s.indptr.astype(np.int64)),
            "similarity.indices": torch.from_numpy(s.indices.astype(np.int64)),
            "similarity.data": torch.from_numpy(s.data.astype(np.float32)),
        }

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        n = len(self.items_)
        self.similarity_ = sp.csr_array(
            (
                tensors["similarity.data"].numpy(),
                tensors["similarity.indices"].numpy(),
                tensors["similarity.indptr"].numpy(),
            ),
            shape=(n, n),
        )
