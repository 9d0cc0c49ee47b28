"""Seeded mini-batch samplers over interaction data; they yield numpy/scipy blocks, never loop over users.

Models turn the blocks into tensors on their device (sparse or dense, as the network needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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


def sample_negatives(
    seen: sp.csr_array, users: np.ndarray, n_per_user: int, rng: np.random.Generator, *, max_rounds: int = 20
) -> np.ndarray:
    """``n_per_user`` items per entry of ``users`` that the user has not interacted with (uniform, vectorised).

    Draws candidates for all rows at once, rejects the seen ones with a sorted-pair lookup and redraws
    only the rejected cells; raises if a user has seen (almost) every item.
    """
    n_items = seen.shape[1]
    counts = np.diff(seen.indptr)[users]
    if (counts >= n_items).any():
        raise ValueError("cannot sample negatives for a user who has interacted with every item")
    seen_keys = np.asarray(np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), dtype=np.int64) * n_items
    seen_keys += seen.indices
    seen_keys.sort()
    out = rng.integers(0, n_items, size=(len(users), n_per_user))
    bad = np.ones(out.shape, dtype=bool)
    for _ in range(max_rounds):
        keys = users[:, None].astype(np.int64) * n_items + out
        pos = np.searchsorted(seen_keys, keys)
        pos = np.minimum(pos, len(seen_keys) - 1) if len(seen_keys) else pos
        bad = (seen_keys[pos] == keys) if len(seen_keys) else np.zeros(out.shape, dtype=bool)
        if not bad.any():
            return out
        out[bad] = rng.integers(0, n_items, size=int(bad.sum()))
    raise RuntimeError(f"could not draw unseen items within {max_rounds} rounds; users are too dense")


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
        lengths_all = np.minimum(np.diff(starts), self.max_length)
        users_all = np.flatnonzero(lengths_all > 0)
        for block in _row_batches(len(users_all), self.batch_size, rng):
            users = users_all[block]
            lengths = lengths_all[users]
            width = int(lengths.max())
            ends = starts[users + 1]
            offsets = np.arange(width)[None, :]
            take = ends[:, None] - lengths[:, None] + offsets  # the last `length` events, left-aligned
            mask = offsets < lengths[:, None]
            padded = np.where(mask, self.item_idx[np.where(mask, take, 0)] + 1, 0)
            yield users, padded, lengths
