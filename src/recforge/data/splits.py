"""Split protocols: every function returns one `Split` (train + evaluation parts), seeded."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.ids import IdMap, UnknownIdError
from recforge.data.interactions import Duplicates, Interactions
from recforge.data.readers._base import RawDataset


@dataclass(frozen=True)
class EvalPart:
    """Users to evaluate: what a model may know of them (``history``) and what it must find (``target``).

    ``history`` and ``target`` share one user id map and the training item id map. With
    ``known_users=True`` that user map *is* the training user map (weak generalisation: the model
    has seen these users); otherwise the users are new and must be folded in from ``history``
    (strong generalisation). ``history`` items are excluded from the ranking. ``negatives``
    (one row per user, item indices) are set for the sampled-negatives protocol.
    """

    history: Interactions
    target: Interactions
    known_users: bool
    negatives: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.history.users != self.target.users or self.history.items != self.target.items:
            raise ValueError("EvalPart history and target must share their user and item id maps")
        if self.negatives is not None and len(self.negatives) != self.history.n_users:
            raise ValueError("EvalPart.negatives needs one row per user")

    @property
    def n_users(self) -> int:
        """Users with at least one target event."""
        return int((self.target.user_counts() > 0).sum())


@dataclass(frozen=True)
class Split:
    """The result of a split protocol: ``train``, optional ``valid`` and ``test`` parts, and how it was made."""

    train: Interactions
    test: EvalPart
    valid: EvalPart | None = None
    protocol: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Sizes of every part, for logs and run directories.

        ``train_density`` is train interactions / (train users x items); the ``dropped_*`` counts of
        ``params`` (events a protocol left out, e.g. test events of users unknown to train) are repeated
        here so that a log or ``split.json`` says what was left out.
        """
        train_users = int((self.train.user_counts() > 0).sum())
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "train_users": train_users,
            "items": self.train.n_items,
            "train_interactions": self.train.nnz,
            "train_density": density(self.train.nnz, train_users, self.train.n_items),
        }
        for name, part in (("valid", self.valid), ("test", self.test)):
            if part is not None:
                out[f"{name}_users"] = part.n_users
                out[f"{name}_history_interactions"] = part.history.nnz
                out[f"{name}_target_interactions"] = part.target.nnz
        out.update({k: v for k, v in self.params.items() if k.startswith("dropped_")})
        return out


def density(interactions: int, users: int, items: int) -> float:
    """interactions / (users x items): the share of the users x items matrix that is known (0 when empty)."""
    return interactions / (users * items) if users > 0 and items > 0 else 0.0


# ====================================================================== protocols
#
# Conventions shared by every protocol below:
#
# * Weak generalisation (``known_users=True``): every part is a ``select`` of the input, so the
#   user and item id maps are the input's and are shared by ``train`` and every ``EvalPart``.
#   ``valid.history`` is ``train``; ``test.history`` is ``train`` plus the validation events
#   (everything known before the test events).
# * Strong generalisation (``known_users=False``): ``train`` holds only the training users
#   (re-indexed) and only the items they interacted with; each held-out part has its own user map
#   (the held-out users), ``history`` = fold-in events, ``target`` = held-out events, and the
#   training item map; held-out events on items absent from ``train`` are dropped.
# * "Event order" is the order of the ``Interactions`` arrays: by user, then timestamp (stable), so
#   ties keep the order of the source frame.
# * Bad arguments raise ``ValueError`` whose message starts with the argument's name.


def _check_fraction(name: str, value: Any, *, zero_ok: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not ((value >= 0.0 if zero_ok else value > 0.0) and value < 1.0):
        raise ValueError(f"{name} must be in {'[0' if zero_ok else '(0'}, 1), got {value!r}")
    return value


def _check_ratios(test: Any, valid: Any) -> tuple[float, float]:
    test = _check_fraction("test", test, zero_ok=False)
    valid = _check_fraction("valid", valid)
    if test + valid >= 1.0:
        raise ValueError(f"test + valid must be < 1 so that some events stay in train; got {test} + {valid}")
    return test, valid


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _round_half_up(x: np.ndarray | float) -> np.ndarray | int:
    out = np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)
    return int(out) if out.ndim == 0 else out


def _time_order(data: Interactions) -> np.ndarray:
    """Events grouped by user, by timestamp within a user, ties (and no timestamps) by event order."""
    du = np.diff(data.user_idx)
    if (du >= 0).all() and (data.timestamps is None or ((du > 0) | (np.diff(data.timestamps) >= 0)).all()):
        return np.arange(len(data), dtype=np.int64)  # already in that order (the usual case)
    if data.timestamps is None:
        return np.argsort(data.user_idx, kind="stable")
    return np.lexsort((data.timestamps, data.user_idx))


