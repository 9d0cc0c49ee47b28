"""Filters on raw event frames, applied before indexing into :class:`~recforge.data.interactions.Interactions`.

Every function takes the frame the readers produce (columns ``"user"``, ``"item"``, optionally
``"rating"``, ``"weight"``, ``"timestamp"`` and any extra columns) and returns a **new** frame:
the kept rows in their original order, all columns kept (unless documented otherwise), with the
index reset to ``0..n-1``. The input frame is never modified. Everything is vectorised.

A typical implicit-feedback preprocessing (Liang et al. 2018, "Variational Autoencoders for
Collaborative Filtering", on MovieLens-20M)::

    events = binarize(events, 3.5)                          # ratings >= 3.5 become implicit positives
    events = k_core(events, min_user=5, iterative=False)    # then users with >= 5 events
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["binarize", "deduplicate", "k_core", "min_rating", "positive_weight"]

Keep = Literal["last", "first", "sum", "max"]
Order = Literal["items_first", "users_first"]


# ---------------------------------------------------------------------- helpers
def _require(frame: pd.DataFrame, column: str, what: str = "column") -> None:
    if column not in frame.columns:
        raise ValueError(f"{what} {column!r} not found; the frame has columns {list(frame.columns)}")


def _take(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The rows where ``mask`` holds, in their original order, index reset."""
    return frame.loc[mask].reset_index(drop=True)


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Dense codes ``0..n-1`` of ``values`` (missing values get their own code) and ``n``."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False), len(uniques)


def _threshold_mask(values: pd.Series, threshold: float, strict: bool) -> np.ndarray:
    arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        return arr > threshold if strict else arr >= threshold  # NaN compares False: dropped


# ---------------------------------------------------------------------- value filters
def min_rating(frame: pd.DataFrame, threshold: float, *, strict: bool = False, column: str = "rating") -> pd.DataFrame:
    """Rows whose ``column`` is ``>= threshold`` (``> threshold`` with ``strict=True``).

    Rows with a missing rating are dropped. A missing ``column`` raises :class:`ValueError`.

    >>> f = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [3.0, 4.0, 5.0]})
    >>> min_rating(f, 4.0)["rating"].tolist()
    [4.0, 5.0]
    """
    _require(frame, column, "rating column")
    return _take(frame, _threshold_mask(frame[column], threshold, strict))


def binarize(
    frame: pd.DataFrame, threshold: float | None = None, *, strict: bool = False, column: str = "rating"
) -> pd.DataFrame:
    """Turn explicit or weighted events into an implicit set: every kept event is worth 1.0.

    With a ``threshold``, first keep the rows whose ``column`` is ``>= threshold`` (``>`` with
    ``strict=True``), as :func:`min_rating`; then drop the value columns (``column``, ``"rating"``
    and ``"weight"``, whichever exist), so that
    :meth:`Interactions.from_frame <recforge.data.interactions.Interactions.from_frame>` sees no
    value column and builds an implicit set with all values 1.0. Other columns (timestamp, extras)
    are kept. Repeated (user, item) rows are kept as they are; see :func:`deduplicate`.
    Without a threshold a missing ``column`` is fine; with one it raises :class:`ValueError`.

    >>> f = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [3.0, 4.0, 5.0]})
    >>> binarize(f, 3.5).to_dict("list")
    {'user': [1, 2], 'item': [2, 1]}
    """
    if threshold is not None:
        frame = min_rating(frame, threshold, strict=strict, column=column)
    drop = [c for c in dict.fromkeys((column, "rating", "weight")) if c in frame.columns]
    return frame.drop(columns=drop).reset_index(drop=True)


def positive_weight(frame: pd.DataFrame, column: str = "weight", threshold: float = 0) -> pd.DataFrame:
    """Rows whose ``column`` is ``> threshold`` (e.g. Last.fm play counts > 0 as implicit positives).

    The weight column is kept (``Interactions.from_frame`` then uses it as the value); chain
    :func:`binarize` to drop it. Missing weights are dropped; a missing column raises :class:`ValueError`.
    """
    _require(frame, column, "weight column")
    return _take(frame, _threshold_mask(frame[column], threshold, strict=True))


