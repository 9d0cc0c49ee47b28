"""The base class's own behaviour, through a tiny stand-in model and the registry."""

from __future__ import annotations

import json
import os
import struct
from typing import Annotated, ClassVar

import numpy as np
import pandas as pd
import pydantic
import pytest
import scipy.sparse as sp
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recforge.data.ids import IdMap, UnknownIdError
from recforge.data.interactions import Interactions
from recforge.data.splits import EvalPart
from recforge.evaluation.ranking import exclude_items_, top_k
from recforge.models import base
from recforge.models.autoencoders import MultiDAE
from recforge.models.base import (
    BaseRecommender,
    InvalidParameterError,
    ModelFileError,
    NotFittedError,
    Recommender,
    csr_to_torch,
)
from recforge.models.linear import EASE
from recforge.models.neighbors import ItemKNN
from recforge.models.popularity import Popularity
from recforge.models.registry import MODELS, create_model, load_model, model_class
from recforge.training.options import resolve_device


class Ramp(BaseRecommender):
    """Item ``i`` scores ``slope * i`` plus the sum of the history row: easy to predict by hand."""

    name: ClassVar[str] = "ramp"

    def __init__(
        self,
        *,
        slope: Annotated[float, pydantic.Field(gt=0)] = 1.0,
        window: Annotated[int, pydantic.Field(ge=1)] = 3,
    ):
        self.slope = slope
        self.window = window

    def _fit(self, train, valid, options):
        self.ramp_ = torch.arange(train.n_items, dtype=torch.float32) * self.slope

    def score(self, history, users=None):
        history = self._check_history(history, users)
        row_sums = torch.from_numpy(np.asarray(history.sum(axis=1), dtype=np.float32)).reshape(-1, 1)
        return self.ramp_.expand(history.shape[0], -1) + row_sums

    def _state(self):
        return {"ramp": self.ramp_}

    def _load_state(self, tensors):
        self.ramp_ = tensors["ramp"]


@pytest.fixture
def train() -> Interactions:
    frame = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": [10, 30, 20, 40]})
    return Interactions.from_frame(frame)


# ------------------------------------------------------------------ unfitted
def test_unfitted_errors_name_the_class(train, tmp_path):
    model = Ramp()
    for call in (
        lambda: model.check_fitted(),
        lambda: model.n_items,
        lambda: model.score(train.matrix, None),
        lambda: model.recommend(["a"]),
        lambda: model.recommend_for_history([10]),
        lambda: model.save(tmp_path / "m"),
    ):
        with pytest.raises(NotFittedError, match="Ramp is not fitted"):
            call()


