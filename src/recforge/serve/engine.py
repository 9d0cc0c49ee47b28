"""What the server computes, without the web framework: recommendations for known users and new histories
(vectorised over a batch), similar items, explanations and title search, from a loaded model, the run's item
catalogue and the interactions added while serving.

The model is only read: every request builds its own history rows and calls the model's ``score`` (fold-in of new
users is thread-safe in every family), so concurrent requests need no lock.

**Known users with added interactions.** Their history is the training row with the added items (a later value
of an item replaces the earlier one). Models whose scores depend on the history only score that row; models
that score known users from learned user parameters (matrix factorisation, NCF, iALS, BPR) fold the user in
from the whole row instead, the same way as a new user; SVAE appends the added items to the user's training
sequence.

**Explanations** ("why"): the contribution of history item ``j`` to the score of recommended item ``i`` is the
score drop when ``j`` is left out of the history (``score(h) - score(h without j)``, one batched scoring call of
``len(h)`` rows). For the linear item-item models (EASE, ADMM-SLIM, item-kNN) this is exactly
:math:`h_j B_{ji}`, read directly from the weights instead. Histories longer than ``Limits.explain_history``
are explained by their first items (in item order) only: the leave-one-out rows would cost too much. The
leave-one-out scores are fold-ins from the history, also for known users of models with learned user parameters.

**Similar items**: the model's own item-item weights (EASE, ADMM-SLIM: row ``i`` of ``B``, what item ``i`` adds
to each item's score; item-kNN: its similarities), else the cosine of the item vectors (factor tables of MF,
BPR, iALS, CoFi, NCF; decoder rows of the autoencoders and CFGAN), else the scores of a one-item history.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.ids import IdMap
from recforge.experiments.config import ExperimentConfig
from recforge.models.base import BaseRecommender
from recforge.models.linear import EASE
from recforge.models.neighbors import ItemKNN
from recforge.models.popularity import Popularity
from recforge.models.rating import RatingRecommender
from recforge.models.slim import ADMMSLIM
from recforge.serve.catalog import ItemCatalog, heldout_users, unknown_users_hint
from recforge.serve.store import InteractionStore

__all__ = ["Engine", "Limits", "Query", "ServeError"]

#: Models that score known users from the history row they are given (with ``users``), although they keep
#: per-user state: SVAE appends history items absent from the user's stored sequence.
_USERS_SEE_HISTORY = frozenset({"svae"})


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; beyond it the answer is 422 naming the limit."""

    max_k: int = 1000
    max_history: int = 1000
    max_batch: int = 1000
    max_ids: int = 10_000  # exclude and candidate lists
    max_added: int = 10_000  # interactions added per user while serving
    explain_history: int = 200
    max_query: int = 200
    max_search_results: int = 100

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"serving limit {name} must be a positive integer, got {value!r}")


class ServeError(Exception):
    """A bad request: ``status`` (404, 422), a message, and the unknown ids when that is the reason."""

    def __init__(self, status: int, detail: str, unknown_ids: Sequence[Any] | None = None):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.unknown_ids = list(unknown_ids) if unknown_ids is not None else None


@dataclass
class Query:
    """One recommendation request: a known ``user`` or a history of ``items`` (with ``ratings`` or none)."""

    user: Any = None
    items: list[Any] | None = None
    ratings: list[float] | None = None
    k: int = 10
    exclude: list[Any] | None = None
    exclude_seen: bool = True
    tag: str | None = None
    candidates: list[Any] | None = None
    explain: bool = False
    where: str = ""  # the request's place in a batch, for messages ("requests[3].")


