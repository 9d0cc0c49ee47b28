"""Seeded mini-batch samplers over interaction data; they yield numpy/scipy blocks, never loop over users.

Models turn the blocks into tensors on their device (sparse or dense, as the network needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp


def _row_batches(n_rows: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = rng.permutation(n_rows) if rng is not None else np.arange(n_rows)
    for start in range(0, n_rows, batch_size):
        yield order[start : start + batch_size]


@dataclass(frozen=True)
class UserRows:
    """Batches of whole user rows of a users x items CSR matrix (autoencoders, song models).

    Users with no interaction are skipped. With ``rng`` the users are shuffled, else in index order.
    Each batch is ``(user_indices, rows)`` with ``rows`` the CSR block of those users.
    """

    matrix: sp.csr_array
    batch_size: int = 500

    def __call__(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, sp.csr_array]]:
        users = np.flatnonzero(np.diff(self.matrix.indptr) > 0)
        for block in _row_batches(len(users), self.batch_size, rng):
            rows = users[block]
            yield rows, self.matrix[rows]

    def __len__(self) -> int:
        n = int((np.diff(self.matrix.indptr) > 0).sum())
        return -(-n // self.batch_size)


@dataclass(frozen=True)
class HeldOutRows:
    """Batches of (fold-in rows, target rows) for held-out users, in user order (validation)."""

    fold_in: sp.csr_array
    target: sp.csr_array
    batch_size: int = 1000

    def __call__(self) -> Iterator[tuple[np.ndarray, sp.csr_array, sp.csr_array]]:
        users = np.flatnonzero(np.diff(self.target.indptr) > 0)
        for block in _row_batches(len(users), self.batch_size, None):
            rows = users[block]
            yield rows, self.fold_in[rows], self.target[rows]


@dataclass(frozen=True)
class RatingTriples:
    """Batches of (user, item, value) events, shuffled (explicit-feedback models)."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    values: np.ndarray
    batch_size: int = 1024

    def __call__(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for idx in _row_batches(len(self.user_idx), self.batch_size, rng):
            yield self.user_idx[idx], self.item_idx[idx], self.values[idx]

    def epoch(self, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The epoch's (users, items, values) in batch order: the batches of ``__call__`` with the same ``rng``,
        concatenated (gathered at once; a consumer slices every ``batch_size`` rows)."""
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        n = len(self.user_idx)
        order = rng.permutation(n) if rng is not None else np.arange(n)
        return self.user_idx[order], self.item_idx[order], self.values[order]


def binary_rows(matrix: sp.csr_array) -> sp.csr_array:
    """The 0/1 pattern of a CSR matrix (float32, duplicate entries merged): which items each row has seen."""
    out = sp.csr_array((np.ones(matrix.nnz, np.float32), matrix.indices, matrix.indptr), shape=matrix.shape)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


def sample_negatives(
    seen: sp.csr_array, users: np.ndarray, n_per_user: int, rng: np.random.Generator, *, max_rounds: int = 20
) -> np.ndarray:
    """``n_per_user`` items per entry of ``users`` that the user has not interacted with (uniform, vectorised).

    Draws candidates for all rows at once, rejects the seen ones by a binary search among the sorted
    ``user * n_items + item`` keys of ``seen`` and redraws only the rejected cells (checking only those again);
    raises if a user has seen (almost) every item. Fastest with ``users`` in ascending order (consecutive searches
    then hit the same part of the keys: on ML-20M-sized data several times faster than shuffled users).
    """
    n_items = seen.shape[1]
    users = np.asarray(users, dtype=np.int64)
    counts = np.diff(seen.indptr)[users]
    if (counts >= n_items).any():
        raise ValueError("cannot sample negatives for a user who has interacted with every item")
    seen_keys = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr)) * n_items
    seen_keys += seen.indices
    if not seen.has_sorted_indices:
        seen_keys.sort()
    out = rng.integers(0, n_items, size=(len(users), n_per_user))
    if not len(seen_keys):
        return out
    flat = out.reshape(-1)
    owners = np.repeat(users, n_per_user)
    todo = np.arange(len(flat))
    for _ in range(max_rounds):
        keys = owners[todo] * n_items + flat[todo]
        pos = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
        todo = todo[seen_keys[pos] == keys]
        if not len(todo):
            return out
        flat[todo] = rng.integers(0, n_items, size=len(todo))
    raise RuntimeError(f"could not draw unseen items within {max_rounds} rounds; users are too dense")


def pad_sequences(
    indptr: np.ndarray, items: np.ndarray, rows: np.ndarray, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Left-aligned, zero-padded ``(len(rows) x L)`` block of the sequences ``items[indptr[r]:indptr[r + 1]]``.

    Items are shifted by one (0 is the padding index); a sequence longer than ``max_length`` keeps its
    ``max_length`` last items (the most recent ones when the sequences are in time order). Returns
    ``(padded, lengths)``; ``L`` is the longest kept length in the block (at least 1).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    rows = np.asarray(rows, dtype=np.int64)
    ends = np.asarray(indptr, dtype=np.int64)[rows + 1]
    lengths = np.minimum(ends - np.asarray(indptr, dtype=np.int64)[rows], max_length)
    width = max(int(lengths.max(initial=0)), 1)
    offsets = np.arange(width)[None, :]
    take = ends[:, None] - lengths[:, None] + offsets  # the last `length` events, left-aligned
    mask = offsets < lengths[:, None]
    items = np.asarray(items, dtype=np.int64)
    gathered = items[np.where(mask, take, 0)] if len(items) else np.zeros(mask.shape, dtype=np.int64)
    return np.where(mask, gathered + 1, 0), lengths


@dataclass(frozen=True)
class Sequences:
    """Time-ordered item sequences per user, padded to the longest in the batch (sequential models).

    Built from events sorted by user then time (as :class:`~recforge.data.interactions.Interactions`
    keeps them). Items are shifted by one so that 0 is the padding index. Long histories keep their
    ``max_length`` most recent items.
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    n_users: int
    batch_size: int = 64
    max_length: int = 200

    def __call__(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yields ``(users, padded items (b x L) with 0 = padding, lengths)``."""
        starts = np.searchsorted(self.user_idx, np.arange(self.n_users + 1))
        users_all = np.flatnonzero(np.diff(starts) > 0)
        for block in _row_batches(len(users_all), self.batch_size, rng):
            users = users_all[block]
            padded, lengths = pad_sequences(starts, self.item_idx, users, self.max_length)
            yield users, padded, lengths


@dataclass(frozen=True)
class ConditionedRows:
    """(user, condition) examples for the conditioned Mult-VAE (Carraro, Polato & Aiolli 2020, arXiv 2004.11141).

    ``item_conditions`` (items x conditions, non-zero where the item satisfies the condition, e.g. its
    genres) defines the examples: for every user with events, one per condition that at least one of the
    user's items satisfies, whose target is the user's items satisfying it, and (with
    ``include_unconditioned``) one unconditioned example (condition ``-1``) whose target is the whole row.
    Examples are ordered by user then condition (``-1`` first) and shuffled with ``rng``.

    Each batch is ``(users, conditions, rows, targets)``: the examples' user indices, condition indices
    (``-1``: none), the users' full rows (the encoder input) and the target rows (CSR, same shape).
    """

    matrix: sp.csr_array
    item_conditions: sp.csr_array
    batch_size: int = 500
    include_unconditioned: bool = True

    def __post_init__(self) -> None:
        if self.item_conditions.shape[1] < 1:
            raise ValueError("item_conditions needs at least one condition column")
        if self.item_conditions.shape[0] != self.matrix.shape[1]:
            raise ValueError(
                f"item_conditions has {self.item_conditions.shape[0]} rows, the matrix has {self.matrix.shape[1]} items"
            )

    @cached_property
    def _satisfies(self) -> np.ndarray:
        """Dense bool items x conditions."""
        return sp.csr_array(self.item_conditions).toarray() != 0

    @cached_property
    def examples(self) -> tuple[np.ndarray, np.ndarray]:
        """``(users, conditions)`` of every example, by user then condition (``-1`` = unconditioned)."""
        binary = sp.csr_array(self.matrix, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        conds = sp.csr_array(self._satisfies.astype(np.float32))
        user_cond = sp.coo_array(binary @ conds)
        user_cond.eliminate_zeros()
        users, conditions = user_cond.row.astype(np.int64), user_cond.col.astype(np.int64)
        if self.include_unconditioned:
            active = np.flatnonzero(np.diff(self.matrix.indptr) > 0)
            users = np.concatenate([active, users])
            conditions = np.concatenate([np.full(len(active), -1, dtype=np.int64), conditions])
        order = np.lexsort((conditions, users))
        return users[order], conditions[order]

    def __len__(self) -> int:
        return -(-len(self.examples[0]) // self.batch_size)

    def __call__(
        self, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, sp.csr_array, sp.csr_array]]:
        users_all, conditions_all = self.examples
        satisfies = self._satisfies
        for block in _row_batches(len(users_all), self.batch_size, rng):
            users, conditions = users_all[block], conditions_all[block]
            rows = self.matrix[users]
            row_of = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
            cond_of = conditions[row_of]
            keep = (cond_of < 0) | satisfies[rows.indices, np.maximum(cond_of, 0)]
            indptr = np.r_[0, np.cumsum(np.bincount(row_of[keep], minlength=len(users)))]
            targets = sp.csr_array((rows.data[keep], rows.indices[keep], indptr), shape=rows.shape)
            yield users, conditions, rows, targets
