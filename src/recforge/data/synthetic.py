"""Seeded generators of realistic synthetic implicit-feedback data, up to MovieLens-20M size.

The model behind :func:`make_implicit`:

* **Taste clusters.** Every user belongs to one of ``n_clusters`` latent clusters (sizes drawn
  from a Dirichlet(2) so they are unequal). Every item belongs to one random cluster and, with
  probability 1/4, to a second one. A cluster's item distribution is the global popularity
  restricted to its items.
* **Long-tailed popularity.** Global item weights follow a Zipf--Mandelbrot law
  ``(rank + q) ** -popularity_exponent`` over a random ranking of the items. The offset ``q``
  flattens the very head so that the most popular item is drawn about ``head_share`` of the
  users' worth of times (pure Zipf would put the top item in every user's history); the tail stays
  a power law.
* **Long-tailed activity.** A user's number of events is ``min_per_user`` plus a share of the
  rest proportional to a log-normal(0, ``activity_sigma``) draw, capped at ``max_user_share`` of
  the items; the counts add up to exactly ``n_interactions``.
* **Events.** Each event of a user picks its item from the user's cluster distribution with
  probability ``cluster_strength``, else from the global popularity (inverse-CDF sampling with
  ``np.searchsorted`` over stacked cumulative weights). Repeated (user, item) pairs are dropped
  and the shortfall is drawn again in a few vectorised rounds (later rounds mix in a uniform
  distribution so that heavy users always finish), so there are **no duplicates and exactly
  ``n_interactions`` events**.
* **Timestamps.** Each user is active over a log-normal span (median ~30 days) starting at a
  random time between 2000-01-01 and 2015-03-31; the order of their items is random and their
  timestamps (int64 Unix seconds) are strictly increasing.

Users and items are the integers ``0..n-1`` (items that were never drawn stay in the item map).
The ML-20M shape (``make_ml20m_like()``: ~10M events) takes a few seconds and well under 2 GB.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from scipy.special import ndtri

from recforge.data.ids import IdMap
from recforge.data.interactions import Interactions

__all__ = [
    "ML20M_RATING_DISTRIBUTION",
    "ML20M_SHAPE",
    "make_implicit",
    "make_implicit_frame",
    "make_ml20m_like",
    "write_ratings_csv",
]

#: Users, items and interactions of MovieLens-20M after the Liang et al. (2018) preprocessing
#: (ratings >= 3.5 as positives, users with >= 5 of them).
ML20M_SHAPE: dict[str, int] = {"n_users": 136_677, "n_items": 20_720, "n_interactions": 9_990_682}

#: Share of each rating (0.5, 1.0, ..., 5.0) in MovieLens-20M's ``ratings.csv``.
ML20M_RATING_DISTRIBUTION: dict[float, float] = {
    0.5: 0.0120,
    1.0: 0.0340,
    1.5: 0.0140,
    2.0: 0.0715,
    2.5: 0.0440,
    3.0: 0.2140,
    3.5: 0.1100,
    4.0: 0.2780,
    4.5: 0.0765,
    5.0: 0.1460,
}

_T_START = 946_684_800  # 2000-01-01T00:00:00Z
_T_END = 1_427_760_000  # 2015-03-31T00:00:00Z
_ROUNDS = 12  # top-up rounds before the (rarely needed) per-user fallback


# ---------------------------------------------------------------------- public API
def make_implicit_frame(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    n_clusters: int = 20,
    popularity_exponent: float = 1.0,
    activity_sigma: float = 1.0,
    cluster_strength: float = 0.8,
    min_per_user: int = 5,
    max_user_share: float = 0.5,
    head_share: float = 0.4,
    seed: int = 0,
    timestamps: bool = True,
) -> pd.DataFrame:
    """Realistic implicit events as a raw frame with int64 columns ``user``, ``item`` (and ``timestamp``).

    Rows are sorted by user, then by timestamp (by item without timestamps). See the module
    docstring for the model and :func:`make_implicit` for the parameters.
    """
    user, item, ts = _generate(
        n_users,
        n_items,
        n_interactions,
        n_clusters=n_clusters,
        popularity_exponent=popularity_exponent,
        activity_sigma=activity_sigma,
        cluster_strength=cluster_strength,
        min_per_user=min_per_user,
        max_user_share=max_user_share,
        head_share=head_share,
        seed=seed,
        timestamps=timestamps,
    )
    data: dict[str, np.ndarray] = {"user": user, "item": item}
    if ts is not None:
        data["timestamp"] = ts
    return pd.DataFrame(data, copy=False)


def make_implicit(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    n_clusters: int = 20,
    popularity_exponent: float = 1.0,
    activity_sigma: float = 1.0,
    cluster_strength: float = 0.8,
    min_per_user: int = 5,
    max_user_share: float = 0.5,
    head_share: float = 0.4,
    seed: int = 0,
    timestamps: bool = True,
) -> Interactions:
    """Realistic, learnable implicit feedback as :class:`Interactions` (all values 1.0).

    Parameters
    ----------
    n_users, n_items, n_interactions:
        Shape. Exactly ``n_interactions`` distinct (user, item) pairs are generated; user and
        item ids are ``0..n_users-1`` and ``0..n_items-1``.
    n_clusters:
        Number of latent taste clusters.
    popularity_exponent:
        Power-law exponent of the item popularity (1.0: Zipf).
    activity_sigma:
        Sigma of the log-normal spread of user activity (larger: longer tail of heavy users).
    cluster_strength:
        Probability that an event follows the user's cluster rather than global popularity
        (0: no personal structure at all; 1: users only ever see their cluster's items).
    min_per_user:
        Minimum number of events per user (needs ``n_interactions >= min_per_user * n_users``).
    max_user_share:
        No user gets more than this share of the items (needs ``n_interactions`` to fit under it).
    head_share:
        About this share of users' worth of draws go to the most popular item (sets the Zipf offset).
    seed:
        Seed of :func:`numpy.random.default_rng`; the same arguments always give the same data.
    timestamps:
        Generate per-user strictly increasing timestamps (else events are sorted by user then item).
    """
    user, item, ts = _generate(
        n_users,
        n_items,
        n_interactions,
        n_clusters=n_clusters,
        popularity_exponent=popularity_exponent,
        activity_sigma=activity_sigma,
        cluster_strength=cluster_strength,
        min_per_user=min_per_user,
        max_user_share=max_user_share,
        head_share=head_share,
        seed=seed,
        timestamps=timestamps,
    )
    return Interactions(
        user,
        item,
        np.ones(len(user), dtype=np.float32),
        IdMap(np.arange(n_users, dtype=np.int64), kind="user"),
        IdMap(np.arange(n_items, dtype=np.int64), kind="item"),
        timestamps=ts,
        explicit=False,
    )


def make_ml20m_like(seed: int = 0, scale: float = 1.0, **kwargs: Any) -> Interactions:
    """Implicit data with the shape of preprocessed MovieLens-20M (:data:`ML20M_SHAPE`).

    ``scale`` multiplies users, items and interactions alike (at least 1 user and 10 items), so the
    events per user stay ~73 and the density grows as ``1 / scale``: below ``scale`` ~0.01 the
    interactions no longer fit under ``max_user_share`` and a :class:`ValueError` is raised.
    Other keyword arguments go to :func:`make_implicit`.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, not {scale}")
    n_users = max(1, round(ML20M_SHAPE["n_users"] * scale))
    n_items = max(10, round(ML20M_SHAPE["n_items"] * scale))
    n_interactions = max(round(ML20M_SHAPE["n_interactions"] * scale), kwargs.get("min_per_user", 5) * n_users)
    return make_implicit(n_users, n_items, n_interactions, seed=seed, **kwargs)


def write_ratings_csv(
    data: pd.DataFrame | Interactions, path: str | Path, *, explicit: bool = True, seed: int = 0
) -> Path:
    """Write events as a MovieLens-20M ``ratings.csv``: header ``userId,movieId,rating,timestamp``.

    Rows are sorted by user, then item, as in the MovieLens file; raw user and item ids are written
    unchanged. Ratings are the data's own (a frame's ``rating`` column or explicit
    ``Interactions``) when ``explicit`` and the data has them; otherwise they are drawn, seeded:

    * ``explicit=True``: from the MovieLens-20M distribution over 0.5, 1.0, ..., 5.0
      (:data:`ML20M_RATING_DISTRIBUTION`), with per-user and per-item biases (a latent normal
      score ``user + item + noise`` cut at that distribution's quantiles, so the marginal is exact);
    * ``explicit=False``: the same restricted to 3.5..5.0, i.e. the file holds only positives and a
      ``min_rating(..., 3.5)`` preprocessing keeps every row.

    Timestamps are the data's own, else random seconds in 2000..2015. Written with the multithreaded
    pyarrow CSV writer (20M rows: a few seconds). Returns the path.
    """
    path = Path(path)
    rng = np.random.default_rng([seed, 0x5EED])  # not the generator's stream: ratings independent of activity
    rating: np.ndarray | None = None
    if isinstance(data, Interactions):
        users, items = data.users.ids_of(data.user_idx), data.items.ids_of(data.item_idx)
        uidx, iidx = data.user_idx, data.item_idx
        ts = data.timestamps
        if explicit and data.explicit:
            rating = data.values.astype(np.float64)
    else:
        for col in ("user", "item"):
            if col not in data.columns:
                raise ValueError(f"column {col!r} not found; the frame has columns {list(data.columns)}")
        users, items = data["user"].to_numpy(), data["item"].to_numpy()
        uidx = pd.factorize(users)[0]
        iidx = pd.factorize(items)[0]
        ts = data["timestamp"].to_numpy(dtype=np.int64) if "timestamp" in data.columns else None
        if explicit and "rating" in data.columns:
            rating = data["rating"].to_numpy(dtype=np.float64)
    n = len(users)
    if ts is None:
        ts = rng.integers(_T_START, _T_END, size=n, dtype=np.int64)

    labels = np.array(list(ML20M_RATING_DISTRIBUTION), dtype=np.float64)
    if rating is None:
        probs = np.array(list(ML20M_RATING_DISTRIBUTION.values()))
        if not explicit:
            probs = np.where(labels >= 3.5, probs, 0.0)
        code = _draw_ratings(rng, uidx, iidx, probs / probs.sum())
        rating_col = pa.DictionaryArray.from_arrays(pa.array(code), pa.array([f"{r:.1f}" for r in labels]))
    elif np.isin(rating, labels).all():  # MovieLens half stars: written as "4.0", like the original
        code = np.searchsorted(labels, rating).astype(np.int8)
        rating_col = pa.DictionaryArray.from_arrays(pa.array(code), pa.array([f"{r:.1f}" for r in labels]))
    else:
        rating_col = pa.array(rating)

    order = _sort_order(users, items)
    table = pa.table(
        {
            "userId": pa.array(users[order]),
            "movieId": pa.array(items[order]),
            "rating": rating_col.take(pa.array(order)),
            "timestamp": pa.array(np.asarray(ts)[order]),
        }
    )
    with pa.OSFile(str(path), "wb") as sink:
        sink.write(b"userId,movieId,rating,timestamp\n")
        pacsv.write_csv(
            table,
            sink,
            write_options=pacsv.WriteOptions(include_header=False, quoting_style="none", batch_size=1 << 16),
        )
    return path


# ---------------------------------------------------------------------- the generator
def _generate(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    n_clusters: int,
    popularity_exponent: float,
    activity_sigma: float,
    cluster_strength: float,
    min_per_user: int,
    max_user_share: float,
    head_share: float,
    seed: int,
    timestamps: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if n_users < 1 or n_items < 1:
        raise ValueError("n_users and n_items must be >= 1")
    if n_clusters < 1:
        raise ValueError("n_clusters must be >= 1")
    if not 0.0 <= cluster_strength <= 1.0:
        raise ValueError(f"cluster_strength must be in [0, 1], not {cluster_strength}")
    if not 0.0 < head_share < 1.0:
        raise ValueError(f"head_share must be in (0, 1), not {head_share}")
    if not 1 <= min_per_user <= n_items:
        raise ValueError(f"min_per_user must be in [1, n_items={n_items}], not {min_per_user}")
    cap = min(n_items, max(min_per_user, math.ceil(max_user_share * n_items)))
    if not min_per_user * n_users <= n_interactions <= cap * n_users:
        raise ValueError(
            f"n_interactions={n_interactions} must be between min_per_user * n_users = {min_per_user * n_users} "
            f"and n_users * {cap} (max_user_share={max_user_share} of {n_items} items) = {cap * n_users}"
        )
    rng = np.random.default_rng(seed)
    counts = _allocate(rng, n_users, n_interactions, min_per_user, cap, activity_sigma)

    # item distributions: rows 0..C-1 clusters, row C global popularity, row C+1 uniform
    mean_count = n_interactions / n_users
    popularity = np.empty(n_items)
    popularity[rng.permutation(n_items)] = _zipf_weights(n_items, popularity_exponent, mean_count, head_share)
    member = np.zeros((n_clusters, n_items), dtype=bool)
    member[rng.integers(n_clusters, size=n_items), np.arange(n_items)] = True
    second = rng.random(n_items) < 0.25
    member[rng.integers(n_clusters, size=int(second.sum())), np.flatnonzero(second)] = True
    weights = np.vstack([np.where(member, popularity, 0.0), popularity, np.ones(n_items)])
    empty = weights.sum(axis=1) == 0  # a cluster with no items (n_clusters > n_items) follows popularity
    weights[empty] = popularity
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]
    cluster_sizes = rng.dirichlet(np.full(n_clusters, 2.0))
    user_cluster = rng.choice(n_clusters, size=n_users, p=cluster_sizes)
    comp_dtype = np.int16 if len(cdf) < 2**15 else np.int64

    def draw(event_users: np.ndarray, uniform_share: float) -> np.ndarray:
        """One item per event: inverse-CDF sampling from the event's component (cluster, global, uniform)."""
        m = len(event_users)
        comp = np.where(rng.random(m) < cluster_strength, user_cluster[event_users], n_clusters)
        if uniform_share > 0:
            comp[rng.random(m) < uniform_share] = n_clusters + 1
        u = rng.random(m)
        # group the events by component (radix sort of small ints) so that each searchsorted runs
        # on one cache-resident CDF row
        by_comp = np.argsort(comp.astype(comp_dtype), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(comp, minlength=len(cdf)))])
        out = np.empty(m, dtype=np.int64)
        for c in np.flatnonzero(np.diff(bounds)):
            idx = by_comp[bounds[c] : bounds[c + 1]]
            out[idx] = np.searchsorted(cdf[c], u[idx], side="right")
        return np.minimum(out, n_items - 1)  # cdf[c][-1] == 1.0 > u: only a guard

    n_items64 = np.int64(n_items)
    event_users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    have = _sorted_unique(event_users * n_items64 + draw(event_users, 0.0))  # (user, item) keys
    del event_users
    need = counts - np.bincount(have // n_items64, minlength=n_users)
    for r in range(_ROUNDS):
        short = np.flatnonzero(need > 0)
        if len(short) == 0:
            break
        extra = np.ceil(need[short] * 1.5 * 2.0 ** min(r, 6)).astype(np.int64) + 4
        cand_users = np.repeat(short, extra)
        cand = _sorted_unique(cand_users * n_items64 + draw(cand_users, 0.0 if r < 3 else min(1.0, 0.25 * (r - 2))))
        pos = np.minimum(np.searchsorted(have, cand), len(have) - 1)
        cand = cand[have[pos] != cand]
        cu = cand // n_items64
        order = np.argsort(cu + 0.5 * rng.random(len(cand)))  # random order within a user (0.5: no rounding up)
        cand, cu = cand[order], cu[order]
        starts = np.searchsorted(cu, cu, side="left")
        accepted = np.sort(cand[np.arange(len(cand)) - starts < need[cu]])
        have = np.insert(have, np.searchsorted(have, accepted), accepted)
        need -= np.bincount(accepted // n_items64, minlength=n_users)
    if (need > 0).any():  # rare: users close to max_user_share of the items
        have = _fill_rest(rng, have, need, n_items, popularity)

    user = have // n_items64
    item = have - user * n_items64
    if not timestamps:
        return user, item, None
    del have
    offsets = np.concatenate([[0], np.cumsum(counts)])
    order = np.argsort(user + 0.5 * rng.random(len(user)))  # random item order within each user
    item = item[order]
    del order
    return user, item, _timestamps(rng, user, counts, offsets)


def _sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique, whose hash-based path is several times slower on 10M ints)."""
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]


def _allocate(rng: np.random.Generator, n_users: int, total: int, minimum: int, cap: int, sigma: float) -> np.ndarray:
    """Per-user counts: ``minimum`` + log-normal shares of the rest, capped at ``cap``, summing to ``total``."""
    raw = rng.lognormal(0.0, sigma, size=n_users)
    rest, room = total - minimum * n_users, cap - minimum
    if rest == 0:
        return np.full(n_users, minimum, dtype=np.int64)
    # water-filling: find lam with sum(min(lam * raw, room)) == rest
    lo, hi = 0.0, rest / raw.min() + 1.0
    for _ in range(200):
        lam = 0.5 * (lo + hi)
        if np.minimum(lam * raw, room).sum() < rest:
            lo = lam
        else:
            hi = lam
    share = np.minimum(hi * raw, room)
    base = np.floor(share).astype(np.int64)
    left = rest - int(base.sum())
    if left > 0:  # largest remainders first, among users with room left
        frac = np.where(base < room, share - base, -1.0)
        base[np.argsort(-frac, kind="stable")[:left]] += 1
    elif left < 0:
        base[np.argsort(-(base - share), kind="stable")[:-left]] -= 1
    return base + minimum


def _zipf_weights(n: int, exponent: float, mean_count: float, head_share: float) -> np.ndarray:
    """Zipf--Mandelbrot weights by rank, with the offset that gives the top item ~head_share of users."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    target = -math.log1p(-head_share) / mean_count  # P(top item) for P(a mean user has it) = head_share

    def top_share(q: float) -> float:
        w = (ranks + q) ** -exponent
        return float(w[0] / w.sum())

    if top_share(0.0) <= target:
        return ranks**-exponent
    lo, hi = 0.0, float(n)
    for _ in range(50):
        q = 0.5 * (lo + hi)
        if top_share(q) > target:
            lo = q
        else:
            hi = q
    return (ranks + hi) ** -exponent


def _fill_rest(
    rng: np.random.Generator, have: np.ndarray, need: np.ndarray, n_items: int, popularity: np.ndarray
) -> np.ndarray:
    """Top up the last few short users from the items they lack (a loop over those users only)."""
    new = []
    for u in np.flatnonzero(need > 0):
        lo, hi = np.searchsorted(have, [u * n_items, (u + 1) * n_items])
        free = np.setdiff1d(np.arange(n_items), have[lo:hi] - u * n_items)
        p = popularity[free] / popularity[free].sum()
        new.append(u * n_items + rng.choice(free, size=int(need[u]), replace=False, p=p))
    added = np.sort(np.concatenate(new))
    return np.insert(have, np.searchsorted(have, added), added)


def _timestamps(rng: np.random.Generator, user: np.ndarray, counts: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Strictly increasing int64 timestamps per user, over a log-normal span from a random start."""
    n_users = len(counts)
    span = np.minimum(rng.lognormal(math.log(30 * 86_400), 1.5, size=n_users), (_T_END - _T_START) / 2)
    first, last = offsets[:-1], offsets[1:] - 1
    csum = np.cumsum(rng.exponential(size=len(user)))
    elapsed = csum - csum[first][user]  # exponential gaps since the user's first event
    frac = elapsed / np.maximum(elapsed[last], 1e-12)[user]  # 0 at a user's first event, 1 at the last
    rank = np.arange(len(user)) - first[user]
    start = _T_START + np.floor(rng.random(n_users) * np.maximum(_T_END - _T_START - span - counts, 0))
    return (start[user] + np.floor(np.clip(frac, 0.0, 1.0) * span[user]) + rank).astype(np.int64)


def _draw_ratings(rng: np.random.Generator, uidx: np.ndarray, iidx: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Rating codes 0..9 with marginal ``probs`` from a latent ``user + item + noise`` normal score."""
    zu = rng.standard_normal(int(uidx.max()) + 1 if len(uidx) else 0)
    zi = rng.standard_normal(int(iidx.max()) + 1 if len(iidx) else 0)
    score = math.sqrt(0.3) * zu[uidx] + math.sqrt(0.2) * zi[iidx] + math.sqrt(0.5) * rng.standard_normal(len(uidx))
    cuts = ndtri(np.clip(np.cumsum(probs)[:-1], 0.0, 1.0))  # -inf for leading zero-probability ratings
    return np.searchsorted(cuts, score, side="right").astype(np.int8)


def _sort_order(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Row order by user, then item."""
    if users.dtype.kind in "iu" and items.dtype.kind in "iu" and len(users):
        u_min, i_min = int(users.min()), int(items.min())
        span = int(items.max()) - i_min + 1
        if (int(users.max()) - u_min + 1) * span < 2**62:  # one int64 key: a much faster sort than lexsort
            key = (users - u_min).astype(np.int64) * span + (items - i_min)
            if (key[1:] >= key[:-1]).all():
                return np.arange(len(key))
            return np.argsort(key)
    if users.dtype.kind in "iuf" and items.dtype.kind in "iuf":
        return np.lexsort((items, users))
    return pd.DataFrame({"u": users, "i": items}).sort_values(["u", "i"], kind="stable").index.to_numpy()
