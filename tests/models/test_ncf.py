"""GMF, MLP, NeuMF and HybridNeuMF: the contract (ratings and implicit feedback), the objective of each ``loss``,
pretraining, fold-in of new users, the sampled-negatives validation, and HybridNeuMF's embedding file, fallback and
save/load (the file reader itself: ``tests/data/test_embeddings.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from recforge.data.interactions import Interactions
from recforge.data.splits import leave_last_out
from recforge.models.ncf import GMF, MLP, HybridNeuMF, NeuMF
from recforge.models.objectives import ImplicitObjective, RatingObjective
from recforge.models.registry import load_model
from recforge.testing import Planted, RecommenderContract
from tests.models.test_mf import ExplicitContract, explicit_planted

COMMON = {"batch_size": 64}
INVALID = (
    {"loss": "hinge"},
    {"n_negatives": 0},
    {"l2": -1.0},
    {"learning_rate": 0.0},
    {"monitor": "nonsense@10"},
    {"fold_in_steps": -1},
)


class TestGMFContract(ExplicitContract):
    """GMF on ratings (loss="mse")."""

    invalid_params = (*INVALID, {"embedding_dim": 0})

    def make_model(self) -> GMF:
        return GMF(embedding_dim=8, l2=0.01, learning_rate=0.05, max_epochs=30, **COMMON)


class TestMLPContract(RecommenderContract):
    """MLP on implicit feedback (loss="bce", sampled negatives)."""

    invalid_params = (*INVALID, {"layers": (15, 8)}, {"layers": ()}, {"dropout": 1.0})

    def make_model(self) -> MLP:
        return MLP(layers=(16, 8), loss="bce", learning_rate=0.02, max_epochs=15, **COMMON)


class TestNeuMFContract(RecommenderContract):
    """NeuMF on implicit feedback (loss="bce", sampled negatives)."""

    invalid_params = (*INVALID, {"layers": (7,)}, {"embedding_dim": 0})

    def make_model(self) -> NeuMF:
        return NeuMF(embedding_dim=4, layers=(16, 8), loss="bce", l2=0.02, learning_rate=0.05, max_epochs=20, **COMMON)


def write_group_embeddings(planted: Planted, path: Path, *, skip: int = 5) -> Path:
    """One-hot item block ("genre") embeddings of the planted items, the first ``skip`` items left out."""
    ids = planted.train.items.ids
    onehot = np.eye(3, dtype=np.float32)[planted.item_group]
    frame = pd.DataFrame(onehot, columns=["g0", "g1", "g2"])
    frame.insert(0, "item", ids)
    frame.iloc[skip:].to_csv(path, index=False)
    return path


class TestHybridNeuMFContract(ExplicitContract):
    """HybridNeuMF on ratings, with block embeddings from a CSV file (5 items without a row)."""

    invalid_params = (*INVALID, {"item_embedding_dim": 0})

    @pytest.fixture(autouse=True)
    def _embeddings(self, planted, tmp_path_factory):
        self.path = write_group_embeddings(planted, tmp_path_factory.mktemp("emb") / "items.csv")

    def make_model(self) -> HybridNeuMF:
        return HybridNeuMF(
            item_embeddings=str(self.path), embedding_dim=8, layers=(16, 8), l2=0.01, learning_rate=0.05,
            max_epochs=30, **COMMON,
        )  # fmt: skip


# ---------------------------------------------------------------------- losses and validation
def test_bce_validation_uses_sampled_negatives_and_keeps_the_best_epoch(planted):
    split = leave_last_out(planted.train, n_valid=1, n_test=1, n_negatives=20, seed=0)
    model = GMF(loss="bce", l2=0.03, learning_rate=0.05, max_epochs=12, patience=20, **COMMON)
    model.fit(split.train, valid=split.valid)
    assert model.monitor_name() == "ndcg@10" and model.monitor_mode == "max"
    log = model.training_log_
    assert {"valid_hr@10", "valid_ndcg@10", "train_bce"} <= set(log[0])
    best = int(np.argmax([e["valid_ndcg@10"] for e in log]))
    assert log[-1]["best_epoch"] == best
    prob = model.predict(planted.train.users.ids[:5], planted.train.items.ids[:5])
    assert ((prob > 0) & (prob < 1)).all()  # bce: interaction probabilities


def test_mse_models_monitor_rmse():
    model = NeuMF(loss="mse")
    assert model.monitor_name() == "rmse" and model.monitor_mode == "min" and model.predicts_ratings


def test_the_loss_picks_the_objective():
    rating, implicit = GMF(loss="mse").objective, MLP(loss="bce", n_negatives=3, monitor="hr@5").objective
    assert isinstance(rating, RatingObjective) and isinstance(implicit, ImplicitObjective)
    assert (implicit.name, implicit.monitor_mode, implicit.predicts_ratings) == ("bce", "max", False)
    assert implicit.monitor_name() == "hr@5" and MLP(loss="bce", monitor="hr@5").monitor_name() == "hr@5"
    output, target = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    torch.testing.assert_close(
        implicit.event_loss(output, target), F.binary_cross_entropy_with_logits(output, target, reduction="none")
    )
    torch.testing.assert_close(rating.event_loss(output, target), torch.tensor([1.0, 4.0]))
    history = sp.csr_array(([4.0, 2.0, 5.0], [0, 3, 1], [0, 2, 3]), shape=(2, 6))
    rows, items, values = rating.fold_in_events(history)
    assert rows.tolist() == [0, 0, 1] and items.tolist() == [0, 3, 1] and values.tolist() == [4.0, 2.0, 5.0]
    rows, items, labels = implicit.fold_in_events(history)  # 3 unseen items per positive, label 0
    assert rows.tolist() == [0, 0, 1] + [0] * 3 + [0] * 3 + [1] * 3 and labels.tolist() == [1] * 3 + [0] * 9
    assert not any(history[[r], [i]][0] for r, i in zip(rows[3:], items[3:], strict=True))


# ---------------------------------------------------------------------- pretraining
@pytest.fixture(scope="module")
def ratings(planted) -> Interactions:
    return explicit_planted(planted).train


@pytest.fixture(scope="module")
def pretrained(ratings):
    gmf = GMF(embedding_dim=4, learning_rate=0.05, max_epochs=5, clip=False, **COMMON).fit(ratings)
    mlp = MLP(layers=(16, 8), learning_rate=0.05, max_epochs=5, clip=False, **COMMON).fit(ratings)
    return gmf, mlp


def test_neumf_from_pretrained_starts_from_both_towers(ratings, pretrained):
    gmf, mlp = pretrained
    model = NeuMF.from_pretrained(gmf, mlp, alpha=0.3, learning_rate=1e-12, max_epochs=1, clip=False, **COMMON)
    assert (model.embedding_dim, model.layers, model.loss) == (4, (16, 8), "mse")
    model.fit(ratings)  # one epoch of steps of size ~1e-12: the initial weights
    u, i = np.repeat(np.arange(10), 6), np.tile(np.arange(6), 10)
    expected = 0.3 * gmf.predict_indices(u, i) + 0.7 * mlp.predict_indices(u, i)
    torch.testing.assert_close(model.predict_indices(u, i), expected, atol=1e-5, rtol=1e-5)
    state = model.module_.state_dict()
    torch.testing.assert_close(state["user_gmf.weight"], gmf.module_.state_dict()["user_gmf.weight"], atol=1e-6, rtol=0)
    torch.testing.assert_close(state["tower.1.weight"], mlp.module_.state_dict()["tower.1.weight"], atol=1e-6, rtol=0)


def test_hybrid_from_pretrained_starts_from_the_blend(planted, ratings, pretrained, tmp_path):
    gmf, mlp = pretrained
    path = write_group_embeddings(planted, tmp_path / "items.csv")
    model = HybridNeuMF.from_pretrained(
        gmf, mlp, item_embeddings=str(path), learning_rate=1e-12, max_epochs=1, clip=False, **COMMON
    ).fit(ratings)
    u, i = np.repeat(np.arange(10), 6), np.tile(np.arange(6), 10)
    expected = 0.5 * gmf.predict_indices(u, i) + 0.5 * mlp.predict_indices(u, i)
    torch.testing.assert_close(model.predict_indices(u, i), expected, atol=1e-5, rtol=1e-5)


def test_neumf_from_pretrained_checks_its_inputs(ratings, pretrained):
    gmf, mlp = pretrained
    with pytest.raises(TypeError, match="GMF"):
        NeuMF.from_pretrained(mlp, gmf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embedding_dim"):
        NeuMF.from_pretrained(gmf, mlp, embedding_dim=16)
    with pytest.raises(ValueError, match="alpha"):
        NeuMF.from_pretrained(gmf, mlp, alpha=1.5)
    other = ratings.restrict_users(np.arange(ratings.n_users - 1))
    with pytest.raises(ValueError, match="id maps"):
        NeuMF.from_pretrained(gmf, mlp, max_epochs=1, **COMMON).fit(other)


# ---------------------------------------------------------------------- fold-in
@pytest.fixture(scope="module")
def neumf_bce(planted):
    return NeuMF(embedding_dim=4, layers=(16, 8), loss="bce", l2=0.02, learning_rate=0.05, max_epochs=20, **COMMON).fit(
        planted.train
    )


def test_fold_in_of_a_block_fan_recommends_the_block(planted, neumf_bce):
    ids = planted.train.items.ids
    group = dict(zip(ids.tolist(), planted.item_group.tolist(), strict=True))
    for g in range(3):
        history = ids[planted.item_group == g][:5]
        rec = neumf_bce.recommend_for_history(history, k=10)
        assert np.mean([group[i] == g for i, _ in rec]) >= 0.8, (g, rec)
    first = neumf_bce.recommend_for_history(ids[:5], k=10)
    assert neumf_bce.recommend_for_history(ids[:5], k=10) == first  # seeded: deterministic


def test_fold_in_without_steps_is_the_mean_user(planted, neumf_bce):
    model = NeuMF(**{**neumf_bce.get_params(), "fold_in_steps": 0}).fit(planted.train)
    rows = planted.train.matrix[:4]
    scores = model.score(rows, None)
    assert torch.allclose(scores, scores[:1].expand_as(scores))  # no personalisation without steps


def test_fold_in_follows_the_ratings(planted, ratings):
    model = GMF(embedding_dim=8, l2=0.01, learning_rate=0.05, max_epochs=30, **COMMON).fit(ratings)
    group = dict(zip(ratings.items.ids.tolist(), planted.item_group.tolist(), strict=True))
    items = [*ratings.items.ids[planted.item_group == 0][:4], *ratings.items.ids[planted.item_group == 2][:4]]
    likes0 = model.recommend_for_history(items, k=5, values=[5.0] * 4 + [1.0] * 4)
    likes2 = model.recommend_for_history(items, k=5, values=[1.0] * 4 + [5.0] * 4)
    assert np.mean([group[i] == 0 for i, _ in likes0]) >= 0.8
    assert np.mean([group[i] == 2 for i, _ in likes2]) >= 0.8


# ---------------------------------------------------------------------- HybridNeuMF
@pytest.fixture
def int_ratings() -> Interactions:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(20), 5)
    items = np.concatenate([rng.choice(np.arange(100, 110), 5, replace=False) for _ in range(20)])
    return Interactions.from_frame(
        pd.DataFrame({"user": users, "item": items, "rating": rng.integers(1, 6, size=100).astype(float)})
    )


def _table(n_dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(100, 110)[::-1]  # not in index order
    return ids, np.arange(10 * n_dims, dtype=np.float32).reshape(10, n_dims) / 10


def test_hybrid_embedding_file_errors_name_the_file(int_ratings, tmp_path):
    """The reader's checks (:mod:`tests.data.test_embeddings`) surface from ``fit``, naming the file."""
    ids, table = _table()
    pd.DataFrame(table, columns=["a", "b", "c"]).assign(item=ids).to_csv(tmp_path / "bad_dim.csv", index=False)
    model = HybridNeuMF(item_embeddings=str(tmp_path / "bad_dim.csv"), item_embedding_dim=4, max_epochs=1, **COMMON)
    with pytest.raises(ValueError, match=r"bad_dim\.csv"):
        model.fit(int_ratings)


