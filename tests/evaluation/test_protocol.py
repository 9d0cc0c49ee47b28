"""Issue 20: test input and test exclusion are two choices; both protocols give lists that an independent evaluator
accepts (no excluded item, the same NDCG), named in metrics.json; `recommend --all-users` can give either."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.cli_runner import cli

from recforge.data.interactions import Interactions
from recforge.data.splits import random_split
from recforge.evaluation.evaluate import evaluate_ranking, evaluate_ratings
from recforge.evaluation.protocol import DEFAULT_PROTOCOL, TestProtocol, apply_protocol, part_lists
from recforge.experiments.pipeline import read_config, rebuild_split
from recforge.metrics import NDCG
from recforge.metrics.rating import RMSE
from recforge.models.linear import EASE
from recforge.models.mf import BiasedMF

PROTOCOLS = [TestProtocol("train+valid", "input"), TestProtocol("train", "train+valid"), TestProtocol("train", "input")]


def implicit_events(users: int = 80, items: int = 50, per_user: int = 15, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        block = (u % 3) * (items // 3)  # three tastes, so that a model learns something
        liked = rng.choice(np.arange(block, block + items // 3), per_user - 3, replace=False)
        noise = rng.choice(items, 3, replace=False)
        for i in {*liked.tolist(), *noise.tolist()}:
            rows.append((f"u{u}", f"i{i:03d}", 1.0))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


def independent_ndcg(lists: dict, targets: dict, excluded: dict, k: int) -> float:
    """A plain-Python evaluator: refuses a list holding an excluded item, then binary NDCG@k over users."""
    values = []
    for user, relevant in targets.items():
        ranked = lists[user][:k]
        bad = set(ranked) & excluded.get(user, set())
        if bad:
            raise AssertionError(f"user {user}: the list holds excluded item(s) {sorted(bad)}")
        if len(ranked) != len(set(ranked)):
            raise AssertionError(f"user {user}: an item is listed twice")
        dcg = sum(1 / math.log2(r + 2) for r, item in enumerate(ranked) if item in relevant)
        ideal = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        values.append(dcg / ideal)
    return float(np.mean(values))


def by_user(data: Interactions) -> dict:
    frame = data.to_frame()
    return {u: set(g["item"]) for u, g in frame.groupby("user")}


@pytest.fixture(scope="module")
def split():
    return random_split(Interactions.from_frame(implicit_events()), test=0.2, valid=0.1, seed=1)


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: f"{p.input}-{p.exclude}")
def test_every_protocol_gives_lists_an_independent_evaluator_accepts(split, protocol):
    model = EASE(l2=5.0).fit(split.train)
    evaluated = apply_protocol(split, protocol)
    result = evaluate_ranking(model, evaluated.part, [NDCG(10)], exclude=evaluated.exclude)
    lists = part_lists(model, evaluated, k=10)
    train, valid = by_user(split.train), by_user(split.valid.target)
    excluded = {
        u: train.get(u, set()) | (valid.get(u, set()) if protocol.excluded == "train+valid" else set()) for u in lists
    }
    targets = by_user(split.test.target)
    assert independent_ndcg(lists, targets, excluded, 10) == pytest.approx(result.metrics["ndcg@10"], abs=1e-6)
    assert evaluated.protocol == protocol.to_json()


def test_the_default_protocol_is_the_former_evaluation(split):
    model = EASE(l2=5.0).fit(split.train)
    evaluated = apply_protocol(split, DEFAULT_PROTOCOL)
    assert evaluated.part is split.test and evaluated.exclude is None
    assert DEFAULT_PROTOCOL.to_json() == {"input": "train+valid", "exclude": "train+valid"}
    before = evaluate_ranking(model, split.test, [NDCG(10)]).metrics
    assert evaluate_ranking(model, evaluated.part, [NDCG(10)]).metrics == before


def test_excluding_only_the_training_items_lists_validation_items(split):
    """input=train, exclude=input: what `recommend --all-users` gives by default: validation items come back."""
    model = EASE(l2=5.0).fit(split.train)
    lists = part_lists(model, apply_protocol(split, TestProtocol("train", "input")), k=20)
    valid = by_user(split.valid.target)
    assert any(set(items) & valid.get(u, set()) for u, items in lists.items())
    strict = part_lists(model, apply_protocol(split, TestProtocol("train", "train+valid")), k=20)
    assert not any(set(items) & valid.get(u, set()) for u, items in strict.items())


def test_a_bad_protocol_is_refused():
    with pytest.raises(ValueError, match="test input must be one of"):
        TestProtocol("valid", "input")
    with pytest.raises(ValueError, match="test exclusion must be one of"):
        TestProtocol("train", "test")


def test_rating_evaluation_warns_about_nothing():
    """Every rating evaluation used to print torch's "The given NumPy array is not writable"."""
    frame = implicit_events().assign(rating=lambda f: (np.arange(len(f)) % 5 + 1).astype(float))
    data = Interactions.from_frame(frame)
    parts = random_split(data, test=0.2, seed=0)
    model = BiasedMF(embedding_dim=4, max_epochs=2).fit(parts.train)
    part = parts.test
    read_only = part.target.values
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_ratings(model, part, [RMSE()])
    assert math.isfinite(result.metrics["rmse"])


