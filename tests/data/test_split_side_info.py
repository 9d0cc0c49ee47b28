"""Item side information (tags, genres) survives every split protocol, aligned with each part's item id map; on
ML-100K, CMultiVAE (which needs ``item_info['genres']``) runs under the Mult-VAE paper's own ``liang2018``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.interactions import Interactions
from recforge.data.readers import RawDataset
from recforge.data.splits import SPLITS, liang2018, predefined_split


def events(n_users=30, n_items=12, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        (u, int(i), float(rng.integers(1, 50))) for u in range(n_users) for i in rng.choice(n_items, 8, replace=False)
    ]
    return pd.DataFrame(rows, columns=["user", "item", "weight"])


INFO = pd.DataFrame({"tags": [[f"tag{i % 3}", "x"] for i in range(12)]}, index=pd.Index(range(12), name="item"))


def check_aligned(data: Interactions) -> None:
    assert data.item_info is not None and len(data.item_info) == data.n_items
    for i, item in enumerate(data.items.ids):
        assert data.item_info["tags"].iloc[i] == [f"tag{int(item) % 3}", "x"]


@pytest.mark.parametrize("source", ["raw", "interactions"])
def test_liang2018_keeps_item_info(source):
    frame = events()
    data = RawDataset("t", frame, INFO) if source == "raw" else Interactions.from_frame(frame, item_info=INFO)
    split = liang2018(data, heldout_users=5, rating_col="weight", min_rating=0, value_col="weight", seed=1)
    for part in (split.train, split.valid.history, split.valid.target, split.test.history, split.test.target):
        check_aligned(part)
    assert split.train.values.max() > 1  # value_col keeps the play counts as weights


@pytest.mark.parametrize("protocol", ["random", "every_nth", "leave_last_out", "temporal", "heldout_users"])
def test_every_interactions_protocol_keeps_item_info(protocol):
    data = Interactions.from_frame(events().assign(timestamp=np.arange(240)), item_info=INFO)
    params = {"heldout_users": {"n_heldout": 3}, "every_nth": {"n": 4}}.get(protocol, {})
    split = SPLITS[protocol](data, **params)
    for part in (split.train, split.test.history, split.test.target):
        check_aligned(part)


def test_predefined_split_keeps_item_info():
    frame = events()
    test = np.arange(len(frame)) % 5 == 0
    split = predefined_split(frame[~test], frame[test], item_info=INFO)
    for part in (split.train, split.test.history, split.test.target):
        check_aligned(part)


def test_cmultivae_runs_under_liang2018_on_ml100k(tmp_path):
    root = os.environ.get("RECFORGE_DATA")
    if not root or not (Path(root) / "ml-100k" / "u.data").is_file():
        pytest.skip("set RECFORGE_DATA to the folder holding ml-100k/ to run real-data tests")
    from recforge.experiments.config import load_config
    from recforge.experiments.pipeline import run_experiment

    cfg = load_config(
        None,
        [
            'data.dataset="ml-100k"',
            f'data.data_dir="{root}"',
            'split.protocol="liang2018"',
            "split.heldout_users=50",
            'model.name="cmultivae"',
            "model.hidden_dims=[32, 8]",
            "model.max_epochs=2",
            f'run.output_dir="{tmp_path}"',
        ],
    )
    result = run_experiment(cfg)
    assert result.metrics["test"]["n_users"] > 0
    assert 0 < result.metrics["test"]["metrics"]["ndcg@100"] <= 1
