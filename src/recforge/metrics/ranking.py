"""Top-k ranking metrics, batched over users, on torch tensors (CPU or GPU).

Conventions shared by every function here:

* ``top_items`` is an integer tensor ``(n_users, K)`` of item indices ranked best-first. Entry ``-1`` is
  padding ("no item") and counts as a miss. A metric at cut-off ``k`` reads the first ``min(k, K)``
  columns; when ``K < k`` the missing positions are treated as padding, while the normalisers still use
  ``k`` (so precision@k of a list shorter than k is hits / k). Non-padding entries of a row are assumed
  distinct (a duplicated relevant item would be counted twice).
* ``truth`` is a dense float tensor ``(n_users, n_items)`` of relevance values: ``> 0`` relevant,
  ``<= 0`` not relevant. Binary metrics use ``1[rel > 0]``; graded NDCG uses the values themselves
  (negative values are treated as 0).
* Per-user results are float32 tensors ``(n_users,)`` on the input device; float64 is used internally.
* NaN rule: a user with no relevant item (``|relevant| = 0``) gets NaN for every per-user metric
  (recall, precision, ndcg, map, mrr, hit rate, auc; auc also when the user has no non-relevant item).
  The evaluator is expected to drop NaN users (``torch.nanmean`` or masking) before averaging.

References: Järvelin & Kekäläinen (2002) for (N)DCG; Liang et al. (2018, "Variational Autoencoders for
Collaborative Filtering", code ``vae_cf``) for the normalised recall and the batched binary NDCG;
He et al. (2017, "Neural Collaborative Filtering") for the sampled-negatives protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "MAP",
    "MRR",
    "NDCG",
    "HitRate",
    "Precision",
    "RankingMetric",
    "Recall",
    "auc",
    "coverage_counts",
    "hit_rate_at_k",
    "hit_rate_from_rank",
    "hits_at",
    "item_coverage_at_k",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "ndcg_from_rank",
    "precision_at_k",
    "rank_of_target",
    "recall_at_k",
]

_F64 = torch.float64


# --------------------------------------------------------------------------------------------- helpers
def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return k


def _check_top_items(top_items: Tensor) -> None:
    if top_items.dim() != 2:
        raise ValueError(f"top_items must be 2-D (n_users, K), got shape {tuple(top_items.shape)}")
    if top_items.dtype.is_floating_point or top_items.dtype.is_complex or top_items.dtype == torch.bool:
        raise ValueError(f"top_items must hold integer item indices, got dtype {top_items.dtype}")


def _check_pair(top_items: Tensor, truth: Tensor) -> None:
    _check_top_items(top_items)
    if truth.dim() != 2:
        raise ValueError(f"truth must be 2-D (n_users, n_items), got shape {tuple(truth.shape)}")
    if top_items.shape[0] != truth.shape[0]:
        raise ValueError(f"top_items and truth disagree on n_users: {tuple(top_items.shape)} vs {tuple(truth.shape)}")
    if top_items.device != truth.device:
        raise ValueError(f"top_items on {top_items.device} but truth on {truth.device}")


def _check_range(idx: Tensor, n_items: int) -> None:
    # One device sync; catches what would otherwise be a device-side assert on CUDA.
    if idx.numel() and bool(((idx < -1) | (idx >= n_items)).any()):
        raise ValueError(f"top_items holds indices outside [-1, {n_items - 1}]")


def _discounts(k: int, device: torch.device) -> Tensor:
    """1 / log2(r + 1) for ranks r = 1..k, float64."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, device=device, dtype=_F64))