# ------------------------------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("protocol") / "events.csv"
    implicit_events().to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("test_input", "test_exclude", "recommend_args"),
    [
        ("train+valid", "input", ["--input", "train+valid"]),
        ("train", "train+valid", ["--input", "train", "--exclude", "train+valid"]),
    ],
)
def test_metrics_json_names_the_protocol_and_recommend_reproduces_its_lists(
    csv, tmp_path, monkeypatch, capsys, test_input, test_exclude, recommend_args
):
    out = tmp_path / "runs"
    args = ["run", "--dataset", str(csv), "--model", "ease", "--set", "model.l2=5", "--set", "split.valid=0.1"]
    args += ["--set", f"evaluation.test_input={test_input}", "--set", f'evaluation.test_exclude="{test_exclude}"']
    args += ["--set", "evaluation.metrics=['ndcg@10']", "--output-dir", str(out), "--set", "run.name=r"]
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 0, err
    run = out / "r"
    config = json.loads((run / "config.json").read_text())
    assert (config["evaluation"]["test_input"], config["evaluation"]["test_exclude"]) == (test_input, test_exclude)
    metrics = json.loads((run / "metrics.json").read_text())
    expected = TestProtocol(test_input, test_exclude).to_json()
    assert metrics["test"]["protocol"] == expected
    assert metrics["valid"]["protocol"] == {"input": "train", "exclude": "train"}
    recs = tmp_path / "recs.jsonl"
    code, _, err = cli(
        monkeypatch, capsys, "recommend", str(run), "--all-users", "-k", "10", *recommend_args, "--output", str(recs)
    )
    assert code == 0, err
    lists = {r["user_id"]: r["items"] for r in map(json.loads, recs.read_text().splitlines())}
    split = rebuild_split(read_config(run))
    train, valid, targets = by_user(split.train), by_user(split.valid.target), by_user(split.test.target)
    excluded = {u: train.get(u, set()) | valid.get(u, set()) for u in lists}  # both protocols exclude train+valid
    got = independent_ndcg(lists, targets, excluded, 10)
    assert got == pytest.approx(metrics["test"]["metrics"]["ndcg@10"], abs=1e-6)
    code, _, err = cli(monkeypatch, capsys, "evaluate", str(run))
    assert code == 0, err


def test_recommend_refuses_a_protocol_for_new_users(csv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    args = ["run", "--dataset", str(csv), "--model", "popularity", "--output-dir", str(out), "--set", "run.name=p"]
    assert cli(monkeypatch, capsys, *args)[0] == 0
    code, _, err = cli(monkeypatch, capsys, "recommend", str(out / "p"), "--items", "i001", "--input", "train+valid")
    assert code == 2 and "--items" in err
    code, _, err = cli(monkeypatch, capsys, "recommend", str(out / "p"), "--all-users", "--exclude", "valid")
    assert code == 2 and "test exclusion must be one of" in err