def _ranks_within_user(data: Interactions, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of every event within its user in ``order`` (grouped by user), and events per user (per event)."""
    counts = data.user_counts()
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64) - starts[data.user_idx[order]]
    return rank, counts[data.user_idx]


def _weak_split(
    data: Interactions,
    *,
    train_mask: np.ndarray,
    test_mask: np.ndarray,
    valid_mask: np.ndarray | None,
    test_history_mask: np.ndarray | None = None,
    protocol: str,
    params: dict[str, Any],
    test_negatives: np.ndarray | None = None,
    valid_negatives: np.ndarray | None = None,
) -> Split:
    train = data.select(train_mask)
    valid_part = None
    if valid_mask is not None:
        valid_part = EvalPart(train, data.select(valid_mask), known_users=True, negatives=valid_negatives)
        if test_history_mask is None:
            test_history_mask = train_mask | valid_mask
    history = train if test_history_mask is None else data.select(test_history_mask)
    test_part = EvalPart(history, data.select(test_mask), known_users=True, negatives=test_negatives)
    return Split(train=train, test=test_part, valid=valid_part, protocol=protocol, params=params)


# ---------------------------------------------------------------------- random
def random_split(
    data: Interactions, *, test: float = 0.2, valid: float = 0.0, seed: int = 0, per_user: bool = False
) -> Split:
    """Random events to ``test`` and ``valid`` (weak generalisation); the rest is ``train``.

    Global (default): exactly ``round(test * n)`` test and ``round(valid * n)`` validation events
    (half rounded up) drawn uniformly from all ``n`` events. ``per_user=True``: each user with ``c``
    events gets ``round(test * c)`` test and ``round(valid * c)`` validation events, but always keeps
    at least one training event (the validation count is reduced first, then the test count); so a
    user with a single event, or too few events for a rounded share, keeps them all in train.

    Presets: 70/20/10 train/valid/test (the Goodreads NCF notebook) is ``random_split(data, valid=0.2,
    test=0.1)``; 90/10 is ``random_split(data, test=0.1)`` (see :data:`PRESETS`).
    """
    test, valid = _check_ratios(test, valid)
    rng = np.random.default_rng(seed)
    n = len(data)
    test_mask = np.zeros(n, dtype=bool)
    valid_mask = np.zeros(n, dtype=bool)
    if not per_user:
        perm = rng.permutation(n)
        n_test, n_valid = _round_half_up(test * n), _round_half_up(valid * n)
        test_mask[perm[:n_test]] = True
        valid_mask[perm[n_test : n_test + n_valid]] = True
    else:
        order = np.lexsort((rng.random(n), data.user_idx))
        rank, count = _ranks_within_user(data, order)
        n_test_u = _round_half_up(test * count)
        n_valid_u = _round_half_up(valid * count)
        excess = np.maximum(n_test_u + n_valid_u - (count - 1), 0)
        cut_valid = np.minimum(excess, n_valid_u)
        n_valid_u -= cut_valid
        n_test_u -= excess - cut_valid
        test_mask = rank < n_test_u
        valid_mask = (rank >= n_test_u) & (rank < n_test_u + n_valid_u)
    params = {"test": test, "valid": valid, "seed": seed, "per_user": per_user}
    return _weak_split(
        data,
        train_mask=~(test_mask | valid_mask),
        test_mask=test_mask,
        valid_mask=valid_mask if valid > 0 else None,
        protocol="random",
        params=params,
    )


# ---------------------------------------------------------------------- every n-th
def every_nth_split(
    data: Interactions,
    *,
    n: int = 8,
    valid_fraction: float = 0.5,
    order: np.ndarray | str | None = None,
    assign: str = "alternate",
) -> Split:
    """Deterministic split of the PyTorch recommender tutorial: event ``i`` with ``i % n == 0`` held out.

    ``i`` counts events in the event order of ``data`` (by user, then timestamp, ties in source
    order) unless ``order`` (a permutation of ``range(len(data))``, e.g. the raw file order) is given:
    then event ``order[i]`` is the ``i``-th; ``order="file"`` is the order of the per-event column
    ``data.extra["source_row"]`` (the line of each event in its file; the pipeline adds it for this option).
    ``assign`` says which held-out events validate: ``"alternate"`` -- the ``k``-th held-out event
    (``k = i // n``) goes to validation when ``ceil((k + 1) * valid_fraction) > ceil(k * valid_fraction)``,
    otherwise to test (with the default 0.5: valid, test, valid, ...); ``"halves"`` -- the tutorial's
    ``cutout = len(held) // 2``: the first ``floor(valid_fraction * held)`` held-out events validate, the rest
    test. ``valid_fraction=0`` gives no validation part. Deterministic: no ``seed``.
    """
    n = _check_int("n", n, 2)
    valid_fraction = _check_fraction("valid_fraction", valid_fraction)
    if assign not in ("alternate", "halves"):
        raise ValueError(f"assign must be 'alternate' or 'halves', got {assign!r}")
    size = len(data)
    order_name = "events" if order is None else str(order) if isinstance(order, str) else "given"
    if isinstance(order, str):
        if order != "file":
            raise ValueError(f"order must be a permutation array or 'file', got {order!r}")
        if "source_row" in data.extra:
            order = np.argsort(np.asarray(data.extra["source_row"]), kind="stable")
        else:
            warnings.warn(
                "every_nth: order='file' but the events carry no 'source_row' column (each event's file line): "
                "counting in event order (by user, then time) instead",
                UserWarning,
                stacklevel=2,
            )
            order, order_name = None, "events"
    if order is None:
        pos = np.arange(size, dtype=np.int64)
    else:
        order = np.asarray(order, dtype=np.int64)
        if order.shape != (size,) or not np.array_equal(np.sort(order), np.arange(size)):
            raise ValueError(f"order must be a permutation of range({size}) (one entry per event)")
        pos = np.empty(size, dtype=np.int64)
        pos[order] = np.arange(size, dtype=np.int64)
    held = pos % n == 0
    k = (pos // n).astype(np.float64)
    if assign == "halves":
        to_valid = k < math.floor(int(held.sum()) * valid_fraction)
    else:
        to_valid = np.ceil((k + 1) * valid_fraction) > np.ceil(k * valid_fraction)
    valid_mask = held & to_valid
    test_mask = held & ~to_valid
    return _weak_split(
        data,
        train_mask=~held,
        test_mask=test_mask,
        valid_mask=valid_mask if valid_fraction > 0 else None,
        protocol="every_nth",
        params={"n": n, "valid_fraction": valid_fraction, "order": order_name, "assign": assign},
    )


# ---------------------------------------------------------------------- leave last out
def leave_last_out(
    data: Interactions, *, n_valid: int = 1, n_test: int = 1, seed: int = 0, n_negatives: int = 0
) -> Split:
    """Per user, the last ``n_test`` events to test and the ``n_valid`` before them to valid (by timestamp).

    Users with fewer than ``n_test + n_valid + 1`` events (< 3 with the defaults, < 2 with
    ``n_valid=0``) keep all their events in train. Without timestamps the event order is used.
    ``n_negatives > 0`` (He et al. 2017 NCF: 99): for every user with a target event, that many
    distinct items the user never interacted with anywhere in ``data``, uniformly at random, in
    ``EvalPart.negatives`` (one row per user index; ``-1`` rows for users without target). The test
    part's negatives are drawn first, then the validation part's, from ``default_rng(seed)``.
    """
    n_valid = _check_int("n_valid", n_valid, 0)
    n_test = _check_int("n_test", n_test, 1)
    n_negatives = _check_int("n_negatives", n_negatives, 0)
    order = _time_order(data)
    rank, count = _ranks_within_user(data, order)
    from_end = count - 1 - rank
    eligible = count >= n_test + n_valid + 1
    test_mask = eligible & (from_end < n_test)
    valid_mask = eligible & (from_end >= n_test) & (from_end < n_test + n_valid)
    test_neg = valid_neg = None
    if n_negatives > 0:
        rng = np.random.default_rng(seed)
        seen = data.binary
        test_neg = _sample_negatives(seen, np.unique(data.user_idx[test_mask]), n_negatives, rng)
        if n_valid > 0:
            valid_neg = _sample_negatives(seen, np.unique(data.user_idx[valid_mask]), n_negatives, rng)
    params = {"n_valid": n_valid, "n_test": n_test, "seed": seed, "n_negatives": n_negatives}
    return _weak_split(
        data,
        train_mask=~(test_mask | valid_mask),
        test_mask=test_mask,
        valid_mask=valid_mask if n_valid > 0 else None,
        protocol="leave_last_out",
        params=params,
        test_negatives=test_neg,
        valid_negatives=valid_neg,
    )


def _sample_negatives(seen: Any, rows: np.ndarray, n_neg: int, rng: np.random.Generator) -> np.ndarray:
    """``n_neg`` distinct items per row in ``rows`` that are not stored in ``seen`` (CSR, sorted indices).

    Each row draws ``w`` items uniformly with replacement, drops seen items and repeats and keeps
    the first ``n_neg`` survivors in draw order: a uniform sample without replacement of the row's
    unseen items. ``w`` is sized to the row's share of unseen items; rows that fall short are redrawn
    with twice the width, and rows that would need more than half the catalogue per draw are
    sampled exactly from their unseen items. Seen/repeat checks use a dense scratch block of
    ``rows x n_items`` int32 per chunk (at most 64 MiB), never the whole matrix.
    """
    n_users, n_items = seen.shape
    out = np.full((n_users, n_neg), -1, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if n_neg == 0 or len(rows) == 0:
        return out
    n_seen = np.diff(seen.indptr).astype(np.int64)
    n_unseen = n_items - n_seen[rows]
    if (n_unseen < n_neg).any():
        worst = int(np.argmin(n_unseen))
        raise ValueError(
            f"n_negatives={n_neg} is more than the {int(n_unseen[worst])} items that user index "
            f"{int(rows[worst])} never interacted with"
        )
    need = (n_neg + 3 * np.sqrt(n_neg) + 8) * n_items / n_unseen
    width = np.ceil(2 ** (np.ceil(4 * np.log2(need)) / 4)).astype(np.int64)  # quarter-octave buckets
    max_chunk = max(1, (1 << 24) // n_items)
    scratch = np.empty((min(max_chunk, len(rows)), n_items), dtype=np.int32)

    def exact(batch: np.ndarray) -> None:
        for r in batch:
            pool = np.setdiff1d(np.arange(n_items), seen.indices[seen.indptr[r] : seen.indptr[r + 1]])
            out[r] = rng.choice(pool, size=n_neg, replace=False)

    def draw(batch: np.ndarray, w: int) -> np.ndarray:
        """Fill the rows of ``batch`` that get enough survivors; return those that do not."""
        b = len(batch)
        cand = rng.integers(0, n_items, size=(b, w), dtype=np.int64)
        r = np.arange(b)[:, None]
        # scratch[r, item] = a draw position of item in row r (the first, as numpy writes in order; any
        # label-independent choice of representative keeps the sample uniform), then -1 for seen items
        scratch[r, cand[:, ::-1]] = np.arange(w - 1, -1, -1, dtype=np.int32)
        lo, hi = seen.indptr[batch], seen.indptr[batch + 1]
        lens = hi - lo
        at = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        scratch[np.repeat(np.arange(b), lens), seen.indices[at]] = -1
        ok = scratch[r, cand] == np.arange(w, dtype=np.int32)
        cum = np.cumsum(ok, axis=1)
        done = cum[:, -1] >= n_neg
        take = ok[done] & (cum[done] <= n_neg)
        out[batch[done]] = cand[done][take].reshape(-1, n_neg)
        return batch[~done]

    pending, pending_w = rows, width
    while len(pending):
        too_wide = pending_w > max(n_items // 2, 4 * n_neg)
        exact(pending[too_wide])
        pending, pending_w = pending[~too_wide], pending_w[~too_wide]
        failed_rows: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
        failed_w: list[np.ndarray] = [np.empty(0, dtype=np.int64)]
        for w in np.unique(pending_w).tolist():
            bucket = pending[pending_w == w]
            chunk = max(1, min(max_chunk, (1 << 22) // w))
            for start in range(0, len(bucket), chunk):
                short = draw(bucket[start : start + chunk], w)
                failed_rows.append(short)
                failed_w.append(np.full(len(short), 2 * w, dtype=np.int64))
        pending, pending_w = np.concatenate(failed_rows), np.concatenate(failed_w)
    return out


# ---------------------------------------------------------------------- temporal
def temporal_split(data: Interactions, *, test: float = 0.2, valid: float = 0.0) -> Split:
    """Global time cut: latest ``round(test * n)`` events to test, the ``round(valid * n)`` before to valid.

    Events are ordered by timestamp, ties by event order, so sizes are exact and every test
    timestamp is >= every validation timestamp >= every training timestamp (the cut times are in
    ``params["valid_start"]``/``params["test_start"]``). Targets keep only events whose user *and*
    item have a training event (the model cannot know the others); the dropped counts are in
    ``params["dropped_valid_events"]``/``params["dropped_test_events"]``. ``test.history`` is train
    plus all validation-period events. Deterministic: no ``seed``.
    """
    if data.timestamps is None:
        raise ValueError("data has no timestamps; temporal_split needs data.timestamps")
    test, valid = _check_ratios(test, valid)
    n = len(data)
    order = np.argsort(data.timestamps, kind="stable")
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n, dtype=np.int64)
    n_test, n_valid = _round_half_up(test * n), _round_half_up(valid * n)
    test_period = pos >= n - n_test
    valid_period = (pos >= n - n_test - n_valid) & ~test_period
    train_mask = ~(test_period | valid_period)
    known_user = np.bincount(data.user_idx[train_mask], minlength=data.n_users) > 0
    known_item = np.bincount(data.item_idx[train_mask], minlength=data.n_items) > 0
    known = known_user[data.user_idx] & known_item[data.item_idx]
    params: dict[str, Any] = {
        "test": test,
        "valid": valid,
        "test_start": int(data.timestamps[order[n - n_test]]) if n_test else None,
        "valid_start": int(data.timestamps[order[n - n_test - n_valid]]) if n_valid else None,
        "dropped_test_events": int((test_period & ~known).sum()),
    }
    if valid > 0:
        params["dropped_valid_events"] = int((valid_period & ~known).sum())
    return _weak_split(
        data,
        train_mask=train_mask,
        test_mask=test_period & known,
        valid_mask=valid_period & known if valid > 0 else None,
        test_history_mask=train_mask | valid_period,
        protocol="temporal",
        params=params,
    )


# ---------------------------------------------------------------------- held-out users
def heldout_users_split(
    data: Interactions,
    *,
    n_heldout: int | None = None,
    valid_users: int | Sequence[Any] | None = None,
    test_users: int | Sequence[Any] | None = None,
    target_fraction: float = 0.2,
    min_events: int = 5,
    seed: int = 0,
) -> Split:
    """Strong generalisation: held-out validation and test users, folded in from part of their events.

    ``valid_users`` / ``test_users`` are each a number of users (default ``n_heldout``; 0 means no
    validation part) or a list of raw user ids. Random held-out users are drawn uniformly (from
    ``default_rng(seed)``) among users with events that are not already listed; all other users
    train. ``train`` keeps only the training users (in their original order) and the items they
    interacted with; held-out users keep their original relative order and lose events on items
    absent from train (counted in ``params["dropped_heldout_events"]``). Then each held-out user with
    ``c >= min_events`` remaining events gets ``floor(target_fraction * c)`` random target events,
    the rest is fold-in ``history``; users with fewer events are all fold-in (Liang et al. 2018).
    """
    target_fraction = _check_fraction("target_fraction", target_fraction, zero_ok=False)
    min_events = _check_int("min_events", min_events, 1)
    if n_heldout is not None:
        n_heldout = _check_int("n_heldout", n_heldout, 0)
    rng = np.random.default_rng(seed)

    def resolve(name: str, spec: Any) -> tuple[int, np.ndarray | None]:
        if spec is None:
            if n_heldout is None:
                raise ValueError(f"n_heldout is required when {name} is not given")
            return n_heldout, None
        if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
            return _check_int(name, spec, 0), None
        try:
            idx = data.users.index(list(spec))
        except UnknownIdError as e:
            raise ValueError(f"{name}: {e}") from None
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"{name} lists a user more than once")
        return len(idx), idx

    n_valid, valid_idx = resolve("valid_users", valid_users)
    n_test, test_idx = resolve("test_users", test_users)
    if n_test == 0:
        raise ValueError("test_users (or n_heldout) must be at least 1")
    listed = np.concatenate([x for x in (valid_idx, test_idx) if x is not None] or [np.empty(0, np.int64)])
    if len(np.unique(listed)) != len(listed):
        raise ValueError("valid_users and test_users overlap")
    active = np.flatnonzero(data.user_counts() > 0)
    pool = np.setdiff1d(active, listed)
    n_drawn = (n_valid if valid_idx is None else 0) + (n_test if test_idx is None else 0)
    if n_drawn >= len(pool):
        raise ValueError(
            f"n_heldout (or valid_users/test_users) too large: {n_drawn} random held-out users requested "
            f"from {len(pool)} candidates; at least one user with events must stay in train"
        )
    drawn = rng.permutation(pool)[:n_drawn]
    if valid_idx is None:
        valid_idx, drawn = drawn[:n_valid], drawn[n_valid:]
    if test_idx is None:
        test_idx = drawn[:n_test]
    heldout = np.concatenate([valid_idx, test_idx])
    train_users = np.setdiff1d(np.arange(data.n_users), heldout)
    train = data.restrict_users(train_users)
    train_items = np.flatnonzero(train.item_counts() > 0)
    train = train.restrict_items(train_items)

    dropped = 0
    parts: dict[str, EvalPart | None] = {"valid": None, "test": None}
    for name, idx in (("valid", valid_idx), ("test", test_idx)):
        if name == "valid" and n_valid == 0:
            continue
        users_part = data.restrict_users(np.sort(idx))
        part = users_part.restrict_items(train_items)
        dropped += len(users_part) - len(part)
        order = np.lexsort((rng.random(len(part)), part.user_idx))
        rank, count = _ranks_within_user(part, order)
        n_target = np.where(count >= min_events, np.floor(target_fraction * count).astype(np.int64), 0)
        is_target = rank < n_target
        parts[name] = EvalPart(part.select(~is_target), part.select(is_target), known_users=False)
    params = {
        "n_heldout": n_heldout,
        "valid_users": n_valid if valid_users is None or isinstance(valid_users, numbers.Integral) else "given",
        "test_users": n_test if test_users is None or isinstance(test_users, numbers.Integral) else "given",
        "target_fraction": target_fraction,
        "min_events": min_events,
        "seed": seed,
        "dropped_heldout_events": dropped,
    }
    test_part = parts["test"]
    assert test_part is not None
    return Split(train=train, test=test_part, valid=parts["valid"], protocol="heldout_users", params=params)


# ---------------------------------------------------------------------- Liang et al. 2018
_LIANG_MIN_SPLIT = 5  # held-out users with fewer (remaining) events keep them all as fold-in


def _info_by_raw_id(info: pd.DataFrame | None, ids: IdMap, name: str) -> pd.DataFrame | None:
    """An Interactions' side-information frame (row ``i``: index ``i``) indexed by raw id again, for re-alignment."""
    if info is None:
        return None
    info = info.drop(columns=[name], errors="ignore")  # the raw-id column that alignment added
    info.index = pd.Index(ids.ids, name=name)
    return info


def liang2018(
    raw: pd.DataFrame | Interactions | RawDataset,
    *,
    heldout_users: int,
    min_rating: float | None = 3.5,
    min_user_count: int = 5,
    min_item_count: int = 0,
    target_fraction: float = 0.2,
    seed: int = 98765,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str = "rating",
    value_col: str | None = None,
) -> Split:
    """Liang et al. 2018 (Mult-VAE) preprocessing and split, as dawenl/vae_cf ``VAE_ML20M_WWW2018.ipynb``.

    ``raw`` is the raw events frame as read from the file (columns ``user_col``, ``item_col``,
    ``rating_col`` and optionally ``timestamp``); **its row order matters** (as in the notebook: it
    orders the items and the events each user's random draw picks from). An ``Interactions`` is
    accepted too, through ``to_frame()`` (its event order, by user then time, so the result can differ
    from running the notebook on the raw file; its ``values`` are the ratings), and so is a
    :class:`~recforge.data.readers.RawDataset` (its ``interactions`` frame). Item and user side
    information (``item_info`` of a RawDataset or an Interactions: tags, genres...) is carried over to
    every part, aligned with its id maps, as every protocol does.

    Steps, literally: keep ``rating > min_rating`` (strict; ``None`` skips it); drop items with fewer
    than ``min_item_count`` events (if > 0), then users with fewer than ``min_user_count`` (if > 0),
    once each; permute the sorted user ids with ``RandomState(seed).permutation``; the last
    ``heldout_users`` are test users, the ``heldout_users`` before are validation users, the rest
    train. Items are those of the training users' events, indexed in order of first appearance.
    Held-out users' events on other items are dropped; then ``split_train_test_proportion``: a fresh
    ``RandomState(seed)`` (separately for validation and test) walks the users in sorted raw-id order
    and each with ``c >= 5`` events draws ``int(target_fraction * c)`` target events with
    ``choice(c, size, replace=False)`` among its rows in frame order; the rest is fold-in.

    Users are indexed in permuted order (``train``: training users; each part: its users), values are
    1.0 (``explicit=False``), events kept as they are (no de-duplication); with ``value_col`` (e.g.
    ``"weight"``, a play count) the values are that column's, kept as implicit weights.
    """
    heldout_users = _check_int("heldout_users", heldout_users, 1)
    target_fraction = _check_fraction("target_fraction", target_fraction, zero_ok=False)
    min_user_count = _check_int("min_user_count", min_user_count, 0)
    min_item_count = _check_int("min_item_count", min_item_count, 0)
    item_info = user_info = None
    if isinstance(raw, Interactions):
        frame = raw.to_frame()
        user_col, item_col = "user", "item"
        rating_col = "rating" if raw.explicit else "value"
        value_col = rating_col if value_col is not None else None  # an Interactions has one value column
        item_info = _info_by_raw_id(raw.item_info, raw.items, "item")
        user_info = _info_by_raw_id(raw.user_info, raw.users, "user")
    elif isinstance(raw, RawDataset):
        frame, item_info, user_info = raw.interactions, raw.item_info, raw.user_info
    elif isinstance(raw, pd.DataFrame):
        frame = raw
    else:
        raise ValueError(f"raw must be a pandas DataFrame, RawDataset or Interactions, got {type(raw).__name__}")
    needed = [user_col, item_col] + ([rating_col] if min_rating is not None else [])
    needed += [value_col] if value_col is not None else []
    for col in needed:
        if col not in frame.columns:
            raise ValueError(f"raw has no column {col!r}; it has {list(frame.columns)}")

    if min_rating is not None:
        frame = frame[frame[rating_col] > min_rating]
    if min_item_count > 0:
        item_count = frame.groupby(item_col).size()
        frame = frame[frame[item_col].isin(item_count.index[item_count >= min_item_count])]
    if min_user_count > 0:
        user_count = frame.groupby(user_col).size()
        frame = frame[frame[user_col].isin(user_count.index[user_count >= min_user_count])]
    unique_uid = frame.groupby(user_col).size().index
    unique_uid = unique_uid[np.random.RandomState(seed).permutation(unique_uid.size)]
    n_users = unique_uid.size
    if 2 * heldout_users >= n_users:
        raise ValueError(
            f"heldout_users={heldout_users} too large: {n_users} users after filtering, "
            "2 * heldout_users must be smaller"
        )
    tr_users = unique_uid[: n_users - 2 * heldout_users]
    vd_users = unique_uid[n_users - 2 * heldout_users : n_users - heldout_users]
    te_users = unique_uid[n_users - heldout_users :]
    train_plays = frame.loc[frame[user_col].isin(tr_users)]
    unique_sid = pd.Index(pd.unique(train_plays[item_col]))
    items = IdMap(unique_sid, kind="item")

    def to_interactions(plays: pd.DataFrame, users: IdMap) -> Interactions:
        cols = {"user": plays[user_col].to_numpy(), "item": plays[item_col].to_numpy()}
        if value_col is not None:
            cols["weight"] = plays[value_col].to_numpy(dtype=np.float32)
        if "timestamp" in plays.columns:
            cols["timestamp"] = plays["timestamp"].to_numpy()
        return Interactions.from_frame(
            pd.DataFrame(cols),
            users=users,
            items=items,
            explicit=False,
            duplicates="keep",
            item_info=item_info,
            user_info=user_info,
        )

    train = to_interactions(train_plays, IdMap(tr_users, kind="user"))
    parts = []
    for part_users in (vd_users, te_users):
        plays = frame.loc[frame[user_col].isin(part_users)]
        plays = plays.loc[plays[item_col].isin(unique_sid)]
        is_target = _liang_split_proportion(plays[user_col].to_numpy(), target_fraction, seed)
        users = IdMap(part_users, kind="user")
        parts.append(
            EvalPart(
                to_interactions(plays[~is_target], users),
                to_interactions(plays[is_target], users),
                known_users=False,
            )
        )
    params = {
        "heldout_users": heldout_users,
        "min_rating": min_rating,
        "min_user_count": min_user_count,
        "min_item_count": min_item_count,
        "target_fraction": target_fraction,
        "seed": seed,
        "value_col": value_col,
        "filtered_events": len(frame),
        "filtered_users": n_users,
        "train_users": len(tr_users),
        "items": len(unique_sid),
    }
    return Split(train=train, test=parts[1], valid=parts[0], protocol="liang2018", params=params)


def _liang_split_proportion(user_ids: np.ndarray, test_prop: float, seed: int) -> np.ndarray:
    """``split_train_test_proportion`` of the notebook: which rows are held out (bool per row)."""
    codes, _ = pd.factorize(user_ids, sort=True)  # groups in sorted user order, as groupby
    order = np.argsort(codes, kind="stable")  # each group's rows in frame order
    counts = np.bincount(codes, minlength=int(codes.max()) + 1 if len(codes) else 0)
    starts = np.cumsum(counts) - counts
    rs = np.random.RandomState(seed)
    is_target = np.zeros(len(user_ids), dtype=bool)
    for g in np.flatnonzero(counts >= _LIANG_MIN_SPLIT):
        n_items_u = int(counts[g])
        pick = rs.choice(n_items_u, size=int(test_prop * n_items_u), replace=False).astype("int64")
        is_target[order[starts[g] + pick]] = True
    return is_target


# ---------------------------------------------------------------------- predefined
def predefined_split(
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    *,
    valid_frame: pd.DataFrame | None = None,
    users: IdMap | None = None,
    items: IdMap | None = None,
    value_col: str | None = None,
    timestamp_col: str | None = None,
    duplicates: Duplicates = "last",
    item_info: pd.DataFrame | None = None,
    user_info: pd.DataFrame | None = None,
) -> Split:
    """A split given as frames (e.g. ML-100K ``u1.base``/``u1.test``), weak generalisation.

    ``item_info``/``user_info`` (indexed by raw id, as a reader gives them) are aligned to the id maps of
    every part.

    Users and items are indexed over ``train_frame`` (sorted raw ids), or over the given ``users``/
    ``items`` maps. Validation/test events whose user or item is not in the maps (by default: unseen
    in train) are dropped from the target and counted in ``params["dropped_valid_events"]`` /
    ``params["dropped_test_events"]`` (with the distinct users and items concerned in
    ``dropped_test_users``/``dropped_test_items``, likewise for valid); with explicit maps, training
    events outside them are dropped too (``params["dropped_train_events"]``). The counts are also in
    :meth:`Split.summary`, and any drop is announced with a :class:`UserWarning` naming them. Columns
    as for :meth:`Interactions.from_frame` (same ``value_col``/``timestamp_col``/``duplicates`` for
    every frame).
    """
    for name, f in (("train_frame", train_frame), ("test_frame", test_frame), ("valid_frame", valid_frame)):
        if f is not None and not isinstance(f, pd.DataFrame):
            raise ValueError(f"{name} must be a pandas DataFrame, got {type(f).__name__}")
        if f is not None and not {"user", "item"} <= set(f.columns):
            raise ValueError(f"{name} needs columns 'user' and 'item'; it has {list(f.columns)}")
    kw: dict[str, Any] = {
        "value_col": value_col,
        "timestamp_col": timestamp_col,
        "duplicates": duplicates,
        "item_info": item_info,
        "user_info": user_info,
    }
    params: dict[str, Any] = {}

    def known(frame: pd.DataFrame, part: str) -> np.ndarray:
        """Events of ``frame`` whose user and item are in the maps; counts and announces the others."""
        assert users is not None and items is not None
        user_known = users.index(frame["user"].to_numpy(), missing="minus_one") >= 0
        item_known = items.index(frame["item"].to_numpy(), missing="minus_one") >= 0
        keep = user_known & item_known
        dropped = int((~keep).sum())
        params[f"dropped_{part}_events"] = dropped
        if part != "train":
            params[f"dropped_{part}_users"] = int(frame["user"][~user_known].nunique())
            params[f"dropped_{part}_items"] = int(frame["item"][~item_known].nunique())
        if dropped:
            what = "given user/item maps" if part == "train" else "training part"
            detail = (
                ""
                if part == "train"
                else f" ({params[f'dropped_{part}_users']} unknown user(s), {params[f'dropped_{part}_items']} "
                f"unknown item(s))"
            )
            warnings.warn(
                f"predefined split: dropped {dropped} of {len(frame)} {part} events whose user or item is not in "
                f"the {what}{detail}",
                UserWarning,
                stacklevel=3,
            )
        return keep

    if users is None:
        users = IdMap.from_values(train_frame["user"].to_numpy(), kind="user")[0]
    if items is None:
        items = IdMap.from_values(train_frame["item"].to_numpy(), kind="item")[0]
    keep = known(train_frame, "train")
    train = Interactions.from_frame(train_frame[keep], users=users, items=items, **kw)
    valid_part = None
    history = train
    if valid_frame is not None:
        keep = known(valid_frame, "valid")
        valid_target = Interactions.from_frame(valid_frame[keep], users=users, items=items, **kw)
        valid_part = EvalPart(train, valid_target, known_users=True)
        history = _concat(train, valid_target)
    keep = known(test_frame, "test")
    test_target = Interactions.from_frame(test_frame[keep], users=users, items=items, **kw)
    test_part = EvalPart(history, test_target, known_users=True)
    return Split(train=train, test=test_part, valid=valid_part, protocol="predefined", params=params)


def _concat(a: Interactions, b: Interactions) -> Interactions:
    """Events of ``a`` then ``b`` (same id maps), re-sorted by user and time."""
    ts = None
    if a.timestamps is not None and b.timestamps is not None:
        ts = np.concatenate([a.timestamps, b.timestamps])
    return replace(
        a,
        user_idx=np.concatenate([a.user_idx, b.user_idx]),
        item_idx=np.concatenate([a.item_idx, b.item_idx]),
        values=np.concatenate([a.values, b.values]),
        timestamps=ts,
        extra={k: np.concatenate([v, b.extra[k]]) for k, v in a.extra.items() if k in b.extra},
    ).sorted()


# ---------------------------------------------------------------------- registry
SPLITS: dict[str, Callable[..., Split]] = {
    "random": random_split,
    "every_nth": every_nth_split,
    "leave_last_out": leave_last_out,
    "temporal": temporal_split,
    "heldout_users": heldout_users_split,
    "liang2018": liang2018,
    "predefined": predefined_split,
}
"""Protocol name -> function; call as ``SPLITS[name](data, **params)``."""

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "random_70_20_10": ("random", {"valid": 0.2, "test": 0.1}),  # Goodreads NCF notebook
    "random_90_10": ("random", {"test": 0.1}),
    "leave_one_out_ncf": ("leave_last_out", {"n_valid": 0, "n_negatives": 99}),  # He et al. 2017
    # the PyTorch recommender tutorial: every 8th line of the file held out, its first half valid, second half test
    "tutorial_every_8th": ("every_nth", {"n": 8, "assign": "halves", "order": "file"}),
}
"""Named parameter sets: preset name -> (protocol name in :data:`SPLITS`, keyword params)."""
