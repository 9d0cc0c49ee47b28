"""Confidence weighting as a hyper-parameter of EASE, ADMM-SLIM and ItemKNN: the training matrix and every scored
history row are weighted alike, and a saved model weights new rows as the fitted one did."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.data.weighting import weight_matrix
from recforge.models.linear import EASE
from recforge.models.neighbors import ItemKNN
from recforge.models.slim import ADMMSLIM
from recforge.models.weighted import WeightingParams


def play_counts(n_users: int = 30, n_items: int = 12, seed: int = 0) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 50, (n_users, n_items)) * (rng.random((n_users, n_items)) < 0.4)
    dense[:, 0] = np.maximum(dense[:, 0], 1)  # no empty row
    return sp.csr_array(dense.astype(np.float32))


MODELS = [
    lambda **w: EASE(l2=5.0, **w),
    lambda **w: ADMMSLIM(l1=0.1, l2=5.0, iterations=5, **w),
    lambda **w: ItemKNN(n_neighbors=5, shrinkage=1.0, **w),
]


@pytest.mark.parametrize("make", MODELS, ids=["ease", "admmslim", "itemknn"])
@pytest.mark.parametrize("scheme", ["bm25", "log", "tfidf", "binary"])
def test_weighting_equals_fitting_the_weighted_matrix(make, scheme, tmp_path):
    counts = play_counts()
    params = {"bm25": {"k1": 100.0, "b": 0.8}, "log": {"alpha": 1.0, "eps": 1.0}}.get(scheme, {})
    weighted = weight_matrix(counts, scheme, **params)
    model = make(weighting=scheme).fit(Interactions.from_csr(counts))
    reference = make().fit(Interactions.from_csr(weighted))
    users = np.arange(counts.shape[0])
    torch.testing.assert_close(model.score(counts, users), reference.score(weighted, users), rtol=1e-4, atol=1e-5)
    # a new user's raw row is weighted with the training statistics, after a save/load too
    new_row = counts[[3]]
    model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m")
    torch.testing.assert_close(loaded.score(new_row), reference.score(weighted[[3]]), rtol=1e-4, atol=1e-5)


def test_weighting_changes_what_ease_learns():
    counts = play_counts(seed=1)
    scores = [EASE(l2=5.0, weighting=w).fit(Interactions.from_csr(counts)).score(counts) for w in ("none", "bm25")]
    assert not torch.allclose(scores[0], scores[1])


def test_weighting_params_are_validated():
    with pytest.raises(ValueError, match="weighting"):
        EASE(weighting="squared").fit(Interactions.from_csr(play_counts()))  # type: ignore[arg-type]
    assert {"weighting", "alpha", "eps", "bm25_k1", "bm25_b"} <= set(EASE().get_params())
    assert issubclass(ItemKNN, WeightingParams)


def test_item_knn_saved_with_the_former_binarize_flag_loads_as_binary_weighting(tmp_path):
    counts = play_counts(seed=2)
    model = ItemKNN(n_neighbors=5, weighting="binary").fit(Interactions.from_csr(counts))
    model.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    params = config["params"]
    for key in ("weighting", "alpha", "eps", "bm25_k1", "bm25_b"):
        params.pop(key)
    params["binarize"] = True  # as an earlier version wrote it
    config_path.write_text(json.dumps(config))
    loaded = ItemKNN.load(tmp_path / "m")
    assert loaded.weighting == "binary"
    torch.testing.assert_close(loaded.score(counts[:4]), model.score(counts[:4]))
