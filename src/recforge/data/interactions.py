"""`Interactions`: who interacted with what, as index arrays plus a cached users x items CSR matrix."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recforge.data.ids import IdMap

Duplicates = Literal["last", "first", "sum", "max", "keep", "error"]


@dataclass(frozen=True, eq=False)
class Interactions:
    """A log of (user, item[, value, timestamp]) events over fixed user and item id maps.

    The events are kept as parallel arrays, sorted by user and then by timestamp (when present)
    so that per-user sequences are contiguous. ``matrix`` is the users x items CSR float32 view
    (duplicate events summed). ``values`` holds the rating (``explicit=True``), the weight
    (e.g. a play count) or 1.0.

    ``item_info`` / ``user_info`` are frames aligned with the id maps (row ``i`` describes index ``i``);
    ``extra`` holds per-event columns such as review texts.
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    values: np.ndarray
    users: IdMap
    items: IdMap
    timestamps: np.ndarray | None = None
    explicit: bool = False
    item_info: pd.DataFrame | None = None
    user_info: pd.DataFrame | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        for name in ("item_idx", "values"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} entries, expected {n}")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise ValueError(f"Interactions.timestamps has {len(self.timestamps)} entries, expected {n}")
        if n and (self.user_idx.min() < 0 or self.user_idx.max() >= len(self.users)):
            raise ValueError("Interactions.user_idx out of range of the user id map")
        if n and (self.item_idx.min() < 0 or self.item_idx.max() >= len(self.items)):
            raise ValueError("Interactions.item_idx out of range of the item id map")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        value_col: str | None = None,
        timestamp_col: str | None = None,
        explicit: bool | None = None,
        duplicates: Duplicates = "last",
        users: IdMap | None = None,
        items: IdMap | None = None,
        item_info: pd.DataFrame | None = None,
        user_info: pd.DataFrame | None = None,
        extra_cols: tuple[str, ...] = (),
    ) -> Interactions:
        """Index a frame of events.

        ``value_col`` defaults to ``"rating"`` if present (explicit), else ``"weight"``, else ones.
        ``timestamp_col`` defaults to ``"timestamp"`` if present. Ids not in given ``users``/``items``
        maps raise :class:`~recforge.data.ids.UnknownIdError`. ``item_info``/``user_info`` are frames
        indexed by raw id and are re-ordered to the id maps (missing ids get NaN rows).
        ``duplicates`` says what to do with repeated (user, item) events.
        """
        for col in (user_col, item_col):
            if col not in frame.columns:
                raise ValueError(f"column {col!r} not found; the frame has columns {list(frame.columns)}")
        if value_col is None:
            value_col = next((c for c in ("rating", "weight") if c in frame.columns), None)
            if explicit is None:
                explicit = value_col == "rating"
        elif value_col not in frame.columns:
            raise ValueError(f"value column {value_col!r} not found; the frame has {list(frame.columns)}")
        if timestamp_col is None and "timestamp" in frame.columns:
            timestamp_col = "timestamp"
        if users is None:
            users, uidx = IdMap.from_values(frame[user_col].to_numpy(), kind="user")
        else:
            uidx = users.index(frame[user_col].to_numpy())
        if items is None:
            items, iidx = IdMap.from_values(frame[item_col].to_numpy(), kind="item")
        else:
            iidx = items.index(frame[item_col].to_numpy())
        values = (
            frame[value_col].to_numpy(dtype=np.float32)
            if value_col is not None
            else np.ones(len(frame), dtype=np.float32)
        )
        ts = frame[timestamp_col].to_numpy(dtype=np.int64) if timestamp_col else None
        extra = {c: frame[c].to_numpy() for c in extra_cols}
        out = cls(
            uidx,
            iidx,
            values,
            users,
            items,
            timestamps=ts,
            explicit=bool(explicit),
            item_info=_align_info(item_info, items),
            user_info=_align_info(user_info, users),
            extra=extra,
        )
        return out.sorted().deduplicated(duplicates)

    @classmethod
    def from_csr(
        cls,
        matrix: sp.sparray | sp.spmatrix | np.ndarray,
        users: IdMap | None = None,
        items: IdMap | None = None,
        *,
        explicit: bool = False,
    ) -> Interactions:
        """Events from the stored entries of a users x items matrix (ids default to 0..n-1).

        A sparse matrix gives one event per stored entry, explicitly stored zeros included (a rating
        of 0 is a rating); a dense array gives one per non-zero entry. ``explicit=True`` marks the
        values as ratings (see :meth:`from_dense_ratings` for dense rating matrices with a "rated" mask).
        """
        coo = sp.coo_array(matrix)
        coo.sum_duplicates()
        n_users, n_items = coo.shape
        users = users or IdMap(np.arange(n_users), kind="user")
        items = items or IdMap(np.arange(n_items), kind="item")
        return cls(
            coo.row.astype(np.int64),
            coo.col.astype(np.int64),
            coo.data.astype(np.float32),
            users,
            items,
            explicit=explicit,
        ).sorted()

    @classmethod
    def from_dense_ratings(
        cls,
        Y: Any,
        R: Any = None,
        *,
        items_by_users: bool = True,
        users: IdMap | None = None,
        items: IdMap | None = None,
    ) -> Interactions:
        """Explicit ratings from a dense rating matrix ``Y`` and its 0/1 "rated" mask ``R`` (the CoFi notebook's input).

        ``Y`` and ``R`` are items x users as in Ng's collaborative-filtering exercise (``Y[i, j]`` is
        user ``j``'s rating of item ``i``; ``R[i, j] = 1`` where it exists); ``items_by_users=False``
        takes them users x items. Every cell with ``R = 1`` is one event -- a rating of 0 included --
        and only those: ``Y`` may hold anything (0, NaN) where ``R = 0``. Without ``R`` the rated
        cells are the non-zero, non-NaN ones of ``Y``. The result is explicit (its values are
        ratings). Ids default to 0..n-1 (item ``i`` = row ``i`` of ``Y``).

        Raises ValueError for shapes that differ or are not 2-D, a mask with values other than 0/1,
        and a rated cell that is not a finite number.
        """
        ratings = np.asarray(Y.toarray() if sp.issparse(Y) else Y, dtype=np.float64)
        if ratings.ndim != 2:
            raise ValueError(f"Y must be a 2-D matrix, got shape {ratings.shape}")
        if R is None:
            rated = (ratings != 0) & ~np.isnan(ratings)
        else:
            mask = np.asarray(R.toarray() if sp.issparse(R) else R)
            if mask.shape != ratings.shape:
                raise ValueError(f"R has shape {mask.shape} but Y has {ratings.shape}; they must be the same")
            if mask.dtype != bool:
                values = np.unique(mask)
                if not np.isin(values, (0, 1)).all():
                    raise ValueError(
                        f"R must hold only 0 and 1 (rated or not), found {values[~np.isin(values, (0, 1))][:5]}"
                    )
            rated = mask.astype(bool)
        if items_by_users:
            ratings, rated = ratings.T, rated.T
        rows, cols = np.nonzero(rated)
        values = ratings[rows, cols]
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (np.abs(values) > np.finfo(np.float32).max)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            cell = (int(cols[k]), int(rows[k])) if items_by_users else (int(rows[k]), int(cols[k]))
            raise ValueError(
                f"Y{list(cell)} = {values[k]} is rated but is not a finite number within the float32 range"
            )
        n_users, n_items = ratings.shape
        users = users or IdMap(np.arange(n_users), kind="user")
        items = items or IdMap(np.arange(n_items), kind="item")
        if len(users) != n_users or len(items) != n_items:
            raise ValueError(
                f"the id maps have {len(users)} users and {len(items)} items but the matrix is "
                f"{n_users} users x {n_items} items"
            )
        return cls(
            rows.astype(np.int64),
            cols.astype(np.int64),
            values.astype(np.float32),
            users,
            items,
            explicit=True,
        ).sorted()

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.user_idx)

    def __repr__(self) -> str:
        kind = "explicit" if self.explicit else "implicit"
        ts = ", timestamps" if self.timestamps is not None else ""
        return f"Interactions({self.n_users} users x {self.n_items} items, {len(self)} events, {kind}{ts})"

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def nnz(self) -> int:
        """Number of distinct (user, item) pairs."""
        return self.matrix.nnz

    def digest(self) -> str:
        """An exact digest of the events (CSR arrays, timestamps) and the id maps: what a model was trained on.

        Cheap (one pass of a fast hash over the arrays); two sets of interactions share it only when they hold
        the same users, items, values and times.
        """
        h = hashlib.blake2b(digest_size=16)
        m = self.matrix
        for arr in (m.indptr, m.indices, m.data, self.timestamps):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).data)
        for ids in (self.users.ids, self.items.ids):
            h.update(ids.tobytes() if ids.dtype.kind in "iufb" else "\0".join(map(str, ids)).encode())
            h.update(b"|")
        return h.hexdigest()

    @cached_property
    def matrix(self) -> sp.csr_array:
        """Users x items CSR float32 of ``values`` (duplicate events summed), indices sorted."""
        m = sp.csr_array(
            (self.values.astype(np.float32), (self.user_idx, self.item_idx)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        m.sum_duplicates()
        m.sort_indices()
        return m

    @cached_property
    def binary(self) -> sp.csr_array:
        """Users x items CSR float32 with 1.0 where the user interacted with the item."""
        m = self.matrix.copy()
        m.data[:] = 1.0
        return m

    def user_counts(self) -> np.ndarray:
        """Events per user index."""
        return np.bincount(self.user_idx, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        """Events per item index."""
        return np.bincount(self.item_idx, minlength=self.n_items)

    def to_frame(self, *, raw_ids: bool = True) -> pd.DataFrame:
        """The events as a frame with columns user, item, value[, timestamp] (raw ids by default)."""
        data: dict[str, Any] = {
            "user": self.users.ids_of(self.user_idx) if raw_ids else self.user_idx,
            "item": self.items.ids_of(self.item_idx) if raw_ids else self.item_idx,
            "rating" if self.explicit else "value": self.values,
        }
        if self.timestamps is not None:
            data["timestamp"] = self.timestamps
        data.update(self.extra)
        return pd.DataFrame(data)

    # ------------------------------------------------------------------ derived sets
    def select(self, mask: np.ndarray) -> Interactions:
        """The events where ``mask`` (bool, one per event) is true, over the same id maps."""
        mask = np.asarray(mask, dtype=bool)
        return replace(
            self,
            user_idx=self.user_idx[mask],
            item_idx=self.item_idx[mask],
            values=self.values[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            extra={k: v[mask] for k, v in self.extra.items()},
        )

    def restrict_users(self, user_indices: np.ndarray) -> Interactions:
        """Only these users, re-indexed 0..len-1 in the given order (events of other users dropped)."""
        user_indices = np.asarray(user_indices, dtype=np.int64)
        new_of_old = np.full(self.n_users, -1, dtype=np.int64)
        new_of_old[user_indices] = np.arange(len(user_indices))
        keep = new_of_old[self.user_idx] >= 0
        out = self.select(keep)
        user_info = None if self.user_info is None else self.user_info.iloc[user_indices].reset_index(drop=True)
        return replace(
            out,
            user_idx=new_of_old[out.user_idx],
            users=self.users.subset(user_indices),
            user_info=user_info,
        ).sorted()

    def restrict_items(self, item_indices: np.ndarray) -> Interactions:
        """Only these items, re-indexed 0..len-1 in the given order (events on other items dropped)."""
        item_indices = np.asarray(item_indices, dtype=np.int64)
        new_of_old = np.full(self.n_items, -1, dtype=np.int64)
        new_of_old[item_indices] = np.arange(len(item_indices))
        keep = new_of_old[self.item_idx] >= 0
        out = self.select(keep)
        item_info = None if self.item_info is None else self.item_info.iloc[item_indices].reset_index(drop=True)
        return replace(
            out, item_idx=new_of_old[out.item_idx], items=self.items.subset(item_indices), item_info=item_info
        )

    def with_values(self, values: np.ndarray, *, explicit: bool) -> Interactions:
        """Same events with other values (e.g. binarised)."""
        return replace(self, values=np.asarray(values, dtype=np.float32), explicit=explicit)

    def sorted(self) -> Interactions:
        """Events ordered by user, then timestamp; ties keep their order (stable)."""
        order = np.argsort(self._user_time_key(), kind="stable")
        if np.array_equal(order, np.arange(len(order))):
            return self
        return self.select_order(order)

    def _user_time_key(self) -> np.ndarray:
        """One int64 sort key for (user, timestamp): a single stable argsort instead of a slow lexsort."""
        if self.timestamps is None or len(self) == 0:
            return self.user_idx
        ts = self.timestamps - self.timestamps.min()
        if ts.max() >= (1 << 32):  # replace times by their ranks, which always fit in 32 bits
            ts = np.unique(self.timestamps, return_inverse=True)[1].astype(np.int64)
        return (self.user_idx.astype(np.int64) << 32) | ts

    def select_order(self, order: np.ndarray) -> Interactions:
        """The events re-ordered (or subset) by an index array."""
        return replace(
            self,
            user_idx=self.user_idx[order],
            item_idx=self.item_idx[order],
            values=self.values[order],
            timestamps=None if self.timestamps is None else self.timestamps[order],
            extra={k: v[order] for k, v in self.extra.items()},
        )

    def deduplicated(self, how: Duplicates = "last") -> Interactions:
        """Resolve repeated (user, item) events.

        ``last``/``first`` keep the latest/earliest event (event order is time order), ``sum``/``max``
        keep the latest event with the summed/maximal value, ``keep`` keeps all, ``error`` raises.
        """
        if how == "keep" or len(self) == 0 or self.matrix.nnz == len(self):
            return self
        pair = self.user_idx * np.int64(self.n_items) + self.item_idx
        order = np.argsort(pair, kind="stable")  # a pair's events stay in event order
        sorted_pairs = pair[order]
        starts = np.flatnonzero(np.r_[True, sorted_pairs[1:] != sorted_pairs[:-1]])
        ends = np.r_[starts[1:], len(order)] - 1
        if how == "error":
            u, i = divmod(int(sorted_pairs[starts[np.argmax(ends > starts)]]), self.n_items)
            user, item = self.users.ids_of([u]).tolist()[0], self.items.ids_of([i]).tolist()[0]
            raise ValueError(f"duplicate events for user {user!r} and item {item!r}")
        keep = order[starts] if how == "first" else order[ends]
        position = np.argsort(keep, kind="stable")
        out = self.select_order(keep[position])
        if how in ("sum", "max"):
            reduce = np.add if how == "sum" else np.maximum
            agg = reduce.reduceat(self.values[order].astype(np.float64), starts)
            out = replace(out, values=agg[position].astype(np.float32))
        return out


def _align_info(info: pd.DataFrame | None, ids: IdMap) -> pd.DataFrame | None:
    if info is None:
        return None
    return info.reindex(pd.Index(ids.ids, name=info.index.name)).reset_index()
