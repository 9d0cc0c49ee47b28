"""What the engine computes, checked against the model itself: explanations (exact item-item weights for EASE, the
leave-one-out score drop otherwise), similar items, and batch scoring."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recforge.experiments.pipeline import reload_run
from recforge.serve.engine import Engine, Limits, Query
from recforge.serve.store import InteractionStore, StateMismatchError


def _engine(run_dir, tmp_path) -> Engine:
    config, model = reload_run(run_dir, device="cpu")
    return Engine(run_dir, config, model, InteractionStore(tmp_path, model.items_.ids.tolist()), Limits())


def test_ease_contributions_are_its_weights(run_dirs, tmp_path):
    engine = _engine(run_dirs["ease"], tmp_path)
    history = [50, 172, 181]
    answer = engine.recommend([Query(items=history, k=5, explain=True)])[0]
    weights = engine.model.item_weights().numpy()
    idx = engine.model.items_.index(history)
    for rec in answer["items"]:
        i = engine.model.items_.index([rec["item_id"]])[0]
        for b in rec["because"]:
            j = engine.model.items_.index([b["item_id"]])[0]
            assert b["contribution"] == pytest.approx(float(weights[j, i]), rel=1e-5)
        # the contributions of the whole basket add up to the score (EASE is linear)
        assert sum(weights[idx, i]) == pytest.approx(rec["score"], rel=1e-4)


def test_other_models_explain_by_leave_one_out(run_dirs, tmp_path):
    engine = _engine(run_dirs["multivae"], tmp_path)
    model = engine.model
    history = [50, 172, 181]
    answer = engine.recommend([Query(items=history, k=3, explain=True)])[0]
    idx = np.sort(model.items_.index(history))
    full = sp.csr_array((np.ones(3, np.float32), idx, [0, 3]), shape=(1, model.n_items))
    for rec in answer["items"]:
        i = model.items_.index([rec["item_id"]])[0]
        for b in rec["because"]:
            j = model.items_.index([b["item_id"]])[0]
            rest = idx[idx != j]
            loo = sp.csr_array((np.ones(2, np.float32), rest, [0, 2]), shape=(1, model.n_items))
            drop = float(model.score(full)[0, i] - model.score(loo)[0, i])
            assert b["contribution"] == pytest.approx(drop, rel=1e-4, abs=1e-6)


def test_similar_items_of_ease_are_the_row_of_b(run_dirs, tmp_path):
    engine = _engine(run_dirs["ease"], tmp_path)
    j = int(engine.model.items_.index([50])[0])
    row = engine.model.item_weights().numpy()[j].copy()
    row[j] = -np.inf
    best = np.argsort(-row)[:5]
    got = engine.similar(j, 5)
    assert [g["item_id"] for g in got] == engine.model.items_.ids[best].tolist()


def test_a_state_folder_of_another_model_is_refused(run_dirs, tmp_path):
    InteractionStore(tmp_path, [1, 2, 3])
    with pytest.raises(StateMismatchError, match="another model"):
        _engine(run_dirs["ease"], tmp_path)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_k"):
        Limits(max_k=0)
