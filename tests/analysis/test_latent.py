"""The latent analysis: class means and spreads of z (saved with class2idx), the silhouette and the
random-projection control, steering a user toward a class mean -- on the planted data set, whose user groups
each consume their own block of items."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recforge.analysis.latent import (
    ClassStats,
    class_stats,
    latent_codes,
    random_projection,
    separation_score,
    silhouette,
    steer,
)
from recforge.models.autoencoders import SongVAE

SMALL = {"max_epochs": 20, "batch_size": 16, "learning_rate": 1e-2, "seed": 3}


@pytest.fixture(scope="module")
def fitted(planted):
    model = SongVAE(dims=(32, 4), beta=0.2, **SMALL).fit(planted.train)
    labels = np.array([f"g{g}" for g in planted.user_group], dtype=object)
    return model, labels


def test_silhouette_by_hand():
    points = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0], [5.0, 5.0]])
    labels = ["a", "a", "b", "b", None]  # the unlabelled point is left out
    # point 0: a = 1, b = mean(10, sqrt(101)) ; every point is symmetric to point 0
    b = (10 + np.sqrt(101)) / 2
    assert silhouette(points, labels) == pytest.approx((b - 1) / b)
    assert silhouette(points[:3], ["a", "a", "b"]) == pytest.approx(
        np.mean([(10 - 1) / 10, (np.sqrt(101) - 1) / np.sqrt(101), 0.0])
    )
    with pytest.raises(ValueError, match="two classes"):
        silhouette(points[:2], ["a", "a"])


def test_class_stats_save_load_and_sample(tmp_path):
    z = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 14.0], [5.0, 5.0]])
    stats = class_stats(z, ["a", "a", "b", "b", "c"], {"a": 0, "b": 1}, info={"top": 2})
    assert stats.mean.tolist() == [[1.0, 0.0], [11.0, 12.0]]
    assert stats.std.tolist() == [[1.0, 0.0], [1.0, 2.0]] and stats.count.tolist() == [2, 2]
    again = ClassStats.load(stats.save(tmp_path / "latent" / "class_stats.json"))
    assert again.class2idx == {"a": 0, "b": 1} and np.array_equal(again.mean, stats.mean) and again.info == {"top": 2}
    points, labels = stats.sample(2000, ["b"], seed=1)
    assert points.shape == (2000, 2) and set(labels) == {"b"}
    assert np.allclose(points.mean(axis=0), [11, 12], atol=0.15) and np.allclose(points.std(axis=0), [1, 2], atol=0.1)
    with pytest.raises(ValueError, match="unknown tag 'x'"):
        stats.mean_of("x")
    with pytest.raises(ValueError, match="no user"):
        class_stats(z, ["a"] * 5, {"a": 0, "b": 1})


def test_z_separates_the_groups_better_than_a_random_projection(fitted, planted):
    model, labels = fitted
    score = separation_score(model, planted.train.matrix, labels)
    assert score["classes"] == 3 and score["dim"] == 4 and score["users"] == len(labels)
    assert score["latent"] > score["random_projection"] + 0.1 and score["latent"] > 0.3
    rp = random_projection(planted.train.matrix, 4, seed=0)
    assert rp.shape == (planted.train.n_users, 4) and np.array_equal(rp, random_projection(planted.train.matrix, 4))


def test_steering_moves_z_to_the_class_mean_and_raises_its_share(fitted, planted):
    model, labels = fitted
    z = latent_codes(model, planted.train.matrix)
    stats = class_stats(z, labels, {"g0": 0, "g1": 1, "g2": 2})
    row = sp.csr_array(planted.train.matrix[[int(np.flatnonzero(labels == "g1")[0])]])
    block0 = planted.item_group == 0
    result = steer(model, row, stats, "g0", 1.0, k=10)
    assert np.allclose(result["z_steered"], stats.mean_of("g0"), atol=1e-5)
    share = {k: block0[model.items_.index([i for i, _ in result[k]])].mean() for k in ("before", "recommendations")}
    assert share["recommendations"] > share["before"] + 0.5
    half = steer(model, row, stats, "g0", 0.5, k=10)
    assert np.allclose(half["z_steered"], (half["z"] + stats.mean_of("g0")) / 2, atol=1e-5)
    none = steer(model, row, stats, "g0", 0.0, k=10)
    assert [i for i, _ in none["recommendations"]] == [i for i, _ in none["before"]]
    assert not set(model.items_.index([i for i, _ in result["recommendations"]])) & set(row.indices)  # seen: out


def test_steering_through_the_model_api(fitted, planted):
    model, labels = fitted
    z = latent_codes(model, planted.train.matrix)
    stats = class_stats(z, labels, {"g0": 0, "g1": 1, "g2": 2})
    user = planted.train.users.ids[int(np.flatnonzero(labels == "g2")[0])]
    plain = model.recommend([user], k=5)[0]
    steered = model.recommend([user], k=5, steer=(stats.mean_of("g0"), 1.0))[0]
    block0 = planted.item_group == 0
    assert (
        block0[model.items_.index([i for i, _ in steered])].all()
        and not block0[model.items_.index([i for i, _ in plain])].all()
    )
    history = planted.train.items.ids[planted.train.matrix[[0]].indices].tolist()
    assert model.recommend_for_history(history, k=5, steer=(stats.mean_of("g0"), 0.0)) == model.recommend_for_history(
        history, k=5
    )
    with pytest.raises(ValueError, match=">= 0"):
        model.recommend_for_history(history, k=5, steer=(stats.mean_of("g0"), -1.0))
    with pytest.raises(ValueError, match="dimensions"):
        model.recommend_for_history(history, k=5, steer=(np.zeros(3), 1.0))
    assert torch.is_tensor(model.decode(stats.mean))