def _n_relevant(truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
    """|relevant| per user; callers that already know it (the evaluator, from its sparse truth) pass it in."""
    if n_relevant is not None:
        if n_relevant.shape != truth.shape[:1]:
            raise ValueError(f"n_relevant has shape {tuple(n_relevant.shape)}, expected ({truth.shape[0]},)")
        return n_relevant.to(device=truth.device, dtype=_F64)
    return (truth > 0).sum(dim=1).to(_F64)


def _nan_where_empty(values: Tensor, n_rel: Tensor) -> Tensor:
    return torch.where(n_rel > 0, values, torch.full_like(values, float("nan"))).to(torch.float32)


def hits_at(top_items: Tensor, truth: Tensor, k: int) -> Tensor:
    """Relevance of each of the first k ranked items: ``out[u, r] = truth[u, top_items[u, r]]``.

    Padding (``-1``) and positions beyond the list length ``K`` give 0, so the result is always
    ``(n_users, k)``. The dtype is ``truth``'s floating dtype (float32 if ``truth`` is bool/int).

    >>> hits_at(torch.tensor([[2, -1, 0]]), torch.tensor([[1.0, 0.0, 3.0]]), k=4)
    tensor([[3., 0., 1., 0.]])
    """
    _check_k(k)
    _check_pair(top_items, truth)
    if not truth.dtype.is_floating_point:
        truth = truth.float()
    n_users, n_items = truth.shape
    idx = top_items[:, :k].long()
    _check_range(idx, n_items)
    valid = idx >= 0
    if n_items == 0:
        gathered = torch.zeros(idx.shape, dtype=truth.dtype, device=truth.device)
    else:
        gathered = truth.gather(1, idx.clamp(min=0))
        gathered = torch.where(valid, gathered, torch.zeros((), dtype=truth.dtype, device=truth.device))
    if gathered.shape[1] < k:
        pad = torch.zeros(n_users, k - gathered.shape[1], dtype=truth.dtype, device=truth.device)
        gathered = torch.cat([gathered, pad], dim=1)
    return gathered


def _binary_hits(top_items: Tensor, truth: Tensor, k: int) -> Tensor:
    return (hits_at(top_items, truth, k) > 0).to(_F64)


# ------------------------------------------------------------------------------------- top-k metrics
def recall_at_k(
    top_items: Tensor, truth: Tensor, k: int, normalized: bool = True, n_relevant: Tensor | None = None
) -> Tensor:
    """Recall@k per user.

    normalized=True  (Liang et al. 2018, vae_cf ``Recall_at_k_batch``):
        recall@k = |relevant ∩ top_k| / min(k, |relevant|)
    normalized=False (classic):
        recall@k = |relevant ∩ top_k| / |relevant|

    NaN for users with |relevant| = 0.

    >>> top = torch.tensor([[0, 1, 2]])
    >>> truth = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    >>> recall_at_k(top, truth, k=2), recall_at_k(top, truth, k=2, normalized=False)
    (tensor([0.5000]), tensor([0.3333]))
    """
    hits = _binary_hits(top_items, truth, k).sum(dim=1)
    n_rel = _n_relevant(truth, n_relevant)
    denom = n_rel.clamp(max=k) if normalized else n_rel
    return _nan_where_empty(hits / denom.clamp(min=1), n_rel)


def precision_at_k(top_items: Tensor, truth: Tensor, k: int, n_relevant: Tensor | None = None) -> Tensor:
    """Precision@k per user: |relevant ∩ top_k| / k (padding and short lists count as misses).

    NaN for users with |relevant| = 0.
    """
    hits = _binary_hits(top_items, truth, k).sum(dim=1)
    return _nan_where_empty(hits / k, _n_relevant(truth, n_relevant))


def ndcg_at_k(
    top_items: Tensor, truth: Tensor, k: int, graded: bool = False, n_relevant: Tensor | None = None
) -> Tensor:
    """NDCG@k per user (Järvelin & Kekäläinen 2002).

        DCG@k  = sum_{r=1..k} gain_r / log2(r + 1)
        NDCG@k = DCG@k / IDCG@k

    binary (graded=False): gain_r = 1[rel_r > 0]; IDCG@k = sum_{r=1..min(k, |relevant|)} 1 / log2(r + 1).
    This equals vae_cf's ``NDCG_binary_at_k_batch`` (Liang et al. 2018).
    graded (graded=True):  gain_r = 2^rel_r - 1 (rel clipped at 0); IDCG@k is the DCG of the user's
    relevance values sorted descending and truncated at k.

    NaN for users with |relevant| = 0.

    >>> top = torch.tensor([[1, 0]])
    >>> truth = torch.tensor([[1.0, 0.0, 1.0]])
    >>> ndcg_at_k(top, truth, k=2)  # (1/log2 3) / (1 + 1/log2 3)
    tensor([0.3869])
    """
    rel = hits_at(top_items, truth, k).to(_F64)
    disc = _discounts(k, truth.device)
    n_rel = _n_relevant(truth, n_relevant)
    if not graded:
        dcg = ((rel > 0).to(_F64) * disc).sum(dim=1)
        cum = disc.cumsum(0)
        idcg = cum[(n_rel.clamp(min=1, max=k) - 1).long()]
    else:
        dcg = ((torch.exp2(rel.clamp(min=0)) - 1.0) * disc).sum(dim=1)
        k_eff = min(k, truth.shape[1])
        ideal = torch.topk(truth.to(_F64).clamp(min=0), k_eff, dim=1).values
        idcg = ((torch.exp2(ideal) - 1.0) * disc[:k_eff]).sum(dim=1)
    return _nan_where_empty(dcg / torch.where(n_rel > 0, idcg, torch.ones_like(idcg)), n_rel)


def map_at_k(top_items: Tensor, truth: Tensor, k: int, n_relevant: Tensor | None = None) -> Tensor:
    """Mean-average-precision ingredient AP@k per user (average over users gives MAP@k).

        AP@k = (1 / min(k, |relevant|)) * sum_{r=1..k} P@r * rel_r,   P@r = (1/r) * sum_{j<=r} rel_j

    with rel_r = 1[item at rank r is relevant]. The normaliser min(k, |relevant|) makes a perfect
    list score 1 even when |relevant| > k. NaN for users with |relevant| = 0.
    """
    rel = _binary_hits(top_items, truth, k)
    ranks = torch.arange(1, k + 1, device=truth.device, dtype=_F64)
    prec_at_r = rel.cumsum(dim=1) / ranks
    n_rel = _n_relevant(truth, n_relevant)
    ap = (prec_at_r * rel).sum(dim=1) / n_rel.clamp(min=1, max=k)
    return _nan_where_empty(ap, n_rel)


def mrr_at_k(top_items: Tensor, truth: Tensor, k: int, n_relevant: Tensor | None = None) -> Tensor:
    """Reciprocal rank@k per user: 1 / r* where r* is the 1-based rank of the first relevant item in
    the top k, 0 if none (computed as max_r rel_r / r). Average over users gives MRR@k.

    NaN for users with |relevant| = 0.
    """
    rel = _binary_hits(top_items, truth, k)
    ranks = torch.arange(1, k + 1, device=truth.device, dtype=_F64)
    rr = (rel / ranks).amax(dim=1)
    return _nan_where_empty(rr, _n_relevant(truth, n_relevant))


def hit_rate_at_k(top_items: Tensor, truth: Tensor, k: int, n_relevant: Tensor | None = None) -> Tensor:
    """Hit rate@k per user: 1[|relevant ∩ top_k| > 0]. NaN for users with |relevant| = 0."""
    hit = _binary_hits(top_items, truth, k).amax(dim=1)
    return _nan_where_empty(hit, _n_relevant(truth, n_relevant))


# ------------------------------------------------------------------------------------------------ AUC
def auc(scores: Tensor, truth: Tensor, exclude: Tensor | None = None) -> Tensor:
    """Per-user ROC AUC over all items (not a top-k metric).

        AUC_u = (1 / (|P| |N|)) * sum_{i in P} sum_{j in N} ( 1[s_i > s_j] + 1/2 * 1[s_i = s_j] )

    P = {i : truth[u, i] > 0, not excluded}, N = {j : truth[u, j] <= 0, not excluded}. This is the
    Mann-Whitney U statistic with average (mid) ranks for ties: tied scores count exactly 1/2 per
    pair. It is computed with one sort per row and per-tie-group counts; all counts are exact
    integers in float64, so the only rounding is the final division.

    ``exclude``: optional bool mask (n_users, n_items) of items left out of both P and N (e.g. the
    user's training items); their scores are irrelevant (``-inf`` is fine). Scores of the items that
    are kept must not be NaN. NaN for users with |P| = 0 or |N| = 0.

    >>> auc(torch.tensor([[0.9, 0.5, 0.5, 0.1]]), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    tensor([0.8750])
    """
    if scores.dim() != 2 or scores.shape != truth.shape:
        raise ValueError(
            f"scores and truth must both be (n_users, n_items), got {tuple(scores.shape)} and {tuple(truth.shape)}"
        )
    pos = truth > 0
    neg = ~pos
    if exclude is not None:
        if exclude.shape != scores.shape or exclude.dtype != torch.bool:
            raise ValueError(
                f"exclude must be a bool tensor of shape {tuple(scores.shape)}, "
                f"got {exclude.dtype} {tuple(exclude.shape)}"
            )
        keep = ~exclude
        pos = pos & keep
        neg = neg & keep
    n_users, n_items = scores.shape
    if n_items == 0:
        return torch.full((n_users,), float("nan"), dtype=torch.float32, device=scores.device)
    s_sorted, order = torch.sort(scores, dim=1, stable=True)  # ascending
    p = pos.gather(1, order).to(_F64)
    q = neg.gather(1, order).to(_F64)
    new_group = torch.ones_like(s_sorted, dtype=torch.bool)
    new_group[:, 1:] = s_sorted[:, 1:] != s_sorted[:, :-1]
    gid = new_group.long().cumsum(dim=1) - 1  # tie-group id, increasing with score
    pos_g = torch.zeros(n_users, n_items, dtype=_F64, device=scores.device).scatter_add_(1, gid, p)
    neg_g = torch.zeros(n_users, n_items, dtype=_F64, device=scores.device).scatter_add_(1, gid, q)
    neg_below = neg_g.cumsum(dim=1) - neg_g  # negatives strictly below each group
    u_stat = (pos_g * (neg_below + 0.5 * neg_g)).sum(dim=1)
    n_pos, n_neg = p.sum(dim=1), q.sum(dim=1)
    defined = (n_pos > 0) & (n_neg > 0)
    value = u_stat / torch.where(defined, n_pos * n_neg, torch.ones_like(n_pos))
    return torch.where(defined, value, torch.full_like(value, float("nan"))).to(torch.float32)


# ------------------------------------------------------------------------------------------- coverage
def coverage_counts(top_items: Tensor, n_items: int, k: int) -> Tensor:
    """Bool mask (n_items,): True for every item appearing in some user's top k (padding ignored).

    To aggregate over user batches, OR the masks: ``seen |= coverage_counts(batch_top, n_items, k)``;
    the catalogue coverage is then ``seen.float().mean().item()``.
    """
    _check_k(k)
    _check_top_items(top_items)
    idx = top_items[:, :k].reshape(-1).long()
    _check_range(idx, n_items)
    idx = torch.where(idx < 0, torch.full_like(idx, n_items), idx)  # padding -> sentinel slot
    seen = torch.zeros(n_items + 1, dtype=torch.bool, device=top_items.device)
    seen[idx] = True
    return seen[:n_items]


def item_coverage_at_k(top_items: Tensor, n_items: int, k: int) -> float:
    """Catalogue coverage@k of one batch: |union_u top_k(u)| / n_items (a scalar, padding ignored).

    For several batches use :func:`coverage_counts` and OR the masks.

    >>> item_coverage_at_k(torch.tensor([[0, 1], [1, -1]]), n_items=4, k=2)
    0.5
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return coverage_counts(top_items, n_items, k).float().mean().item()


# ------------------------------------------------------------------------- sampled candidates (NCF)
def rank_of_target(target_scores: Tensor, negative_scores: Tensor, *, pessimistic: bool = False) -> Tensor:
    """0-based rank of each target among itself and its m sampled negatives (He et al. 2017 protocol,
    typically m = 99).

        rank = #{j : neg_j > target}            (default, ties resolved in the target's favour)
        rank = #{j : neg_j >= target}           (pessimistic=True, ties against the target)

    ``target_scores`` (n,), ``negative_scores`` (n, m); returns int64 (n,).

    >>> rank_of_target(torch.tensor([0.5, 0.2]), torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.4, 0.0]]))
    tensor([1, 2])
    """
    if target_scores.dim() != 1 or negative_scores.dim() != 2 or negative_scores.shape[0] != len(target_scores):
        raise ValueError(
            f"expected target_scores (n,) and negative_scores (n, m), got {tuple(target_scores.shape)} "
            f"and {tuple(negative_scores.shape)}"
        )
    t = target_scores.unsqueeze(1)
    beaten = negative_scores >= t if pessimistic else negative_scores > t
    return beaten.sum(dim=1)


def hit_rate_from_rank(rank: Tensor, k: int) -> Tensor:
    """HR@k from 0-based ranks: 1[rank < k], float32."""
    _check_k(k)
    return (rank < k).to(torch.float32)


def ndcg_from_rank(rank: Tensor, k: int) -> Tensor:
    """NDCG@k with a single relevant item at 0-based rank: 1 / log2(rank + 2) if rank < k else 0."""
    _check_k(k)
    value = 1.0 / torch.log2(rank.to(_F64) + 2.0)
    return torch.where(rank < k, value, torch.zeros_like(value)).to(torch.float32)


# ------------------------------------------------------------------------------------- object forms
@runtime_checkable
class RankingMetric(Protocol):
    """What the evaluator needs from a top-k metric object: its cut-off, a display name, a call."""

    @property
    def k(self) -> int: ...

    @property
    def name(self) -> str: ...

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor: ...


class _CutoffMixin:
    k: int

    def __post_init__(self) -> None:
        _check_k(self.k)


@dataclass(frozen=True)
class Recall(_CutoffMixin):
    """Recall@k object; name "recall@k" (normalised, Liang et al. 2018) or "recall_plain@k"."""

    k: int
    normalized: bool = True

    @property
    def name(self) -> str:
        return f"{'recall' if self.normalized else 'recall_plain'}@{self.k}"

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
        return recall_at_k(top_items, truth, self.k, n_relevant=n_relevant, normalized=self.normalized)


@dataclass(frozen=True)
class Precision(_CutoffMixin):
    """Precision@k object; name "precision@k"."""

    k: int

    @property
    def name(self) -> str:
        return f"precision@{self.k}"

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
        return precision_at_k(top_items, truth, self.k, n_relevant=n_relevant)


@dataclass(frozen=True)
class NDCG(_CutoffMixin):
    """NDCG@k object; name "ndcg@k" (binary gain) or "ndcg_graded@k" (gain 2^rel - 1)."""

    k: int
    graded: bool = False

    @property
    def name(self) -> str:
        return f"{'ndcg_graded' if self.graded else 'ndcg'}@{self.k}"

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
        return ndcg_at_k(top_items, truth, self.k, n_relevant=n_relevant, graded=self.graded)


@dataclass(frozen=True)
class MAP(_CutoffMixin):
    """AP@k object (mean over users = MAP@k); name "map@k"."""

    k: int

    @property
    def name(self) -> str:
        return f"map@{self.k}"

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
        return map_at_k(top_items, truth, self.k, n_relevant=n_relevant)


@dataclass(frozen=True)
class MRR(_CutoffMixin):
    """Reciprocal-rank@k object (mean over users = MRR@k); name "mrr@k"."""

    k: int

    @property
    def name(self) -> str:
        return f"mrr@{self.k}"

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
        return mrr_at_k(top_items, truth, self.k, n_relevant=n_relevant)


@dataclass(frozen=True)
class HitRate(_CutoffMixin):
    """Hit-rate@k object; name "hr@k"."""

    k: int

    @property
    def name(self) -> str:
        return f"hr@{self.k}"

    def __call__(self, top_items: Tensor, truth: Tensor, n_relevant: Tensor | None = None) -> Tensor:
        return hit_rate_at_k(top_items, truth, self.k, n_relevant=n_relevant)
