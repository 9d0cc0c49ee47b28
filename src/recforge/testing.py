"""The recommender contract, shipped so that any model -- recforge's or your own -- can be checked against it.

Every recforge model passes it, and a model of yours (a :class:`~recforge.models.base.BaseRecommender`
subclass, registered or not) is checked the same way: subclass :class:`RecommenderContract` in a test module
and supply ``make_model()`` (an unfitted model with small, fast hyper-parameters); pytest collects the inherited
tests::

    from recforge.testing import RecommenderContract

    class TestMyModel(RecommenderContract):
        invalid_params = ({"l2": -1.0},)

        def make_model(self):
            return MyModel(l2=5.0)

Class attributes tune the checks: ``learns_structure = False`` for non-personalised baselines,
``invalid_params`` lists hyper-parameter settings that must be refused. Everything runs on a small planted data
set (:func:`make_planted`: user groups that each consume their own block of items) and takes well under a few
seconds per model. Needs pytest (the ``testing`` extra: ``pip install "recforge[testing]"``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recforge.data.ids import UnknownIdError
from recforge.data.interactions import Interactions
from recforge.models.base import BaseRecommender, InvalidParameterError, NotFittedError
from recforge.models.registry import MODELS, load_model

__all__ = ["Planted", "RecommenderContract", "make_planted", "recall_at_k"]


@dataclass(frozen=True)
class Planted:
    """Users in groups, each group consuming its own block of items, with a held-out part per user."""

    train: Interactions
    heldout: sp.csr_array  # users x items (same id maps as train): the held-out own-block items
    user_group: np.ndarray  # group of each user index
    item_group: np.ndarray  # group (block) of each item index


def make_planted(
    *,
    n_groups: int = 3,
    users_per_group: int = 30,
    items_per_group: int = 20,
    per_user: int = 8,
    held_out: int = 2,
    noise: int = 1,
    seed: int = 0,
) -> Planted:
    """Every user takes ``per_user`` random items of its group's block (``held_out`` of them held out)
    plus ``noise`` random items of other blocks (kept in training). Raw ids are strings and the item ids
    are shuffled so that the blocks are not contiguous in index order."""
    rng = np.random.default_rng(seed)
    n_items = n_groups * items_per_group
    item_names = np.array([f"i{j:03d}" for j in rng.permutation(n_items)])  # block of item j: j // per group
    rows: list[tuple[str, str, bool]] = []
    for g in range(n_groups):
        block = np.arange(g * items_per_group, (g + 1) * items_per_group)
        others = np.setdiff1d(np.arange(n_items), block)
        for u in range(users_per_group):
            user = f"u{g}-{u:02d}"
            own = rng.choice(block, per_user, replace=False)
            for pos, j in enumerate(own):
                rows.append((user, item_names[j], pos < held_out))
            for j in rng.choice(others, noise, replace=False):
                rows.append((user, item_names[j], False))
    frame = pd.DataFrame(rows, columns=["user", "item", "held"])
    full = Interactions.from_frame(frame[["user", "item"]])
    held = frame["held"].to_numpy()
    train = Interactions.from_frame(frame.loc[~held, ["user", "item"]], users=full.users, items=full.items)
    heldout = Interactions.from_frame(frame.loc[held, ["user", "item"]], users=full.users, items=full.items).matrix
    group_of_name = {item_names[j]: j // items_per_group for j in range(n_items)}
    item_group = np.array([group_of_name[i] for i in full.items.ids])
    user_group = np.array([int(str(u)[1:].split("-")[0]) for u in full.users.ids])
    return Planted(train=train, heldout=heldout, user_group=user_group, item_group=item_group)


def recall_at_k(model: BaseRecommender, train: Interactions, test: sp.csr_array, k: int) -> float:
    """Mean over users with test items of |top-k ∩ test| / min(k, |test|), seen (train) items excluded."""
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    _, top = model.rank(train.matrix[users], users, k)
    top = top.numpy()
    hits = np.zeros(len(users))
    for row, u in enumerate(users):
        truth = test.indices[test.indptr[u] : test.indptr[u + 1]]
        hits[row] = np.isin(top[row], truth).sum() / min(k, len(truth))
    return float(hits.mean())


class RecommenderContract:
    """Inherited tests that every recommender must pass. Subclasses implement :meth:`make_model`."""

    #: whether the model must recover the planted user-group / item-block structure
    learns_structure: ClassVar[bool] = True
    #: hyper-parameter settings that ``validate_params`` and ``fit`` must refuse
    invalid_params: ClassVar[tuple[dict[str, Any], ...]] = ()

    def make_model(self) -> BaseRecommender:
        raise NotImplementedError

    @pytest.fixture
    def planted(self) -> Planted:
        """The planted data set the checks run on (:func:`make_planted`, built once per process)."""
        return _planted()

    @pytest.fixture
    def model(self, planted) -> BaseRecommender:
        return self.make_model().fit(planted.train)

    # ---------------------------------------------------------------- 1. learning
    def test_learns_planted_structure(self, planted, model):
        if not self.learns_structure:
            pytest.skip(f"{type(model).__name__} is not personalised")
        k = 10
        train = planted.train
        recs = model.recommend(train.users.ids, k=k)
        top = np.array([train.items.index([i for i, _ in r]) for r in recs])
        # precision of the user's own block among the top-k, against what a random unseen item gives
        own = planted.item_group[top] == planted.user_group[:, None]
        n_unseen = train.n_items - np.diff(train.matrix.indptr)
        rows = np.repeat(np.arange(train.n_users), np.diff(train.matrix.indptr))
        seen_own = np.bincount(
            rows, weights=planted.item_group[train.matrix.indices] == planted.user_group[rows], minlength=train.n_users
        )
        chance_own = ((np.bincount(planted.item_group)[planted.user_group] - seen_own) / n_unseen).mean()
        assert own.mean() >= 0.8, f"own-block precision@{k} {own.mean():.2f} (chance {chance_own:.2f})"
        # recall of the held-out items against a random ranking of the unseen items
        recall = recall_at_k(model, train, planted.heldout, k)
        chance = (k / n_unseen).mean()
        assert recall >= 2.5 * chance, f"held-out recall@{k} {recall:.2f} vs chance {chance:.2f}"

    # ---------------------------------------------------------------- 2. persistence
    def test_save_load_round_trip(self, planted, model, tmp_path):
        path = tmp_path / "model"
        model.save(path)
        assert {p.name for p in path.iterdir()} == {"config.json", "ids.json", "weights.safetensors"}
        config = json.loads((path / "config.json").read_text())
        assert config["model"] == model.name
        if model.name in MODELS:  # a registered model is found by name too
            assert MODELS[model.name] is type(model)
        history = planted.train.matrix
        users = np.arange(planted.train.n_users)
        user_ids = planted.train.users.ids[:10]
        for loaded in (type(model).load(path), _load_any(path, model)):
            assert type(loaded) is type(model)
            assert loaded.get_params() == model.get_params()
            assert loaded.users_ == model.users_ and loaded.items_ == model.items_
            assert torch.equal(loaded.score(history, users), model.score(history, users))
            assert loaded.recommend(user_ids, k=5) == model.recommend(user_ids, k=5)
            items = planted.train.items.ids[:3]
            assert loaded.recommend_for_history(items, k=5) == model.recommend_for_history(items, k=5)

    def test_save_replaces_existing_directory(self, model, tmp_path):
        path = tmp_path / "model"
        model.save(path)
        model.save(path)  # overwrite in place
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary left behind
        assert _load_any(path, model).get_params() == model.get_params()

    # ---------------------------------------------------------------- 3. determinism
    def test_same_seed_same_results(self, planted):
        a = self.make_model().fit(planted.train)
        b = self.make_model().fit(planted.train)
        history = planted.train.matrix
        users = np.arange(planted.train.n_users)
        assert torch.equal(a.score(history, users), b.score(history, users))
        ids = planted.train.users.ids
        assert a.recommend(ids, k=7) == b.recommend(ids, k=7)

    # ---------------------------------------------------------------- 4. seen items
    def test_seen_items_excluded(self, planted, model):
        train = planted.train
        ids = train.users.ids
        seen = [set(train.items.ids_of(train.matrix[[u]].indices).tolist()) for u in range(train.n_users)]
        recs = model.recommend(ids, k=train.n_items)
        for rec, s in zip(recs, seen, strict=True):
            got = {i for i, _ in rec}
            assert not got & s
            assert len(rec) == train.n_items - len(s)  # every unseen item, and nothing else
        recs = model.recommend(ids, k=train.n_items, exclude_seen=False)
        for rec, s in zip(recs, seen, strict=True):
            assert {i for i, _ in rec} == set(train.items.ids.tolist()) >= s

    # ---------------------------------------------------------------- 5. shapes, dtypes, ids
    def test_score_shape_and_dtype(self, planted, model):
        history = planted.train.matrix[:7]
        scores = model.score(history, np.arange(7))
        assert scores.shape == (7, planted.train.n_items)
        assert scores.dtype == torch.float32
        assert torch.isfinite(scores).all()
        again = model.score(history, np.arange(7))
        model.rank(history, np.arange(7), 3)  # writes -inf into its own copy of the scores
        assert torch.equal(model.score(history, np.arange(7)), again), "score must return a fresh tensor"
        empty = model.score(sp.csr_array((2, planted.train.n_items), dtype=np.float32), None)
        assert empty.shape == (2, planted.train.n_items) and empty.dtype == torch.float32
        with pytest.raises(ValueError, match="item columns"):
            model.score(sp.csr_array((1, planted.train.n_items + 1), dtype=np.float32), None)

    def test_recommend_ids_and_order(self, planted, model):
        train = planted.train
        known = set(train.items.ids.tolist())
        ids = train.users.ids[:5]
        recs = model.recommend(ids, k=4)
        assert len(recs) == 5
        scores = model.score(train.matrix[:5], np.arange(5))
        for u, rec in enumerate(recs):
            assert len(rec) == 4
            assert all(isinstance(i, str) and i in known for i, _ in rec)  # plain Python ids
            values = [v for _, v in rec]
            assert values == sorted(values, reverse=True)
            expected = scores[u, train.items.index([i for i, _ in rec])]
            assert values == pytest.approx(expected.tolist())

    def test_recommend_for_new_user(self, planted, model):
        items = planted.train.items.ids[[0, 5, 11]].tolist()
        rec = model.recommend_for_history(items, k=6)
        assert len(rec) == 6
        got = [i for i, _ in rec]
        assert not set(got) & set(items) and len(set(got)) == 6
        values = [v for _, v in rec]
        assert values == sorted(values, reverse=True)
        assert len(model.recommend_for_history([], k=3)) == 3  # an empty history still gets an answer

    def test_unknown_ids_raise(self, model):
        with pytest.raises(UnknownIdError, match="nobody"):
            model.recommend(["nobody"])
        with pytest.raises(UnknownIdError, match="no-such-item") as err:
            model.recommend_for_history(["no-such-item"])
        assert err.value.missing == ["no-such-item"]

    # ---------------------------------------------------------------- 6. unfitted
    def test_unfitted_model_raises(self, planted, tmp_path):
        model = self.make_model()
        with pytest.raises(NotFittedError):
            model.score(planted.train.matrix, None)
        with pytest.raises(NotFittedError):
            model.recommend(planted.train.users.ids[:1])
        with pytest.raises(NotFittedError):
            model.recommend_for_history(planted.train.items.ids[:1])
        with pytest.raises(NotFittedError):
            model.save(tmp_path / "model")
        assert not list(tmp_path.iterdir())

    # ---------------------------------------------------------------- 7. parameters
    def test_params_round_trip(self):
        model = self.make_model()
        params = model.get_params()
        assert set(params) == set(type(model).param_specs())
        clone = type(model)(**params)
        assert clone.get_params() == params
        assert type(model).validate_params(params) == params
        json.dumps(params)  # they go into config.json
        assert repr(model).startswith(type(model).__name__ + "(")

    def test_invalid_params_rejected(self, planted):
        cls = type(self.make_model())
        with pytest.raises(InvalidParameterError, match="not_a_parameter"):
            cls.validate_params({"not_a_parameter": 1})
        for bad in self.invalid_params:
            (key,) = bad
            with pytest.raises(InvalidParameterError, match=key):
                cls.validate_params(bad)
            with pytest.raises(InvalidParameterError, match=key):
                self.make_model().set_params(**bad)
            model = cls(**{**self.make_model().get_params(), **bad})  # __init__ only stores
            with pytest.raises(InvalidParameterError, match=key):
                model.fit(planted.train)

    # ---------------------------------------------------------------- 8. fold-in
    def test_fold_in_matches_known_users(self, planted, model):
        if not type(model).folds_in_from_history:
            pytest.skip("scores depend on per-user state")
        history = planted.train.matrix
        users = np.arange(planted.train.n_users)
        assert torch.equal(model.score(history, None), model.score(history, users))
        # a new user with exactly a known user's (0/1) history gets that user's recommendations
        user = planted.train.users.ids[3]
        items = planted.train.items.ids_of(history[[3]].indices)
        known = model.recommend([user], k=5)[0]
        new = model.recommend_for_history(items, k=5)
        assert [i for i, _ in new] == [i for i, _ in known]
        assert [v for _, v in new] == pytest.approx([v for _, v in known])


@functools.cache
def _planted() -> Planted:
    return make_planted()


def _load_any(path: Path, model: BaseRecommender) -> BaseRecommender:
    """The saved model by the registry when its class is registered, else by its own class."""
    return load_model(path) if model.name in MODELS else type(model).load(path)
