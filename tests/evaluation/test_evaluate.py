"""The evaluator: exact values on a hand-made case, batch-size independence, sampled and rating protocols."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.data.splits import EvalPart
from recforge.evaluation.evaluate import auto_batch_size, evaluate_ranking, evaluate_ratings, evaluate_sampled
from recforge.metrics import NDCG, HitRate, Recall
from recforge.metrics.rating import MAE, RMSE
from recforge.models.base import BaseRecommender


class FixedScores(BaseRecommender):
    """Test double: item i scores ``item_scores[i]`` for everyone, plus a per-user shift if known."""

    name = "fixed"

    def __init__(self, *, item_scores: tuple[float, ...] = ()):
        self.item_scores = item_scores

    def _fit(self, train, valid, options) -> None:
        pass

    def score(self, history, users=None):
        history = self._check_history(history, users)
        base = torch.tensor(self.item_scores, dtype=torch.float32)
        return base.repeat(history.shape[0], 1)

    def predict_indices(self, user_idx, item_idx):
        return torch.tensor(self.item_scores, dtype=torch.float32)[torch.as_tensor(item_idx)]

    def _state(self):
        return {}

    def _load_state(self, tensors) -> None:
        pass


def _part(history_rows, target_rows, n_items, *, known_users=True, negatives=None, target_values=None):
    def to_inter(rows, values=None):
        u = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
        i = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows]) if u.size else np.array([], np.int64)
        v = np.ones(len(u), np.float32) if values is None else np.asarray(values, np.float32)
        return Interactions.from_csr(sp.csr_array((v, (u, i)), shape=(len(rows), n_items)))

    history, target = to_inter(history_rows), to_inter(target_rows, target_values)
    target = Interactions(target.user_idx, target.item_idx, target.values, history.users, history.items, explicit=True)
    return EvalPart(history, target, known_users=known_users, negatives=negatives)


def _fitted(scores, part):
    return FixedScores(item_scores=tuple(scores)).fit(part.history)


def test_hand_computed_full_ranking_excludes_history():
    # 5 items scored 5,4,3,2,1 -> global order 0,1,2,3,4.
    # user 0 saw item 0 -> ranking 1,2,3,4; target {2}: rank 2 -> recall@2 = 1/min(2,1) = 1, ndcg@2 = 1/log2(3)
    # user 1 saw nothing -> ranking 0,1,2,...; target {3,4}: no hit in top 2 -> 0; hr@4 = 1
    # user 2 has no target -> not evaluated
    part = _part([[0], [], [1]], [[2], [3, 4], []], 5)
    model = _fitted([5, 4, 3, 2, 1], part)
    res = evaluate_ranking(model, part, [Recall(2), NDCG(2), HitRate(4)], coverage=True)
    assert res.n_users == 2
    assert res.per_user["user"].tolist() == [0, 1]
    assert res.per_user["recall@2"].tolist() == [1.0, 0.0]
    assert res.per_user["ndcg@2"].tolist() == pytest.approx([1 / math.log2(3), 0.0])
    assert res.per_user["hr@4"].tolist() == [1.0, 1.0]
    assert res.metrics["recall@2"] == pytest.approx(0.5)
    # top-4 lists: {1,2,3,4} and {0,1,2,3} -> all 5 items covered
    assert res.metrics["coverage@4"] == pytest.approx(1.0)


def _random_part(seed=0, n_users=40, n_items=30):
    rng = np.random.default_rng(seed)
    hist = [rng.choice(n_items, rng.integers(0, 6), replace=False) for _ in range(n_users)]
    targ = [np.setdiff1d(rng.choice(n_items, rng.integers(0, 5), replace=False), h) for h in hist]
    return _part(hist, targ, n_items), rng.random(n_items)


@pytest.mark.parametrize("batch_size", [1, 7, None])
def test_results_do_not_depend_on_batch_size(batch_size):
    part, scores = _random_part()
    model = _fitted(scores, part)
    metrics = [Recall(5), NDCG(10), HitRate(3)]
    reference = evaluate_ranking(model, part, metrics, batch_size=10_000)
    res = evaluate_ranking(model, part, metrics, batch_size=batch_size)
    pd.testing.assert_frame_equal(res.per_user, reference.per_user)
    assert res.metrics == reference.metrics


def test_sampled_negatives_protocol():
    # items scored 0..9 ascending (item 9 best). user 0: target 5, negatives {0,1,2,9} -> 1 above -> rank 1
    # user 1: target 9 -> rank 0. HR@1 = [0, 1]; NDCG@2 = [1/log2(3), 1]
    negatives = np.array([[0, 1, 2, 9], [0, 1, 2, 3]])
    part = _part([[4], [4]], [[5], [9]], 10, negatives=negatives)
    model = _fitted(np.arange(10, dtype=float), part)
    res = evaluate_sampled(model, part, ks=(1, 2))
    assert res.per_user["hr@1"].tolist() == [0.0, 1.0]
    assert res.per_user["ndcg@2"].tolist() == pytest.approx([1 / math.log2(3), 1.0])
    with pytest.raises(ValueError, match="negatives"):
        evaluate_sampled(model, _part([[]], [[1]], 10))


def test_rating_evaluation():
    part = _part([[0], [1]], [[1], [0, 2]], 3, target_values=[4.0, 3.0, 5.0])
    model = _fitted([3.0, 4.0, 5.0], part)  # predicts 4 (truth 4), 3 (truth 3), 5 (truth 5)
    res = evaluate_ratings(model, part, [RMSE(), MAE()])
    assert res.metrics == {"rmse": 0.0, "mae": 0.0}
    assert len(res.per_user) == 3


def test_auto_batch_size_is_positive_and_bounded():
    bs = auto_batch_size(20_000, torch.device("cpu"))
    assert 1 <= bs <= (1 << 30) // (20_000 * 16)


@pytest.mark.skipif(not __import__("os").environ.get("RECFORGE_DATA"), reason="RECFORGE_DATA not set")
def test_real_model_results_do_not_depend_on_batch_size():
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018
    from recforge.models.linear import EASE

    split = liang2018(load_dataset("ml-100k", download=False).interactions, heldout_users=100)
    model = EASE(l2=100.0).fit(split.train)
    metrics = [NDCG(100), Recall(20), HitRate(5)]
    results = [evaluate_ranking(model, split.test, metrics, batch_size=bs) for bs in (1, 7, 100_000)]
    for res in results[1:]:
        pd.testing.assert_frame_equal(res.per_user, results[0].per_user)
