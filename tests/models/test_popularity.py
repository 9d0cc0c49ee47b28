"""Popularity: the contract, exact counts on a hand-made matrix, and its place on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models.popularity import Popularity
from recforge.testing import RecommenderContract, recall_at_k


class TestPopularityContract(RecommenderContract):
    learns_structure = False

    def make_model(self) -> Popularity:
        return Popularity()


def test_counts_distinct_users_not_values():
    frame = pd.DataFrame(
        {
            "user": ["a", "a", "b", "b", "c", "a"],
            "item": [10, 20, 20, 30, 20, 10],
            "weight": [5.0, 1.0, 3.0, 2.0, 1.0, 7.0],  # a plays item 10 twice: still one user
        }
    )
    train = Interactions.from_frame(frame, duplicates="sum")
    model = Popularity().fit(train)
    assert model.counts_.tolist() == [1.0, 3.0, 1.0]
    scores = model.score(sp.csr_array((2, 3), dtype=np.float32), None)
    assert torch.equal(scores, torch.tensor([[1.0, 3.0, 1.0]] * 2))
    (rec,) = model.recommend(["c"], k=3)  # c saw 20; 10 and 30 tie
    assert sorted(rec) == [(10, 1.0), (30, 1.0)]
    assert model.recommend_for_history([20], k=1) in ([(10, 1.0)], [(30, 1.0)])
    assert model.recommend(["c"], k=1, exclude_seen=False) == [[(20, 3.0)]]


def test_same_scores_for_every_user(planted):
    model = Popularity().fit(planted.train)
    scores = model.score(planted.train.matrix, None)
    assert torch.equal(scores, scores[:1].expand_as(scores))
    assert torch.equal(scores[0], torch.from_numpy(planted.train.item_counts().astype(np.float32)))


def test_ml100k_beats_random(ml100k_holdout):
    train, test = ml100k_holdout.train, ml100k_holdout.test
    recall = recall_at_k(Popularity().fit(train), train, test, 20)
    assert recall > 0.1  # a random ranking of ~1,600 unseen items gets ~0.012