@dataclass
class _Row:
    """A resolved query: history row (item indices, values), the user index (-1: none), filters."""

    query: Query
    user_index: int
    user_label: Any
    items: np.ndarray
    values: np.ndarray
    folded_in: bool  # scored from the history alone (users=None)
    exclude: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    allowed: np.ndarray | None = None


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class Engine:
    """A run's model, catalogue and added interactions, and everything the endpoints compute from them."""

    def __init__(
        self,
        run_dir: Path,
        config: ExperimentConfig,
        model: BaseRecommender,
        store: InteractionStore,
        limits: Limits,
        metrics: dict[str, Any] | None = None,
    ):
        self.run_dir, self.config, self.model, self.store, self.limits = run_dir, config, model, store, limits
        self.metrics = metrics or {}
        self.catalog = ItemCatalog.read(run_dir, model.items_)
        self.heldout = heldout_users(run_dir)
        self.popularity = np.diff(sp.csc_array(model.history_).indptr).astype(np.int64)
        self._titles_lower = np.array([(t or "").casefold() for t in self.catalog.titles], dtype=object)
        self._tag_cache: dict[str, np.ndarray] = {}
        self._item_vectors: torch.Tensor | None = None
        self.similar_method = self._similar_method()
        self.takes_ratings = isinstance(model, RatingRecommender) and bool(model.predicts_ratings)
        #: whether one request is cheap enough to answer on the event loop (closed-form scoring, no network)
        self.inline = _linear_weights(model) is not None or isinstance(model, Popularity)
        self.started = time.time()

    # ------------------------------------------------------------------ ids
    @property
    def items(self) -> IdMap:
        return self.model.items_

    def item_indices(self, raw: Sequence[Any], what: str) -> np.ndarray:
        """Indices of raw item ids (typed like the model's); unknown ones raise 422 listing them."""
        coerced = self.items.coerce(list(raw))
        idx = self.items.index(coerced, missing="minus_one") if coerced else np.empty(0, np.int64)
        if (idx < 0).any():
            missing = list(dict.fromkeys(_plain(c) for c, i in zip(coerced, idx, strict=True) if i < 0))
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ServeError(422, f"{what}: unknown item id(s): {shown}", missing)
        return idx

    def item_index(self, raw: Any) -> int:
        """The index of one item id; unknown: 404."""
        coerced = self.items.coerce([raw])
        idx = int(self.items.index(coerced, missing="minus_one")[0])
        if idx < 0:
            raise ServeError(404, f"unknown item id: {raw}", [_plain(coerced[0])])
        return idx

    def user_key(self, raw: Any) -> tuple[Any, int]:
        """(the id typed like the model's user ids, its training index or -1)."""
        coerced = self.model.users_.coerce([raw])[0]
        return _plain(coerced), int(self.model.users_.index([coerced], missing="minus_one")[0])

    # ------------------------------------------------------------------ items shown
    def item_info(self, idx: int) -> dict[str, Any]:
        return {
            "item_id": _plain(self.items.ids[idx]),
            "title": self.catalog.titles[idx],
            "tags": self.catalog.tags[idx],
        }

    def tag_items(self, tag: str) -> np.ndarray:
        key = tag.casefold()
        if key not in self._tag_cache:
            found = self.catalog.with_tag(tag)
            if not len(found):
                known = ", ".join(list(self.catalog.tag_counts())[:20]) or "this run has no genres or tags"
                raise ServeError(422, f"no item has the genre or tag {tag!r} (known: {known})")
            self._tag_cache[key] = found
        return self._tag_cache[key]

    def search(self, query: str, tag: str | None, limit: int) -> list[dict[str, Any]]:
        """Items whose title contains ``query`` (case-insensitive; an exact id matches too), titles starting with
        it first, then the most popular in training. No query: the most popular items."""
        q = query.strip().casefold()
        if q:
            hits = np.array([i for i, t in enumerate(self._titles_lower) if q in t], dtype=np.int64)
            starts = np.array([self._titles_lower[i].startswith(q) for i in hits], dtype=bool)
        else:
            hits, starts = np.arange(self.model.n_items), np.zeros(self.model.n_items, dtype=bool)
        exact = self.items.index(self.items.coerce([query.strip()]), missing="minus_one")[0] if q else -1
        if tag:
            hits_tag = set(self.tag_items(tag).tolist())
            keep = np.array([i in hits_tag for i in hits], dtype=bool)
            hits, starts = hits[keep], starts[keep]
        order = np.lexsort((-self.popularity[hits], ~starts)) if len(hits) else hits
        ranked = hits[order].tolist()
        if exact >= 0 and (not tag or exact in set(self.tag_items(tag).tolist())):
            ranked = [int(exact), *(i for i in ranked if i != exact)]
        return [{**self.item_info(i), "popularity": int(self.popularity[i])} for i in ranked[:limit]]

    # ------------------------------------------------------------------ recommendations
    def _resolve(self, q: Query, added_by_user: dict[str, tuple[np.ndarray, np.ndarray]]) -> _Row:
        lim = self.limits
        if q.k > lim.max_k:
            raise ServeError(422, f"{q.where}k is {q.k}; the limit is {lim.max_k}")
        for name, ids in (("exclude", q.exclude), ("candidates", q.candidates)):
            if ids is not None and len(ids) > lim.max_ids:
                raise ServeError(422, f"{q.where}{name} has {len(ids)} ids; the limit is {lim.max_ids}")
        if q.user is not None:
            label, user_index = self.user_key(q.user)
            added = added_by_user.get(str(label))
            if user_index < 0 and added is None:
                hint = unknown_users_hint(self.heldout, [label], "send their history as items")
                raise ServeError(
                    404, f"{q.where}user_id: unknown user id: {label}" + (f" ({hint})" if hint else ""), [label]
                )
            parts_items, parts_values = [], []
            if user_index >= 0:
                row = self.model.history_[[user_index]]
                parts_items.append(row.indices.astype(np.int64))
                parts_values.append(row.data.astype(np.float32))
            if added is not None:
                parts_items.append(added[0])
                parts_values.append(added[1])
            items, values = np.concatenate(parts_items), np.concatenate(parts_values)
            folded_in = user_index < 0 or (added is not None and not self._users_see_history())
        else:
            assert q.items is not None
            if len(q.items) > lim.max_history:
                raise ServeError(422, f"{q.where}items has {len(q.items)} entries; the limit is {lim.max_history}")
            items = self.item_indices(q.items, f"{q.where}items")
            if q.ratings is None:
                values = np.full(len(items), self.model._default_history_value(), dtype=np.float32)
            else:
                if len(q.ratings) != len(items):
                    raise ServeError(
                        422, f"{q.where}ratings: {len(q.ratings)} ratings for {len(items)} items (give one per item)"
                    )
                values = np.asarray(q.ratings, dtype=np.float32)
            label, user_index, folded_in = None, -1, True
        resolved = _Row(q, user_index, label, items, values, folded_in)
        if q.exclude:
            resolved.exclude = self.item_indices(q.exclude, f"{q.where}exclude")
        allowed = []
        if q.tag is not None:
            allowed.append(self.tag_items(q.tag))
        if q.candidates is not None:
            allowed.append(self.item_indices(q.candidates, f"{q.where}candidates"))
        if allowed:
            resolved.allowed = allowed[0] if len(allowed) == 1 else np.intersect1d(allowed[0], allowed[1])
        return resolved

    def _users_see_history(self) -> bool:
        return self.model.folds_in_from_history or self.model.name in _USERS_SEE_HISTORY

    def _history_matrix(self, rows: Sequence[_Row]) -> sp.csr_array:
        """The rows' histories as one CSR (a repeated item keeps its last value)."""
        n = self.model.n_items
        indptr, indices, data = [0], [], []
        for r in rows:
            uniq, last = np.unique(r.items[::-1], return_index=True)
            indices.append(uniq)
            data.append(r.values[::-1][last])
            indptr.append(indptr[-1] + len(uniq))
        return sp.csr_array(
            (
                np.concatenate(data) if data else np.empty(0, np.float32),
                np.concatenate(indices) if indices else np.empty(0, np.int64),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(rows), n),
        )

    def _scores(self, rows: Sequence[_Row], history: sp.csr_array) -> torch.Tensor:
        """Scores of every row: one scoring call for the rows scored as known users, one for the rows folded in
        from their history (models that fold in from the history alone: one call for all)."""
        model = self.model
        if model.folds_in_from_history:
            return model.score(history, None).float()
        known = np.array([not r.folded_in for r in rows], dtype=bool)
        if known.all():
            return model.score(history, np.array([r.user_index for r in rows], dtype=np.int64)).float()
        if not known.any():
            return model.score(history, None).float()
        k_rows, n_rows = np.flatnonzero(known), np.flatnonzero(~known)
        users = np.array([rows[i].user_index for i in k_rows], dtype=np.int64)
        a = model.score(history[k_rows], users).float()
        b = model.score(history[n_rows], None).float()
        out = torch.empty((len(rows), model.n_items), dtype=torch.float32, device=a.device)
        out[torch.from_numpy(k_rows).to(a.device)] = a
        out[torch.from_numpy(n_rows).to(a.device)] = b
        return out

    def recommend(self, queries: Sequence[Query]) -> list[dict[str, Any]]:
        """Answers of the queries, scored together (see :meth:`_scores`)."""
        users = [self.user_key(q.user)[0] for q in queries if q.user is not None]
        added = self.store.get(users) if users else {}
        rows = [self._resolve(q, added) for q in queries]
        history = self._history_matrix(rows)
        scores = self._scores(rows, history)
        n_items = scores.shape[1]
        blocked = [
            np.concatenate([r.exclude, history.indices[history.indptr[i] : history.indptr[i + 1]]])
            if r.query.exclude_seen
            else r.exclude
            for i, r in enumerate(rows)
        ]
        counts = [len(b) for b in blocked]
        if sum(counts):
            row_of = torch.from_numpy(np.repeat(np.arange(len(rows)), counts)).to(scores.device)
            cols = torch.from_numpy(np.concatenate(blocked).astype(np.int64)).to(scores.device)
            scores[row_of, cols] = float("-inf")
        for i, r in enumerate(rows):
            if r.allowed is not None:
                keep = torch.zeros(n_items, dtype=torch.bool, device=scores.device)
                keep[torch.from_numpy(r.allowed).to(scores.device)] = True
                scores[i].masked_fill_(~keep, float("-inf"))
        k = min(max(r.query.k for r in rows), n_items)
        values, indices = torch.topk(scores, k, dim=1)
        values_np, indices_np = values.cpu().numpy(), indices.cpu().numpy()
        answers = []
        for i, r in enumerate(rows):
            vals, idxs = values_np[i, : r.query.k], indices_np[i, : r.query.k]
            ok = ~np.isneginf(vals)
            vals, idxs = vals[ok], idxs[ok]
            recs = [{**self.item_info(int(j)), "score": _finite(float(v))} for j, v in zip(idxs, vals, strict=True)]
            if r.query.explain and len(recs):
                why = self._explain(history[[i]], idxs)
                for rec, because in zip(recs, why, strict=True):
                    rec["because"] = because
            answers.append(
                {
                    "user_id": r.user_label,
                    "history_size": int(history.indptr[i + 1] - history.indptr[i]),
                    "folded_in": bool(r.folded_in),
                    "items": recs,
                }
            )
        return answers

    # ------------------------------------------------------------------ explanations
    def explain_method(self) -> str:
        return "item-item weights" if _linear_weights(self.model) is not None else "leave-one-out score drop"

    def _explain(self, row: sp.csr_array, rec_idx: np.ndarray, top: int = 3) -> list[list[dict]]:
        """Per recommended item, the history items that contributed most to its score (positive ones, largest
        first, at most ``top``); see the module doc."""
        hist, vals = row.indices.astype(np.int64), row.data.astype(np.float32)
        if len(hist) > self.limits.explain_history:  # a long history: its first items (column order) only
            hist, vals = hist[: self.limits.explain_history], vals[: self.limits.explain_history]
        if not len(hist):
            return [[] for _ in rec_idx]
        weights = _linear_weights(self.model)
        if weights is not None:
            contrib = weights(hist, rec_idx) * vals[:, None]  # history x recommended
        else:  # the full row, then one row per history item left out; all folded in from the history
            nnz, m = row.nnz, len(hist)
            keep = np.ones((m, nnz), dtype=bool)
            keep[np.arange(m), np.arange(m)] = False  # hist is the first m entries of the row
            loo = sp.csr_array(
                (
                    np.tile(row.data, m)[keep.ravel()],
                    np.tile(row.indices, m)[keep.ravel()],
                    np.arange(m + 1) * (nnz - 1),
                ),
                shape=(m, row.shape[1]),
            )
            scored = self.model.score(sp.vstack([row, loo]).tocsr(), None).float()
            s = scored[:, torch.from_numpy(rec_idx.astype(np.int64)).to(scored.device)].cpu().numpy()
            contrib = s[0][None, :] - s[1:]
        out = []
        for c in range(len(rec_idx)):
            order = np.argsort(-contrib[:, c], kind="stable")
            out.append(
                [
                    {**self.item_info(int(hist[j])), "contribution": float(contrib[j, c])}
                    for j in order[:top]
                    if contrib[j, c] > 0 and math.isfinite(contrib[j, c])
                ]
            )
        return out

    # ------------------------------------------------------------------ similar items
    def _similar_method(self) -> str:
        if _linear_weights(self.model) is not None:
            return "item-item weights"
        if _item_vectors(self.model) is not None:
            return "cosine of item vectors"
        return "scores of a one-item history"

    def similar(self, item: int, k: int) -> list[dict[str, Any]]:
        """The ``k`` items most similar to ``item`` by the model (see the module doc); the item itself excluded."""
        n = self.model.n_items
        linear = _linear_weights(self.model)
        if linear is not None:
            sims = torch.from_numpy(linear(np.array([item]), np.arange(n))[0].copy())
        else:
            vectors = self._normalised_vectors()
            if vectors is not None:
                sims = (vectors @ vectors[item]).float().cpu()
            else:
                row = sp.csr_array(
                    (np.array([self.model._default_history_value()], np.float32), np.array([item]), np.array([0, 1])),
                    shape=(1, n),
                )
                sims = self.model.score(row, None)[0].float().cpu()
        sims[item] = float("-inf")
        values, indices = torch.topk(sims, min(k, n))
        return [
            {**self.item_info(int(j)), "score": _finite(float(v))}
            for j, v in zip(indices.tolist(), values.tolist(), strict=True)
            if v != float("-inf")
        ]

    def _normalised_vectors(self) -> torch.Tensor | None:
        if self._item_vectors is None:
            vectors = _item_vectors(self.model)
            if vectors is None:
                return None
            self._item_vectors = torch.nn.functional.normalize(vectors.detach().float(), dim=1)
        return self._item_vectors

    # ------------------------------------------------------------------ start-up
    def warm_up(self) -> None:
        """One request of each kind, so that the first real one does not pay for lazy initialisation."""
        first_item = [_plain(self.items.ids[int(np.argmax(self.popularity))])]
        queries = [Query(items=first_item, k=10, explain=True)]
        if len(self.model.users_):
            queries.append(Query(user=_plain(self.model.users_.ids[0]), k=10))
        self.recommend(queries)
        self.similar(0, 10)