# ---------------------------------------------------------------------- k-core
def k_core(
    frame: pd.DataFrame,
    *,
    min_user: int = 0,
    min_item: int = 0,
    max_iter: int = 100,
    iterative: bool = True,
    order: Order = "items_first",
    count: Literal["rows", "pairs"] = "rows",
    user_col: str = "user",
    item_col: str = "item",
) -> pd.DataFrame:
    """Drop users with fewer than ``min_user`` events and items with fewer than ``min_item`` events.

    **Counts** are of rows (events) by default, so a repeated (user, item) row counts each time;
    ``count="pairs"`` counts distinct (user, item) pairs instead (or :func:`deduplicate` first).

    **iterative=True** (default) repeats the two filters until nothing changes, which gives the
    largest sub-frame in which *every* user has ``>= min_user`` and *every* item ``>= min_item``
    events (the k-core; unique, so ``order`` does not matter). If that takes more than ``max_iter``
    rounds (each round: one item pass and one user pass) a :class:`RuntimeWarning` is issued and the
    not-yet-stable frame is returned.

    **iterative=False** makes a single pass in the given ``order``: ``"items_first"`` (default)
    drops rare items, then recounts and drops light users among the remaining events -- the
    preprocessing of Liang et al. 2018 (``filter_triplets``: items then users, once). Afterwards
    every user has ``>= min_user`` events, but items may have fallen below ``min_item``.
    ``"users_first"`` is the mirror image.

    >>> f = pd.DataFrame({"user": [1, 1, 1, 2, 2, 3], "item": [1, 2, 3, 1, 2, 1]})
    >>> k_core(f, min_user=2, min_item=2).to_dict("list")
    {'user': [1, 1, 2, 2], 'item': [1, 2, 1, 2]}
    """
    if order not in ("items_first", "users_first"):
        raise ValueError(f"order must be 'items_first' or 'users_first', not {order!r}")
    if count not in ("rows", "pairs"):
        raise ValueError(f"count must be 'rows' or 'pairs', not {count!r}")
    if min_user < 0 or min_item < 0:
        raise ValueError("min_user and min_item must be >= 0")
    if max_iter < 1:
        raise ValueError("max_iter must be >= 1")
    _require(frame, user_col, "user column")
    _require(frame, item_col, "item column")
    if len(frame) == 0 or (min_user <= 1 and min_item <= 1):
        return frame.reset_index(drop=True)  # every present user/item has >= 1 event

    users, n_users = _codes(frame[user_col])
    items, n_items = _codes(frame[item_col])
    # rows that count: all of them, or the first row of each (user, item) pair. All rows of a pair
    # share a user and an item, so they are always kept or dropped together.
    if count == "pairs":
        counted = ~pd.Series(users * n_items + items).duplicated().to_numpy()
    else:
        counted = np.ones(len(frame), dtype=bool)
    rows = np.arange(len(frame))  # indices of the rows still kept

    def drop_rare(codes: np.ndarray, n: int, k: int) -> bool:
        nonlocal rows
        if k <= 1:
            return False
        c = codes[rows]
        counts = np.bincount(c[counted[rows]], minlength=n)
        keep = counts[c] >= k
        if keep.all():
            return False
        rows = rows[keep]
        return True

    passes = [(items, n_items, min_item), (users, n_users, min_user)]
    if order == "users_first":
        passes.reverse()
    if not iterative:
        for p in passes:
            drop_rare(*p)
    else:
        for _ in range(max_iter):
            changed = [drop_rare(*p) for p in passes]
            if not any(changed):
                break
        else:
            warnings.warn(
                f"k_core did not converge in {max_iter} rounds; the result may not be a "
                f"(min_user={min_user}, min_item={min_item}) core",
                RuntimeWarning,
                stacklevel=2,
            )
    mask = np.zeros(len(frame), dtype=bool)
    mask[rows] = True
    return _take(frame, mask)


# ---------------------------------------------------------------------- duplicates
def deduplicate(
    frame: pd.DataFrame,
    *,
    keep: Keep = "last",
    by_time: bool = True,
    value_col: str | None = None,
    timestamp_col: str = "timestamp",
    user_col: str = "user",
    item_col: str = "item",
) -> pd.DataFrame:
    """One row per (user, item) pair.

    ``keep="last"`` / ``"first"`` keeps the latest / earliest row of each pair: in timestamp order
    when ``by_time`` and the frame has ``timestamp_col`` (ties broken by row order), else in row order.

    ``keep="sum"`` / ``"max"`` keeps the latest row (as ``"last"``) with its value replaced by the
    sum / max of the pair's values. The value column is ``value_col``, by default ``"rating"`` if
    present, else ``"weight"``; if there is neither, ``"sum"`` adds a ``"weight"`` column holding
    the number of rows of the pair (repeated listens become a play count) and ``"max"`` is ``"last"``.
    Integer values stay integers. Missing values are ignored by the sum and max.

    The kept rows stay in their original order.

    >>> f = pd.DataFrame({"user": [1, 1, 1], "item": [7, 8, 7], "timestamp": [5, 1, 3], "weight": [1, 2, 4]})
    >>> deduplicate(f).to_dict("list")
    {'user': [1, 1], 'item': [7, 8], 'timestamp': [5, 1], 'weight': [1, 2]}
    >>> deduplicate(f, keep="sum")["weight"].tolist()
    [5, 2]
    """
    if keep not in ("last", "first", "sum", "max"):
        raise ValueError(f"keep must be one of 'last', 'first', 'sum', 'max', not {keep!r}")
    _require(frame, user_col, "user column")
    _require(frame, item_col, "item column")
    if value_col is None:
        value_col = next((c for c in ("rating", "weight") if c in frame.columns), None)
    else:
        _require(frame, value_col, "value column")
    if len(frame) == 0:
        out = frame.reset_index(drop=True)
        if keep == "sum" and value_col is None:
            out = out.assign(weight=np.zeros(0, dtype=np.int64))
        return out

    users, _ = _codes(frame[user_col])
    items, n_items = _codes(frame[item_col])
    key = users * n_items + items
    if by_time and timestamp_col in frame.columns:
        order = np.argsort(frame[timestamp_col].to_numpy(), kind="stable")
    else:
        order = np.arange(len(frame))
    dup = pd.Series(key[order]).duplicated(keep="first" if keep == "first" else "last").to_numpy()
    kept = np.sort(order[~dup])
    out = frame.take(kept).reset_index(drop=True)
    if keep in ("last", "first") or (keep == "max" and value_col is None):
        return out

    if value_col is None:  # keep == "sum": count the rows of each pair
        _, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
        return out.assign(weight=sizes[inverse[kept]].astype(np.int64))
    values = frame[value_col].reset_index(drop=True)
    agg = values.groupby(key).transform("sum" if keep == "sum" else "max")
    out[value_col] = agg.to_numpy()[kept]
    return out
