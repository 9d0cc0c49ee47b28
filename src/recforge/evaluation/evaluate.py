"""Batched, memory-bounded evaluation of any recommender on an `EvalPart`.

Full ranking scores a block of users at a time against every item, removes the items in their
history (training or fold-in events), keeps the top ``max(k)`` and compares them with the
target; the users x items score matrix is never built whole. Results do not depend on the
batch size: every user's row is scored, masked and ranked on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recforge import distributed
from recforge.data.splits import EvalPart
from recforge.distributed import World
from recforge.evaluation.ranking import exclude_items_, top_k
from recforge.metrics.ranking import coverage_counts, hit_rate_from_rank, ndcg_from_rank, rank_of_target


class Scorer(Protocol):
    """What the evaluator needs of a model: scores for rows of history (see ``BaseRecommender.score``)."""

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor: ...


class RankingMetric(Protocol):
    """What the evaluator needs of a ranking metric object (see :mod:`recforge.metrics`)."""

    k: int

    @property
    def name(self) -> str: ...

    def __call__(
        self, top_items: torch.Tensor, truth: torch.Tensor, n_relevant: torch.Tensor | None = None
    ) -> torch.Tensor: ...


class RatingMetric(Protocol):
    """What the evaluator needs of a rating metric object."""

    @property
    def name(self) -> str: ...

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class EvaluationResult:
    """Mean metric values, the per-user values behind them (for significance tests) and the user count."""

    metrics: dict[str, float]
    per_user: pd.DataFrame
    n_users: int

    def to_json(self) -> dict[str, Any]:
        return {"n_users": self.n_users, "metrics": self.metrics}


def available_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device`` (CUDA: driver's figure; CPU: the OS's available pages, 2 GiB if unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2 << 30


def auto_batch_size(n_items: int, device: torch.device, *, fraction: float = 0.25, cap_bytes: int = 1 << 30) -> int:
    """Users per block so that a few float32 blocks of ``n_items`` columns fit in a fraction of free memory."""
    budget = min(int(available_memory_bytes(device) * fraction), cap_bytes)
    per_user = n_items * 4 * 4  # scores, dense truth, masks and top-k work space
    return max(1, budget // per_user)


def _blocks(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _model_device(model: Scorer) -> torch.device:
    return getattr(model, "device_", torch.device("cpu"))


def _score_block(
    model: Scorer, part: EvalPart, rows: np.ndarray, exclude: sp.csr_array | None = None
) -> tuple[torch.Tensor, sp.csr_array]:
    history = part.history.matrix[rows]
    scores = model.score(history, rows if part.known_users else None).float()
    exclude_items_(scores, history)
    if exclude is not None:
        exclude_items_(scores, exclude[rows])
    return scores, history


def evaluate_ranking(
    model: Scorer,
    part: EvalPart,
    metrics: Sequence[RankingMetric],
    *,
    batch_size: int | None = None,
    coverage: bool = False,
    progress: Callable[[int], None] | None = None,
    world: World | None = None,
    exclude: sp.csr_array | None = None,
) -> EvaluationResult:
    """Full-ranking top-k evaluation of the users of ``part`` that have at least one target item.

    The model scores each user from ``part.history`` (its input), whose items are removed from the ranking;
    ``exclude`` (a users x items matrix with ``part``'s rows) removes more, e.g. the validation items when the
    input is the training events only (:mod:`recforge.evaluation.protocol`).

    ``metrics`` are metric objects with a ``k`` (e.g. ``NDCG(100)``); the top ``max(k)`` is
    computed once per block. ``coverage`` adds item coverage at the largest k (an aggregate, not
    a per-user value). ``progress`` is called with the number of users finished after each block.
    ``world`` with several processes (every rank calling this with the same model and part) shards the users
    across the ranks and gathers their per-user values: every rank returns the one-process result.
    """
    if not metrics:
        raise ValueError("evaluate_ranking needs at least one metric")
    all_users = np.flatnonzero(part.target.user_counts() > 0)
    sharded = world is not None and world.parallel
    users = np.array_split(all_users, world.size)[world.rank] if sharded else all_users
    max_k = max(m.k for m in metrics)
    device = _model_device(model)
    batch_size = batch_size or auto_batch_size(part.history.n_items, device)
    target = part.target.matrix
    if exclude is not None:
        exclude = sp.csr_array(exclude)
        if exclude.shape != part.history.matrix.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, the part's history {part.history.matrix.shape}")
    values: dict[str, list[torch.Tensor]] = {m.name: [] for m in metrics}
    covered = torch.zeros(part.history.n_items, dtype=torch.bool)
    for block in _blocks(len(users), batch_size):
        rows = users[block]
        scores, _ = _score_block(model, part, rows, exclude)
        _, top = top_k(scores, max_k)
        block_target = target[rows]
        truth = torch.from_numpy(block_target.toarray()).to(top.device)
        positive_rows = np.repeat(np.arange(len(rows)), np.diff(block_target.indptr))[block_target.data > 0]
        n_relevant = torch.from_numpy(np.bincount(positive_rows, minlength=len(rows))).to(top.device)
        for m in metrics:
            values[m.name].append(m(top, truth, n_relevant).double().cpu())
        if coverage:
            covered |= coverage_counts(top, part.history.n_items, max_k).cpu()
        if progress is not None:
            progress(len(rows))
    per_user = pd.DataFrame({"user": part.target.users.ids_of(users)})
    for name, chunks in values.items():
        per_user[name] = torch.cat(chunks).numpy() if chunks else np.array([], dtype=np.float64)
    if sharded:
        per_user = pd.concat(distributed.gather(per_user), ignore_index=True)
        covered = torch.stack(distributed.gather(covered)).any(0)
        users = all_users
    means = {name: float(np.nanmean(per_user[name])) if len(users) else float("nan") for name in values}
    if coverage:
        means[f"coverage@{max_k}"] = float(covered.float().mean())
    return EvaluationResult(means, per_user, len(users))


def evaluate_sampled(
    model: Scorer,
    part: EvalPart,
    ks: Sequence[int] = (10,),
    *,
    batch_size: int | None = None,
) -> EvaluationResult:
    """He et al. (2017) protocol: rank each target item among the user's sampled negatives only.

    ``HR@k`` = 1[rank < k] and ``NDCG@k`` = 1/log2(rank + 2) if rank < k, with rank the number of
    negatives scored strictly above the target; averaged over a user's target items, then users.
    """
    if part.negatives is None:
        raise ValueError("this evaluation part has no sampled negatives; use a split with n_negatives > 0")
    users = np.flatnonzero(part.target.user_counts() > 0)
    batch_size = batch_size or auto_batch_size(part.history.n_items, _model_device(model))
    target = part.target.matrix
    sums = {f"{name}@{k}": [] for k in ks for name in ("hr", "ndcg")}
    for block in _blocks(len(users), batch_size):
        rows = users[block]
        scores = model.score(part.history.matrix[rows], rows if part.known_users else None).float()
        t = target[rows]
        event_row = torch.from_numpy(np.repeat(np.arange(len(rows)), np.diff(t.indptr))).to(scores.device)
        event_item = torch.from_numpy(t.indices.astype(np.int64)).to(scores.device)
        negatives = torch.from_numpy(part.negatives[rows]).to(scores.device)
        rank = rank_of_target(scores[event_row, event_item], scores.gather(1, negatives)[event_row])
        counts = torch.bincount(event_row, minlength=len(rows)).double()
        for k in ks:
            for name, fn in (("hr", hit_rate_from_rank), ("ndcg", ndcg_from_rank)):
                per_event = fn(rank, k).double()
                per_row = torch.zeros(len(rows), dtype=torch.float64, device=scores.device)
                per_row.index_add_(0, event_row, per_event)
                sums[f"{name}@{k}"].append((per_row / counts).cpu())
    per_user = pd.DataFrame({"user": part.target.users.ids_of(users)})
    for name, chunks in sums.items():
        per_user[name] = torch.cat(chunks).numpy() if chunks else np.array([], dtype=np.float64)
    means = {name: float(per_user[name].mean()) for name in sums}
    return EvaluationResult(means, per_user, len(users))


def evaluate_ratings(model: Any, part: EvalPart, metrics: Sequence[RatingMetric]) -> EvaluationResult:
    """Rating prediction error on every target event of ``part`` (known users; needs ``model.predict_indices``)."""
    if not hasattr(model, "predict_indices"):
        raise TypeError(f"{type(model).__name__} does not predict ratings")
    if not part.known_users:
        raise ValueError("rating evaluation needs known users (a weak-generalisation split)")
    t = part.target
    pred = torch.as_tensor(model.predict_indices(t.user_idx, t.item_idx)).double().cpu()
    truth = torch.from_numpy(np.array(t.values, dtype=np.float64))  # a copy: the stored values may be read-only
    per_event = pd.DataFrame({"user": t.users.ids_of(t.user_idx), "item": t.items.ids_of(t.item_idx)})
    per_event["prediction"] = pred.numpy()
    per_event["rating"] = truth.numpy()
    means = {m.name: float(m(pred, truth)) for m in metrics}
    return EvaluationResult(means, per_event, len(np.unique(t.user_idx)))
