"""Pure, batched metric functions on torch tensors (CPU or GPU).

Ranking metrics (``recforge.metrics.ranking``) take ``top_items`` (n_users, K) and a dense relevance
block ``truth`` (n_users, n_items) and return per-user float32 values, NaN for users with no relevant
item. Rating metrics (``recforge.metrics.rating``) take 1-D ``pred`` / ``target``.

Config/CLI strings are turned into metric objects once, by :func:`parse_metric`; library code never
dispatches on strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from recforge.metrics.ranking import (
    MAP,
    MRR,
    NDCG,
    HitRate,
    Precision,
    RankingMetric,
    Recall,
    auc,
    coverage_counts,
    hit_rate_at_k,
    hit_rate_from_rank,
    hits_at,
    item_coverage_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    ndcg_from_rank,
    precision_at_k,
    rank_of_target,
    recall_at_k,
)
from recforge.metrics.rating import MAE, RMSE, RoundedAccuracy, mae, rmse, rounded_accuracy

__all__ = [
    "MAE",
    "MAP",
    "MRR",
    "NDCG",
    "RMSE",
    "HitRate",
    "Precision",
    "RankingMetric",
    "Recall",
    "RoundedAccuracy",
    "auc",
    "coverage_counts",
    "hit_rate_at_k",
    "hit_rate_from_rank",
    "hits_at",
    "item_coverage_at_k",
    "mae",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "ndcg_from_rank",
    "parse_metric",
    "precision_at_k",
    "rank_of_target",
    "recall_at_k",
    "rmse",
    "rounded_accuracy",
]

_KNOWN: dict[str, Callable[[int], RankingMetric]] = {
    "recall": lambda k: Recall(k),
    "recall_plain": lambda k: Recall(k, normalized=False),
    "precision": lambda k: Precision(k),
    "ndcg": lambda k: NDCG(k),
    "ndcg_graded": lambda k: NDCG(k, graded=True),
    "map": lambda k: MAP(k),
    "mrr": lambda k: MRR(k),
    "hr": lambda k: HitRate(k),
    "hit_rate": lambda k: HitRate(k),
}
_SPEC = re.compile(r"^\s*([a-z_]+)\s*@\s*(\d+)\s*$")


def parse_metric(spec: str) -> RankingMetric:
    """Turn a spec "<name>@<k>" (e.g. "ndcg@100", "recall_plain@20", "hr@10") into a metric object.

    Known names: recall, recall_plain, precision, ndcg, ndcg_graded, map, mrr, hr (alias hit_rate).
    Case-insensitive; ``parse_metric(m.name) == m`` for every object. Raises ValueError (listing the
    known names) on anything else, including k < 1.

    >>> parse_metric("NDCG@100")
    NDCG(k=100, graded=False)
    """
    match = _SPEC.match(spec.lower()) if isinstance(spec, str) else None
    known = ", ".join(f"{n}@<k>" for n in _KNOWN)
    if match is None or match.group(1) not in _KNOWN:
        raise ValueError(f"unknown metric spec {spec!r}; known: {known}")
    k = int(match.group(2))
    if k < 1:
        raise ValueError(f"metric spec {spec!r} needs k >= 1; known: {known}")
    return _KNOWN[match.group(1)](k)