def test_hybrid_fallback_buffer_and_save_load_without_the_file(int_ratings, tmp_path):
    ids, table = _table()
    path = tmp_path / "emb.csv"
    pd.DataFrame(table[2:], columns=["a", "b", "c"]).assign(item=ids[2:]).to_csv(path, index=False)  # 109, 108 missing
    model = HybridNeuMF(item_embeddings=str(path), layers=(8, 4), max_epochs=2, clip=False, **COMMON)
    model.fit(int_ratings)
    m = model.module_
    assert set(dict(m.named_buffers())) == {"item_features", "has_features"}
    missing = int_ratings.items.index([109, 108])
    assert not m.has_features[missing].any() and int(m.has_features.sum()) == 8
    assert model.item_embedding_coverage_ == pytest.approx(0.8)
    # the first block of the prediction layer's input is e_i, or the learned fallback for an item without one
    w = m.predict.weight[0, :3].detach()
    known_item = int(int_ratings.items.index([100])[0])
    pairs = ([0, 0], [int(missing[0]), known_item])
    with torch.no_grad():
        m.feature_fallback.copy_(torch.tensor([1.0, -2.0, 3.0]))
    with_fallback = model.predict_indices(*pairs)
    with torch.no_grad():
        m.feature_fallback.zero_()
    change = with_fallback - model.predict_indices(*pairs)
    assert float(change[0]) == pytest.approx(float(w @ torch.tensor([1.0, -2.0, 3.0])), rel=1e-5)
    assert float(change[1]) == 0.0  # an item with an embedding never sees the fallback
    # saved weights carry the buffer: loading needs no file
    model.save(tmp_path / "model")
    path.unlink()
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, HybridNeuMF)
    history = int_ratings.matrix
    users = np.arange(int_ratings.n_users)
    assert torch.equal(loaded.score(history, users), model.score(history, users))
    assert torch.equal(loaded.module_.item_features, m.item_features)


