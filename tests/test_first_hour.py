"""The first hour of a new user: a CSV with a rating column gets rating metrics and early stopping, and what a
newcomer looks for is in ``--help`` and the listings (config keys, split protocols, readable model descriptions,
checksums, the version), with readable logs and run listings."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from recforge.cli import runs as cli_runs
from recforge.experiments.runs import RunRegistry, RunWriter
from recforge.models.linear import EASE
from recforge.training.callbacks import EarlyStopping
from recforge.training.options import TrainingOptions
from tests.cli_runner import cli
from tests.test_bad_input import ratings_csv

DATA = os.environ.get("RECFORGE_DATA")


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    return ratings_csv(tmp_path_factory.mktemp("first-hour") / "events.csv", users=80, items=40)


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    return cli(monkeypatch, capsys, "run", *args)


# ---------------------------------------------------------------------------------------------- a CSV file
def test_a_csv_with_ratings_gets_rating_metrics_and_early_stopping(events, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    args = ["--dataset", str(events), "--model", "neumf", "--set", "model.max_epochs=3", "--output-dir", str(out)]
    code, _, err = _run(monkeypatch, capsys, *args, "--set", "run.name=n")
    assert code == 0, err
    run = out / "n"
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["rating_col"] == "rating"  # the file's rating column, used without being asked
    assert config["data"]["timestamp_col"] == "timestamp"
    assert config["split"] == {"protocol": "random", "valid": 0.1}  # a validation part for early stopping
    assert "data.rating_col = 'rating'" in err and "split.valid = 0.1" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"valid", "test"} <= set(metrics)
    assert 0 < metrics["test"]["metrics"]["rating_rmse"] < 3
    log = pd.read_csv(run / "training_log.csv")
    assert {"patience", "valid_rmse"} <= set(log.columns)
    source = json.loads((run / "split.json").read_text())["data_source"]
    assert source == {"path": str(events.resolve())}  # where the data came from


def test_the_rating_column_can_be_ignored_and_other_models_get_no_validation_part(
    events, tmp_path, monkeypatch, capsys
):
    out = ["--output-dir", str(tmp_path / "runs")]
    code, _, err = _run(
        monkeypatch, capsys, "--dataset", str(events), "--model", "ease", "--set", "data.rating_col=''", *out
    )
    assert code == 0, err
    (metrics,) = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/metrics.json")]
    assert set(metrics) == {"test", "fit"}  # EASE does not stop early: all the training data trains
    assert not any(k.startswith("rating_") for k in metrics["test"]["metrics"])


def test_a_split_without_validation_part_says_early_stopping_is_off(events, tmp_path, monkeypatch, capsys):
    args = ["--dataset", str(events), "--model", "neumf", "--set", "model.max_epochs=1", "--split", "temporal"]
    code, _, err = _run(monkeypatch, capsys, *args, "--output-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert "no validation part: early stopping is off" in err and "split.valid=0.1" in err


def test_log_lines_are_never_hard_wrapped(events, tmp_path, monkeypatch, capsys):
    code, _, err = _run(
        monkeypatch, capsys, "--dataset", str(events), "--model", "popularity", "--output-dir", str(tmp_path)
    )
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("split random:")]
    assert len(line) > 120 and json.loads(line.removeprefix("split random: "))["test_users"] > 0


def test_recommend_takes_ratings_with_items(events, tmp_path, monkeypatch, capsys):
    args = ["--dataset", str(events), "--model", "ease", "--set", "model.l2=10", "--set", "run.name=e"]
    assert _run(monkeypatch, capsys, *args, "--output-dir", str(tmp_path))[0] == 0
    runs = []
    for items in ("5:1,7:5", "5:5,7:1"):
        code, out, err = cli(monkeypatch, capsys, "recommend", str(tmp_path / "e"), "--items", items, "-k", "5")
        assert code == 0, err
        runs.append(json.loads(out))
    assert runs[0]["history"] == ["5", "7"] and runs[0]["ratings"] == [1.0, 5.0]  # ids as the file writes them
    assert runs[0]["scores"] != runs[1]["scores"]  # the ratings weigh in


# ---------------------------------------------------------------------------------------------- discoverable
def test_run_help_lists_the_config_keys(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "run", "--help")
    assert code == 0
    text = " ".join(out.split())
    for key in ("data.path", "data.rating_col", "data.user_col", "training.device", "run.name", "evaluation.metrics"):
        assert key in text, key
    assert "recforge splits list" in text and "recforge models info" in text and "events.csv" in text


def test_version(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("recforge 0.")


def test_splits_list_shows_protocols_parameters_and_presets(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "splits", "list")
    text = " ".join(out.split())
    assert code == 0
    assert "liang2018" in text and "heldout_users (required)" in text and "valid_fraction" in text
    assert "random_70_20_10" in text and "test=0.2" in text


def test_models_info_is_readable(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "models", "info", "ease")
    assert code == 0
    assert "λ" in out and "Xᵀ X" in out
    for noise in ("\\frac", "\\lambda", ".. math::", ":math:", "``", "inspect._empty"):
        assert noise not in out, noise
    code, out, _ = cli(monkeypatch, capsys, "models", "info", "biasedmf")
    assert code == 0 and "one of 'adam', 'sparse_adam', 'sgd'" in out and ":math:" not in out
    code, out, _ = cli(monkeypatch, capsys, "models", "info", "multivae")
    assert code == 0 and "float (> 0.0) | None" in out
    code, out, _ = cli(monkeypatch, capsys, "models", "info", "hybridneumf")
    (row,) = [line for line in out.splitlines() if line.startswith("│ item_embeddings ")]
    assert code == 0 and "required" in row


def test_datasets_info_shows_the_checksums(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "datasets", "info", "ml-100k")
    info = json.loads(out)
    assert code == 0 and info["check_sha256"].startswith("06416e59") and "sha256" in info


def test_slow_marker_selects_the_long_real_data_tests():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "slow:" in text and "-m slow" in text
    marks = test_readme_csv_flow_on_movielens_latest_small.pytestmark  # type: ignore[attr-defined]
    assert "slow" in {m.name for m in marks}


# ---------------------------------------------------------------------------------------------- training
def test_early_stopping_needs_a_relative_improvement_by_default():
    class Trainer:
        should_stop = False

    trainer, cb = Trainer(), EarlyStopping("valid_rmse", mode="min", patience=2)
    for epoch, value in enumerate([0.9, 0.899999, 0.899998, 0.899997]):  # noqa: B007 - 1e-6 better each epoch
        logs = {"valid_rmse": value}
        cb.on_epoch_end(trainer, logs)
        if trainer.should_stop:
            break
    assert trainer.should_stop and epoch == 3 and cb.best == 0.9
    trainer, absolute = Trainer(), EarlyStopping("valid_rmse", mode="min", patience=2, min_delta=0.0)
    for value in [0.9, 0.899999, 0.899998, 0.899997]:
        absolute.on_epoch_end(trainer, {"valid_rmse": value})
    assert not trainer.should_stop and math.isclose(absolute.best, 0.899997)


def test_ease_logs_its_stages(planted):
    lines: list[str] = []
    EASE(l2=10.0).fit(planted.train, options=TrainingOptions(device="cpu", log=lines.append))
    assert any("Gram" in line for line in lines) and any("inversion done" in line for line in lines)


# ---------------------------------------------------------------------------------------------- runs list
def test_runs_list_keeps_ids_whole_and_metrics_short(tmp_path, monkeypatch, capsys):
    run_id = "20261201-120000-a-rather-long-dataset-name-multivae-0f3a"
    writer = RunWriter(tmp_path, run_id)
    writer.write_json("config.json", {"data": {"path": "events.csv"}, "split": {"protocol": "random"}, "model": {}})
    writer.write_json("metrics.json", {"test": {"metrics": {"ndcg@100": 0.47371234567891234, "recall@20": 0.42}}})
    writer.commit()
    assert [r["id"] for r in RunRegistry(tmp_path).list()] == [run_id]
    buffer = io.StringIO()
    monkeypatch.setattr(cli_runs, "out", Console(file=buffer, width=80))
    code, _, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(tmp_path))
    text = buffer.getvalue()
    short = "a-rather-long-dataset-name-multivae-0f3a"  # the id without its time stamp, whole
    assert code == 0 and short in text and run_id not in text and "ndcg@100 0.4737" in text and "0.47371" not in text
    assert max(len(line) for line in text.splitlines()) <= 80 + len(short)
    buffer.truncate(0)
    code, _, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(tmp_path), "--full-ids")
    assert code == 0 and run_id in buffer.getvalue()


# ---------------------------------------------------------------------------------------------- slow: the README
@pytest.mark.slow
@pytest.mark.skipif(
    not DATA or not (Path(DATA) / "ml-latest-small" / "ratings.csv").exists(), reason="RECFORGE_DATA not set"
)
def test_readme_csv_flow_on_movielens_latest_small(tmp_path, monkeypatch, capsys):
    """The README's CSV example as a new user runs it: NeuMF on a ratings file, nothing but the column names set."""
    ratings = Path(DATA) / "ml-latest-small" / "ratings.csv"
    args = ["--dataset", str(ratings), "--set", "data.user_col=userId", "--set", "data.item_col=movieId"]
    code, _, err = _run(monkeypatch, capsys, *args, "--model", "neumf", "--output-dir", str(tmp_path / "runs"))
    assert code == 0, err[-3000:]
    (run,) = (tmp_path / "runs").glob("*/metrics.json")
    metrics = json.loads(run.read_text())
    assert metrics["test"]["metrics"]["rating_rmse"] < 1.0  # ratings used: not the all-ones targets
    log = pd.read_csv(run.parent / "training_log.csv")
    assert "patience" in log.columns and len(log) < 20  # early stopping on the validation part stopped it
