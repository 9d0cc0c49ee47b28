"""Tests for recforge.metrics.ranking: hand-computed cases, a vae_cf cross-check, properties, devices."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recforge.metrics as metrics_pkg
from recforge.metrics import (
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
    parse_metric,
    precision_at_k,
    rank_of_target,
    recall_at_k,
)
from recforge.metrics import ranking as ranking_mod

NAN = float("nan")
L3 = math.log2(3)  # discount denominators: rank1 -> log2 2 = 1, rank2 -> log2 3, rank3 -> 2, rank4 -> log2 5
L5 = math.log2(5)


def close(actual: torch.Tensor, expected: list[float]) -> None:
    """Compare per-user results, NaN equal to NaN."""
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), equal_nan=True)


# ---------------------------------------------------------------------------------- hand-built case
# 6 items. u0 relevant {0, 2, 5}; u1 relevant {} (-> NaN); u2 relevant {1}.
TRUTH = torch.tensor(
    [
        [1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
    ]
)
# K = 4, with a padding entry for u0.
TOP = torch.tensor([[2, 1, -1, 5], [0, 1, 2, 3], [3, 4, 0, 1]])
# relevance of ranked items: u0 [1, 0, pad->0, 1]; u1 [0, 0, 0, 0]; u2 [0, 0, 0, 1]


def test_hits_at_padding_and_short_list() -> None:
    # k = 6 > K = 4: two zero columns appended; -1 gives 0.
    expected = torch.tensor([[1.0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    torch.testing.assert_close(hits_at(TOP, TRUTH, 6), expected)
    torch.testing.assert_close(hits_at(TOP, TRUTH, 2), expected[:, :2])
    # integer/bool truth is accepted and returned as float32
    assert hits_at(TOP, TRUTH > 0, 3).dtype == torch.float32


def test_recall_hand() -> None:
    # k=3: u0 hits 1 of 3 relevant -> 1/min(3,3) = 1/3; u2 hit 0 -> 0
    close(recall_at_k(TOP, TRUTH, 3), [1 / 3, NAN, 0.0])
    # k=4: u0 hits 2 -> 2/min(4,3) = 2/3; u2 hit 1 -> 1/min(4,1) = 1
    close(recall_at_k(TOP, TRUTH, 4), [2 / 3, NAN, 1.0])
    close(recall_at_k(TOP, TRUTH, 4, normalized=False), [2 / 3, NAN, 1.0])


def test_recall_normalized_vs_plain_when_more_relevant_than_k() -> None:
    # k=2, u0 has |relevant| = 3 > k: hits 1 -> normalized 1/min(2,3) = 1/2, plain 1/3
    close(recall_at_k(TOP, TRUTH, 2), [0.5, NAN, 0.0])
    close(recall_at_k(TOP, TRUTH, 2, normalized=False), [1 / 3, NAN, 0.0])


def test_precision_hand() -> None:
    # k=4: u0 2/4, u2 1/4; k=6 (> K): u0 2/6, u2 1/6 (missing positions are misses)
    close(precision_at_k(TOP, TRUTH, 4), [0.5, NAN, 0.25])
    close(precision_at_k(TOP, TRUTH, 6), [2 / 6, NAN, 1 / 6])


def test_ndcg_binary_hand() -> None:
    idcg_u0 = 1 + 1 / L3 + 1 / 2  # 3 relevant, ideal ranks 1..3
    # k=3: u0 DCG = 1 (rank 1 only); u2 DCG = 0
    close(ndcg_at_k(TOP, TRUTH, 3), [1 / idcg_u0, NAN, 0.0])
    # k=4: u0 DCG = 1 + 1/log2 5; u2 DCG = 1/log2 5, IDCG = 1
    close(ndcg_at_k(TOP, TRUTH, 4), [(1 + 1 / L5) / idcg_u0, NAN, 1 / L5])
    # k=6 > K: nothing more is found, IDCG still truncated at min(6, |rel|) = 3
    close(ndcg_at_k(TOP, TRUTH, 6), [(1 + 1 / L5) / idcg_u0, NAN, 1 / L5])
    # k=1: u0 rank1 relevant -> 1/1
    close(ndcg_at_k(TOP, TRUTH, 1), [1.0, NAN, 0.0])


def test_ndcg_graded_hand() -> None:
    truth = torch.tensor([[3.0, 0.0, 1.0, 2.0]])
    top = torch.tensor([[1, 0, 3]])  # ranked relevances [0, 3, 2] -> gains 2^rel - 1 = [0, 7, 3]
    # ideal relevances [3, 2, 1] -> gains [7, 3, 1]
    close(ndcg_at_k(top, truth, 3, graded=True), [(7 / L3 + 3 / 2) / (7 + 3 / L3 + 1 / 2)])
    close(ndcg_at_k(top, truth, 2, graded=True), [(7 / L3) / (7 + 3 / L3)])
    close(ndcg_at_k(top, truth, 1, graded=True), [0.0])
    # binary form on the same graded truth uses 1[rel > 0]: DCG 1/log2 3 + 1/2, IDCG 1 + 1/log2 3 + 1/2
    close(ndcg_at_k(top, truth, 3), [(1 / L3 + 1 / 2) / (1 + 1 / L3 + 1 / 2)])
    # k = 10 > n_items = 4: ideal list truncated at the catalogue; DCG/IDCG unchanged from k=3
    # except the 4th ideal gain 2^0 - 1 = 0
    close(ndcg_at_k(top, truth, 10, graded=True), [(7 / L3 + 3 / 2) / (7 + 3 / L3 + 1 / 2)])


def test_map_hand() -> None:
    # k=3: u0 rel [1,0,0]: P@1*1 = 1, / min(3,3) -> 1/3; u2 0
    close(map_at_k(TOP, TRUTH, 3), [1 / 3, NAN, 0.0])
    # k=4: u0 rel [1,0,0,1]: P@1 = 1, P@4 = 2/4 -> (1 + 0.5)/min(4,3) = 0.5; u2 rel [0,0,0,1]: P@4 = 1/4, /1
    close(map_at_k(TOP, TRUTH, 4), [0.5, NAN, 0.25])
    # |relevant| > k: u0 k=2 rel [1, 0]: 1 / min(2,3) = 0.5
    close(map_at_k(TOP, TRUTH, 2), [0.5, NAN, 0.0])


def test_mrr_and_hit_rate_hand() -> None:
    # u0 first hit at rank 1; u2 first hit at rank 4
    close(mrr_at_k(TOP, TRUTH, 3), [1.0, NAN, 0.0])
    close(mrr_at_k(TOP, TRUTH, 4), [1.0, NAN, 0.25])
    close(hit_rate_at_k(TOP, TRUTH, 3), [1.0, NAN, 0.0])
    close(hit_rate_at_k(TOP, TRUTH, 4), [1.0, NAN, 1.0])
    # a list made only of padding is all misses
    close(mrr_at_k(torch.full((1, 3), -1), TRUTH[:1], 3), [0.0])


def test_auc_hand_with_ties() -> None:
    # positives {0,1} scores .9, .5; negatives {2,3} scores .5, .1
    # pairs: (.9,.5)=1, (.9,.1)=1, (.5,.5)=1/2 (tie), (.5,.1)=1 -> 3.5 / 4
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1]])
    truth = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    close(auc(scores, truth), [0.875])
    # excluding item 1: P={0}, N={2,3} -> 2/2 = 1
    close(auc(scores, truth, exclude=torch.tensor([[False, True, False, False]])), [1.0])
    # excluding item 2: P={0,1}, N={3} -> 2/2 = 1; excluded score may be -inf
    excl = torch.tensor([[False, False, True, False]])
    close(auc(torch.tensor([[0.9, 0.5, -math.inf, 0.1]]), truth, exclude=excl), [1.0])
    # all scores tied -> every pair 1/2
    close(auc(torch.zeros(1, 4), truth), [0.5])
    # reversed: P scores .1,.5 ; N scores .5,.9 -> (.1<.5)0 (.1<.9)0 (.5=.5).5 (.5<.9)0 = .5/4
    close(auc(scores.flip(1), truth), [0.125])


def test_auc_nan_rules() -> None:
    scores = torch.tensor([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    truth = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    exclude = torch.tensor([[False] * 3, [False] * 3, [True, False, False]])
    # u0 no positive, u1 no negative, u2 its only positive excluded
    close(auc(scores, truth, exclude=exclude), [NAN, NAN, NAN])


def _auc_brute(scores: np.ndarray, truth: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    out = np.full(len(scores), np.nan)
    for u in range(len(scores)):
        pos = [s for s, t, e in zip(scores[u], truth[u], exclude[u], strict=True) if t > 0 and not e]
        neg = [s for s, t, e in zip(scores[u], truth[u], exclude[u], strict=True) if t <= 0 and not e]
        if pos and neg:
            total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
            out[u] = total / (len(pos) * len(neg))
    return out


def test_auc_matches_brute_force_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(40, 25)).astype(np.float32)  # heavy ties
    truth = (rng.random((40, 25)) < 0.3).astype(np.float32)
    exclude = rng.random((40, 25)) < 0.2
    got = auc(torch.from_numpy(scores), torch.from_numpy(truth), exclude=torch.from_numpy(exclude))
    np.testing.assert_allclose(got.numpy(), _auc_brute(scores, truth, exclude), rtol=1e-6)


def test_coverage() -> None:
    top = torch.tensor([[0, 1, 3], [1, -1, 2]])
    # k=2: items {0, 1} of 5 -> 0.4 ; k=3: {0, 1, 2, 3} -> 0.8
    assert item_coverage_at_k(top, 5, 2) == pytest.approx(0.4)
    assert item_coverage_at_k(top, 5, 3) == pytest.approx(0.8)
    # OR across two batches: {0,1} | {4} -> 3/5
    seen = coverage_counts(top, 5, 2) | coverage_counts(torch.tensor([[4, -1]]), 5, 2)
    assert seen.dtype == torch.bool and seen.tolist() == [True, True, False, False, True]
    assert seen.float().mean().item() == pytest.approx(0.6)


def test_sampled_protocol() -> None:
    target = torch.tensor([0.5, 0.2, 0.9])
    negatives = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.4, 0.0], [0.1, 0.2, 0.3]])
    # u0: strictly greater {0.9} -> 1, with ties {0.9, 0.5} -> 2; u1: {0.3, 0.4} -> 2; u2: none -> 0
    rank = rank_of_target(target, negatives)
    assert rank.dtype == torch.int64 and rank.tolist() == [1, 2, 0]
    assert rank_of_target(target, negatives, pessimistic=True).tolist() == [2, 2, 0]
    close(hit_rate_from_rank(rank, 2), [1.0, 0.0, 1.0])
    # ndcg: rank 1 -> 1/log2 3, rank 2 -> 0 at k=2, rank 0 -> 1/log2 2 = 1
    close(ndcg_from_rank(rank, 2), [1 / L3, 0.0, 1.0])
    close(ndcg_from_rank(rank, 3), [1 / L3, 0.5, 1.0])


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(torch.tensor([[6]]), TRUTH[:1], 1)
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(torch.tensor([[-2]]), TRUTH[:1], 1)
    with pytest.raises(ValueError, match="integer"):
        recall_at_k(torch.tensor([[0.0]]), TRUTH[:1], 1)
    with pytest.raises(ValueError, match="n_users"):
        recall_at_k(TOP[:2], TRUTH, 1)
    with pytest.raises(ValueError, match="positive int"):
        ndcg_at_k(TOP, TRUTH, 0)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        auc(torch.zeros(2, 3), torch.zeros(2, 4))


# ------------------------------------------------------------------------------------ object forms
def test_objects_and_parse_metric() -> None:
    specs = {
        "ndcg@100": NDCG(100),
        "ndcg_graded@10": NDCG(10, graded=True),
        "recall@20": Recall(20),
        "recall_plain@20": Recall(20, normalized=False),
        "precision@10": Precision(10),
        "map@10": MAP(10),
        "mrr@10": MRR(10),
        "hr@10": HitRate(10),
    }
    for spec, obj in specs.items():
        parsed = parse_metric(spec)
        assert parsed == obj and parsed.name == spec
        assert isinstance(parsed, RankingMetric)
        assert parse_metric(parsed.name) == parsed
    assert parse_metric(" HR@5 ") == HitRate(5)
    assert parse_metric("hit_rate@5") == HitRate(5)
    assert max(m.k for m in specs.values()) == 100
    for bad in ["foo@10", "ndcg", "ndcg@0", "ndcg@-1", "ndcg@x", "auc@10", ""]:
        with pytest.raises(ValueError, match="known: recall@<k>"):
            parse_metric(bad)
    with pytest.raises(ValueError):
        NDCG(0)
    with pytest.raises(AttributeError):
        NDCG(5).k = 3  # type: ignore[misc]
    close(NDCG(4)(TOP, TRUTH), ndcg_at_k(TOP, TRUTH, 4).tolist())
    close(Recall(2, normalized=False)(TOP, TRUTH), [1 / 3, NAN, 0.0])
    close(Precision(4)(TOP, TRUTH), [0.5, NAN, 0.25])
    close(MAP(4)(TOP, TRUTH), [0.5, NAN, 0.25])
    close(MRR(4)(TOP, TRUTH), [1.0, NAN, 0.25])
    close(HitRate(3)(TOP, TRUTH), [1.0, NAN, 0.0])


def test_docstring_examples() -> None:
    for mod in (ranking_mod, metrics_pkg):
        result = doctest.testmod(mod, extraglobs={"torch": torch})
        assert result.failed == 0 and result.attempted > 0


# ------------------------------------------------------------------------- vae_cf cross-check (numpy)
def _vae_cf_ndcg(x_pred: np.ndarray, heldout: np.ndarray, k: int) -> np.ndarray:
    """NDCG_binary_at_k_batch from Liang et al. (2018) vae_cf, with numpy instead of bottleneck."""
    n = x_pred.shape[0]
    idx_topk_part = np.argpartition(-x_pred, k, axis=1)
    topk_part = x_pred[np.arange(n)[:, None], idx_topk_part[:, :k]]
    idx_part = np.argsort(-topk_part, axis=1)
    idx_topk = idx_topk_part[np.arange(n)[:, None], idx_part]
    tp = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (heldout[np.arange(n)[:, None], idx_topk] * tp).sum(axis=1)
    idcg = np.array([tp[: min(int(c), k)].sum() for c in (heldout > 0).sum(axis=1)])
    return dcg / idcg


def _vae_cf_recall(x_pred: np.ndarray, heldout: np.ndarray, k: int) -> np.ndarray:
    """Recall_at_k_batch from Liang et al. (2018) vae_cf."""
    n = x_pred.shape[0]
    idx = np.argpartition(-x_pred, k, axis=1)
    x_pred_binary = np.zeros_like(x_pred, dtype=bool)
    x_pred_binary[np.arange(n)[:, None], idx[:, :k]] = True
    x_true_binary = heldout > 0
    tmp = np.logical_and(x_true_binary, x_pred_binary).sum(axis=1).astype(np.float64)
    return tmp / np.minimum(k, x_true_binary.sum(axis=1))


@pytest.mark.parametrize("k", [1, 5, 20, 50])
def test_matches_vae_cf_reference(k: int) -> None:
    rng = np.random.default_rng(k)
    x_pred = rng.standard_normal((64, 80))
    heldout = (rng.random((64, 80)) < 0.08).astype(np.float64)
    heldout[heldout.sum(axis=1) == 0, 0] = 1.0  # vae_cf divides by zero otherwise
    top = torch.topk(torch.from_numpy(x_pred), k, dim=1).indices
    truth = torch.from_numpy(heldout).float()
    np.testing.assert_allclose(ndcg_at_k(top, truth, k).numpy(), _vae_cf_ndcg(x_pred, heldout, k), rtol=1e-5)
    np.testing.assert_allclose(recall_at_k(top, truth, k).numpy(), _vae_cf_recall(x_pred, heldout, k), rtol=1e-5)


# ---------------------------------------------------------------------------------------- properties
@st.composite
def ranking_case(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    seed = draw(st.integers(0, 2**32 - 1))
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 15))
    big_k = draw(st.integers(1, n_items))
    k = draw(st.integers(1, 20))
    rng = np.random.default_rng(seed)
    truth = np.where(rng.random((n_users, n_items)) < 0.3, rng.integers(1, 5, (n_users, n_items)), 0)
    top = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :big_k]
    top = np.where(rng.random(top.shape) < 0.1, -1, top)
    return torch.from_numpy(top), torch.from_numpy(truth.astype(np.float32)), k


PROP = settings(max_examples=60, deadline=None)


@PROP
@given(ranking_case())
def test_prop_range_and_nan(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    top, truth, k = case
    empty = (truth > 0).sum(1) == 0
    fns = [
        lambda: recall_at_k(top, truth, k),
        lambda: recall_at_k(top, truth, k, normalized=False),
        lambda: precision_at_k(top, truth, k),
        lambda: ndcg_at_k(top, truth, k),
        lambda: ndcg_at_k(top, truth, k, graded=True),
        lambda: map_at_k(top, truth, k),
        lambda: mrr_at_k(top, truth, k),
        lambda: hit_rate_at_k(top, truth, k),
    ]
    for fn in fns:
        v = fn()
        assert v.shape == (truth.shape[0],) and v.dtype == torch.float32
        assert torch.equal(torch.isnan(v), empty)
        ok = v[~empty]
        assert bool(((ok >= 0) & (ok <= 1 + 1e-6)).all())


@PROP
@given(ranking_case())
def test_prop_precision_hits_and_hr_ge_mrr(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    top, truth, k = case
    has = (truth > 0).sum(1) > 0
    # independent hit count: loop over users and ranked items
    hits = torch.tensor(
        [sum(1 for i in top[u, :k].tolist() if i >= 0 and truth[u, i] > 0) for u in range(len(top))],
        dtype=torch.float32,
    )
    torch.testing.assert_close((precision_at_k(top, truth, k) * k)[has], hits[has])
    assert bool((hit_rate_at_k(top, truth, k) >= mrr_at_k(top, truth, k))[has].all())
    # normalized recall >= plain recall
    assert bool((recall_at_k(top, truth, k) >= recall_at_k(top, truth, k, normalized=False) - 1e-7)[has].all())


@PROP
@given(ranking_case())
def test_prop_perfect_ranking(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    _, truth, k = case
    has = (truth > 0).sum(1) > 0
    # ideal list: items by descending relevance (stable), irrelevant items padded with -1
    order = torch.argsort(truth, dim=1, descending=True, stable=True)
    top = torch.where(truth.gather(1, order) > 0, order, torch.full_like(order, -1))
    for v in [
        recall_at_k(top, truth, k),
        ndcg_at_k(top, truth, k),
        ndcg_at_k(top, truth, k, graded=True),
        map_at_k(top, truth, k),
        mrr_at_k(top, truth, k),
        hit_rate_at_k(top, truth, k),
    ]:
        torch.testing.assert_close(v[has], torch.ones(int(has.sum())))


@PROP
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(2, 30))
def test_prop_auc_reversed(seed: int, n_users: int, n_items: int) -> None:
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(np.argsort(rng.random((n_users, n_items)), axis=1).astype(np.float32))  # no ties
    truth = torch.from_numpy((rng.random((n_users, n_items)) < 0.4).astype(np.float32))
    a, b = auc(scores, truth), auc(-scores, truth)
    torch.testing.assert_close(b, 1 - a, equal_nan=True)
    defined = ~torch.isnan(a)
    assert bool(((a[defined] >= 0) & (a[defined] <= 1)).all())


# -------------------------------------------------------------------------------------------- devices
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_device(device: str) -> None:
    top, truth = TOP.to(device), TRUTH.to(device)
    for metric in [NDCG(4), NDCG(4, graded=True), Recall(4), Precision(4), MAP(4), MRR(4), HitRate(4)]:
        out = metric(top, truth)
        assert out.device.type == device
        torch.testing.assert_close(out.cpu(), metric(TOP, TRUTH), equal_nan=True)
    scores = torch.rand(3, 6, device=device)
    torch.testing.assert_close(auc(scores, truth).cpu(), auc(scores.cpu(), TRUTH), equal_nan=True)
    assert coverage_counts(top, 6, 4).device.type == device
    assert item_coverage_at_k(top, 6, 4) == item_coverage_at_k(TOP, 6, 4)
    rank = rank_of_target(scores[:, 0], scores[:, 1:])
    assert ndcg_from_rank(rank, 3).device.type == device