def test_hybrid_buffer_is_gathered_on_the_model_device(int_ratings, tmp_path):
    ids, table = _table()
    path = tmp_path / "emb.npz"
    np.savez(path, ids=ids, embeddings=table)
    model = HybridNeuMF(item_embeddings=str(path), layers=(8, 4), max_epochs=1, **COMMON).fit(int_ratings)
    assert model.module_.item_features.device == model.device_
    assert model.module_.item_features.shape == (int_ratings.n_items, 3)
    scores = model.score(sp.csr_array((1, int_ratings.n_items), dtype=np.float32), None)  # fold-in of an empty user
    assert scores.shape == (1, int_ratings.n_items) and torch.isfinite(scores).all()


def test_per_layer_dropout(planted, tmp_path):
    """The Goodreads notebook's MLP: one dropout rate per tower layer."""
    assert MLP.validate_params({"dropout": [0.5, 0.2]})["dropout"] == (0.5, 0.2)  # from TOML/JSON lists
    train = explicit_planted(planted).train
    model = MLP(layers=(16, 8, 4), dropout=(0.5, 0.2), max_epochs=1).fit(train)
    rates = [m.p for m in model.module_.tower if isinstance(m, torch.nn.Dropout)]
    assert rates == [0.5, 0.2]
    model.save(tmp_path / "mlp")
    assert load_model(tmp_path / "mlp").dropout == (0.5, 0.2)
    with pytest.raises(ValueError, match=r"dropout: 3 rates for the 2 tower layers"):
        MLP(layers=(16, 8, 4), dropout=(0.5, 0.2, 0.1), max_epochs=1).fit(train)