# ---------------------------------------------------------------------------------------------- model internals
def _linear_weights(model: BaseRecommender) -> Any:
    """For the linear item-item models, a function ``(rows, cols) -> B[rows][:, cols]`` (numpy float32); else None."""
    if isinstance(model, EASE):
        blocks = model.weights_

        def ease(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            r = torch.from_numpy(rows.astype(np.int64)).to(blocks[0].device)
            dense = torch.cat([b[r] for b in blocks], dim=1) if len(blocks) > 1 else blocks[0][r]
            return dense[:, torch.from_numpy(cols.astype(np.int64)).to(dense.device)].cpu().numpy()

        return ease
    if isinstance(model, ADMMSLIM):

        def slim(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            n = model.n_items
            one_hot = sp.csr_array(
                (np.ones(len(rows), np.float32), rows.astype(np.int64), np.arange(len(rows) + 1)), shape=(len(rows), n)
            )
            product = model._product(one_hot)  # rows of C, without the item-bias offset
            return product[:, torch.from_numpy(cols.astype(np.int64)).to(product.device)].cpu().numpy()

        return slim
    if isinstance(model, ItemKNN):

        def knn(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
            sim = model.similarity_[rows.astype(np.int64)]
            return np.asarray(sim[:, cols.astype(np.int64)].toarray(), dtype=np.float32)

        return knn
    return None


def _item_vectors(model: BaseRecommender) -> torch.Tensor | None:
    """One vector per item (n_items x d), when the model has them: factor tables, else decoder rows."""
    module = getattr(model, "module_", None)
    if module is None:
        return None
    n = model.n_items
    parts = []
    for name in ("item_factors", "item_features", "item_gmf", "item_mlp"):
        table = getattr(module, name, None)
        weight = table.weight if isinstance(table, nn.Embedding) else table
        if isinstance(weight, torch.Tensor) and weight.dim() == 2 and weight.shape[0] == n:
            parts.append(torch.nn.functional.normalize(weight.detach().float(), dim=1))
    if parts:
        return torch.cat(parts, dim=1)
    decoders = [m for m in module.modules() if isinstance(m, nn.Linear) and m.out_features == n]
    if decoders:
        return decoders[-1].weight.detach()
    return None