def test_fit_refuses_empty_training_and_mismatched_validation(train):
    empty = train.select(np.zeros(len(train), dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        Ramp().fit(empty)
    other_items = Interactions.from_frame(pd.DataFrame({"user": ["a"], "item": [99]}), users=train.users)
    with pytest.raises(ValueError, match="item id map"):
        Ramp().fit(train, valid=EvalPart(history=other_items, target=other_items, known_users=True))


# ------------------------------------------------------------------ parameters
def test_param_specs_and_get_params():
    assert list(Ramp.param_specs()) == ["slope", "window"]
    assert Ramp(slope=2.0).get_params() == {"slope": 2.0, "window": 3}
    assert repr(Ramp(window=5)) == "Ramp(slope=1.0, window=5)"


def test_validate_params_names_the_field():
    with pytest.raises(InvalidParameterError, match=r"ramp\.slope=-1"):
        Ramp.validate_params({"slope": -1})
    with pytest.raises(InvalidParameterError, match=r"no parameter 'slop'.*known: slope, window"):
        Ramp.validate_params({"slop": 1})
    with pytest.raises(InvalidParameterError, match="window"):
        Ramp.validate_params({"window": "many"})
    assert Ramp.validate_params({"slope": "2.5", "window": 4.0}) == {"slope": 2.5, "window": 4}


def test_set_params_validates_and_keeps_state(train):
    model = Ramp().fit(train)
    with pytest.raises(InvalidParameterError):
        model.set_params(window=0)
    assert model.set_params(slope=3.0) is model and model.slope == 3.0
    assert torch.equal(model.ramp_, torch.arange(4, dtype=torch.float32))  # refit needed to change it


def test_fit_validates_before_learning(train):
    model = Ramp(slope=0.0)
    with pytest.raises(InvalidParameterError, match="slope"):
        model.fit(train)
    with pytest.raises(NotFittedError):
        model.check_fitted()


# ------------------------------------------------------------------ recommending
def test_recommend_by_hand(train):
    model = Ramp().fit(train)
    # user a saw items 10 and 30 (indices 0 and 2); scores are index + 2
    assert model.recommend(["a"], k=2) == [[(40, 5.0), (20, 3.0)]]
    assert model.recommend(["a"], k=2, exclude_seen=False) == [[(40, 5.0), (30, 4.0)]]
    assert model.recommend(["a"], k=10) == [[(40, 5.0), (20, 3.0)]]  # only what is left, no padding
    assert model.recommend_for_history([40, 20], k=3) == [(30, 4.0), (10, 2.0)]
    (rec,) = model.recommend(["b"], k=1)
    assert type(rec[0][0]) is int and type(rec[0][1]) is float  # plain Python values (JSON-ready)


def test_recommend_batches_give_the_same_answer(train):
    model = Ramp().fit(train)
    ids = ["c", "a", "b", "a"]
    assert model.recommend(ids, k=2, batch_size=1) == model.recommend(ids, k=2)


def test_string_item_ids_come_back_as_str():
    frame = pd.DataFrame({"user": [1, 1, 2], "item": ["x", "y", "z"]})
    model = Ramp().fit(Interactions.from_frame(frame))
    rec = model.recommend([2], k=2)[0]
    assert rec == [("y", 2.0), ("x", 1.0)] and all(type(i) is str for i, _ in rec)


def test_unknown_ids_list_only_the_unknown(train):
    model = Ramp().fit(train)
    with pytest.raises(UnknownIdError, match=r"unknown user id.*zed") as err:
        model.recommend(["a", "zed"])
    assert err.value.missing == ["zed"]
    with pytest.raises(UnknownIdError, match=r"unknown item id.*777"):
        model.recommend_for_history([10, 777])


def test_bad_k_and_history_shape(train):
    model = Ramp().fit(train)
    with pytest.raises(ValueError, match="k must be"):
        model.recommend(["a"], k=0)
    with pytest.raises(ValueError, match="k must be"):
        model.recommend_for_history([10], k=0)
    with pytest.raises(ValueError, match="2 user indices for 1 history rows"):
        model.score(train.matrix[:1], np.array([0, 1]))


def test_helpers():
    scores = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    exclude_items_(scores, sp.csr_array(np.array([[0, 1, 0], [1, 1, 0]], dtype=np.float32)))
    values, indices = top_k(scores, 3)
    assert indices.tolist() == [[2, 0, -1], [2, -1, -1]]
    assert values[0, :2].tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="shape"):
        exclude_items_(scores, sp.csr_array((1, 3), dtype=np.float32))
    m = sp.csr_array(np.array([[0, 2.5, 0], [1, 0, 0]], dtype=np.float32))
    assert torch.equal(csr_to_torch(m, dense=True), torch.from_numpy(m.toarray()))
    assert resolve_device("cpu") == torch.device("cpu")
    assert isinstance(resolve_device("auto"), torch.device)


def test_models_speak_the_protocol():
    for cls in MODELS.values():
        required = [n for n, p in cls.param_specs().items() if p.default is p.empty]
        model = cls(**dict.fromkeys(required, "placeholder"))  # e.g. HybridNeuMF's embedding file
        assert isinstance(model, Recommender), cls


# ------------------------------------------------------------------ persistence
def test_save_load_by_hand(train, tmp_path):
    model = Ramp(slope=2.0).fit(train)
    path = tmp_path / "nested" / "ramp"
    model.save(path)
    config = json.loads((path / "config.json").read_text())
    params = {"slope": 2.0, "window": 3}
    assert config == {"format": base.FORMAT_VERSION, "model": "ramp", "params": params, "state_info": {}}
    loaded = Ramp.load(path)
    assert loaded.get_params() == model.get_params()
    assert loaded.users_ == train.users and loaded.items_ == train.items
    assert (loaded.history_ != train.matrix).nnz == 0
    assert loaded.recommend(["a", "b"], k=3) == model.recommend(["a", "b"], k=3)


def test_save_is_atomic_when_writing_fails(train, tmp_path, monkeypatch):
    path = tmp_path / "ramp"
    Ramp(slope=1.0).fit(train).save(path)
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(base, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        Ramp(slope=5.0).fit(train).save(path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # the old model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ramp"]  # and no temporary is left


def test_save_replaces_and_survives_stale_leftovers(train, tmp_path):
    path = tmp_path / "ramp"
    Ramp(slope=1.0).fit(train).save(path)
    (tmp_path / ".ramp.old").mkdir()  # what an interrupted save of an older version could leave
    (tmp_path / ".ramp.old" / "junk").write_text("x")
    Ramp(slope=7.0).fit(train).save(path)
    assert Ramp.load(path).slope == 7.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ramp.old", "ramp"]


def test_saved_directory_follows_umask(train, tmp_path):
    old = os.umask(0o022)
    try:
        Ramp().fit(train).save(tmp_path / "ramp")
    finally:
        os.umask(old)
    assert (tmp_path / "ramp").stat().st_mode & 0o777 == 0o755  # readable by a server running as another user


def test_load_errors(train, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing config\.json"):
        Ramp.load(tmp_path)
    Ramp().fit(train).save(tmp_path / "ramp")
    with pytest.raises(ValueError, match="holds a 'ramp' model, not 'ease'"):
        EASE.load(tmp_path / "ramp")
    with pytest.raises(ValueError, match="unknown model 'ramp'"):
        load_model(tmp_path / "ramp")  # not registered


# ------------------------------------------------------------------ registry
def test_registry():
    assert {"popularity": Popularity, "itemknn": ItemKNN, "ease": EASE}.items() <= dict(MODELS).items()
    assert all(name == cls.name for name, cls in MODELS.items())
    assert model_class("EASE") is EASE
    with pytest.raises(ValueError, match=r"known models: .*ease.*itemknn.*popularity"):
        model_class("slim")
    model = create_model("itemknn", n_neighbors="20")
    assert isinstance(model, ItemKNN) and model.n_neighbors == 20
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        create_model("itemknn", n_neighbors=-1)


def test_load_model_needs_a_model_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing config\.json"):
        load_model(tmp_path)


def test_id_maps_survive_a_round_trip(tmp_path):
    ids = IdMap(["b", "a"], kind="item")
    assert IdMap.from_json(json.loads(json.dumps(ids.to_json()))) == ids


# ------------------------------------------------------------------ damaged or edited model files
def test_saved_weights_follow_umask_like_the_other_files(train, tmp_path):
    old = os.umask(0o022)
    try:
        Ramp().fit(train).save(tmp_path / "ramp")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "ramp").iterdir()}
    assert modes == {"config.json": 0o644, "ids.json": 0o644, "weights.safetensors": 0o644}  # not safetensors' 0600


def _resave(path, edit):
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata=meta)


def _swap_first_items(model_dir):
    ids = json.loads((model_dir / "ids.json").read_text())
    ids["items"]["ids"][:2] = ids["items"]["ids"][1::-1]
    (model_dir / "ids.json").write_text(json.dumps(ids))


DAMAGE = {
    "truncated": (lambda d: (d / "weights.safetensors").write_bytes((d / "weights.safetensors").read_bytes()[:50])),
    "pickle": (lambda d: torch.save({"ramp": torch.zeros(4)}, d / "weights.safetensors")),
    "huge header": (lambda d: (d / "weights.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + b"{}")),
    "random bytes": (lambda d: (d / "weights.safetensors").write_bytes(np.random.default_rng(0).bytes(256))),
    "missing tensor": (lambda d: _resave(d / "weights.safetensors", lambda t: t.pop("state.ramp"))),
    "missing history": (lambda d: _resave(d / "weights.safetensors", lambda t: t.pop("history.data"))),
    "longer layer": (lambda d: _resave(d / "weights.safetensors", lambda t: t.update({"state.ramp": torch.zeros(9)}))),
    "edited ids": _swap_first_items,
    "ids not JSON": (lambda d: (d / "ids.json").write_text("[1, 2")),
    "config not JSON": (lambda d: (d / "config.json").write_text("{")),
    "bad parameter": (lambda d: (d / "config.json").write_text('{"model": "ramp", "params": {"slope": -1}}')),
}
NAMED = {
    "edited ids": "ids.json",
    "ids not JSON": "ids.json",
    "config not JSON": "config.json",
    "bad parameter": "config.json",
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_model_file_is_one_clear_error_naming_it(train, tmp_path, damage):
    path = tmp_path / "ramp"
    Ramp().fit(train).save(path)
    DAMAGE[damage](path)
    with pytest.raises(ModelFileError) as err:
        Ramp.load(path)
    assert str(path / NAMED.get(damage, "weights.safetensors")) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_changed_layer_size_of_a_neural_model_is_named(planted, tmp_path):
    path = tmp_path / "dae"
    MultiDAE(hidden_dims=(4,), max_epochs=1, batch_size=32).fit(planted.train).save(path)
    config = json.loads((path / "config.json").read_text())
    config["params"]["hidden_dims"] = [5]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match=r"weights\.safetensors does not fit the model .*size mismatch"):
        load_model(path)


def test_models_saved_without_an_id_digest_still_load(train, tmp_path):
    path = tmp_path / "ramp"
    Ramp().fit(train).save(path)
    tensors = load_file(path / "weights.safetensors")
    save_file(tensors, path / "weights.safetensors")  # no metadata: as saved before the digest existed
    assert Ramp.load(path).recommend(["a"], k=1) == [[(40, 5.0)]]
    with safe_open(str(tmp_path / "ramp" / "weights.safetensors"), "pt") as f:
        assert f.metadata() is None or base.IDS_DIGEST_KEY not in f.metadata()
