"""`recforge runs list / show / rm`: filters, sorting, short ids, and deleting a run with its registry row."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from recforge.experiments import runs as runs_module
from recforge.experiments.config import ExperimentConfig
from recforge.experiments.pipeline import run_experiment
from recforge.experiments.runs import RunRegistry, resolve_run, short_id
from tests.cli_runner import cli


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, planted_csv) -> Path:
    """ease (study s), popularity, ease again, on the planted CSV (random split with a validation part)."""
    out = tmp_path_factory.mktemp("runs")
    for model, study in (("ease", "s"), ("popularity", None), ("ease", None)):
        tree = {
            "data": {"path": str(planted_csv)},
            "split": {"protocol": "random", "valid": 0.2},
            "model": {"name": model},
            "evaluation": {"metrics": ["ndcg@10", "recall@10"]},
            "run": {"output_dir": str(out), **({"study": study} if study else {})},
        }
        run_experiment(ExperimentConfig.model_validate(tree))
    return out


def test_short_ids_and_resolution(three_runs):
    ids = sorted(p.name for p in three_runs.iterdir() if p.is_dir() and not p.name.startswith("."))
    pop = next(i for i in ids if "popularity" in i)
    assert short_id(pop) == pop.split("-", 2)[2] and short_id("my-run") == "my-run"
    assert resolve_run(short_id(pop), three_runs) == three_runs / pop
    assert resolve_run(three_runs / pop) == three_runs / pop
    assert resolve_run(pop, three_runs) == three_runs / pop
    with pytest.raises(ValueError, match=r"ambiguous.*2 runs match"):
        resolve_run("events-ease", three_runs)
    with pytest.raises(FileNotFoundError, match="no run 'nope'"):
        resolve_run("nope", three_runs)


def test_runs_list_filters_sorts_and_rounds(three_runs, monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(three_runs))
    assert code == 0 and out.count("events-") == 3
    assert "2026" not in out.split("┃ run")[1][:10] and "0.0000000" not in out  # short ids, rounded metrics
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(three_runs), "--model", "popularity")
    assert code == 0 and out.count("events-popularity") == 1 and "events-ease" not in out
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(three_runs), "--study", "s")
    assert code == 0 and out.count("events-ease") == 1 and "popularity" not in out
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(three_runs), "--dataset", "other")
    assert code == 0 and "events-" not in out
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(three_runs), "--sort", "ndcg@10")
    rows = [line for line in out.splitlines() if "events-" in line]
    values = [float(line.split("│")[6]) for line in rows]  # run, dataset, split, model, study, ndcg@10
    assert code == 0 and values == sorted(values, reverse=True)
    code, _, err = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(three_runs), "--sort", "mrr@3")
    assert code == 2 and "mrr@3" in err


def test_runs_show_prints_config_split_metrics_and_files(three_runs, monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "runs", "show", "events-popularity", "--output-dir", str(three_runs))
    assert code == 0
    for text in ("model.name", '"popularity"', "fingerprint", "train_users", "ndcg@10", "per_user_test.csv"):
        assert text in out, text


def test_runs_rm_deletes_folder_and_row_together(tmp_path, planted_csv, monkeypatch, capsys):
    out = tmp_path / "runs"
    tree = {
        "data": {"path": str(planted_csv)},
        "split": {"protocol": "random"},
        "model": {"name": "popularity"},
        "run": {"output_dir": str(out), "name": "doomed"},
    }
    run_experiment(ExperimentConfig.model_validate(tree))
    real = os.replace

    def failing(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(runs_module.os, "replace", failing)
    code, _, err = cli(monkeypatch, capsys, "runs", "rm", "doomed", "--output-dir", str(out), "--yes")
    assert code == 2 and "Permission denied" in err
    assert (out / "doomed").is_dir() and [r["id"] for r in RunRegistry(out).list()] == ["doomed"]  # both stayed
    monkeypatch.setattr(runs_module.os, "replace", real)
    code, _, err = cli(monkeypatch, capsys, "runs", "rm", "doomed", "--output-dir", str(out))
    assert code == 2 and "--yes" in err  # no terminal to ask: refuse
    code, stdout, _ = cli(monkeypatch, capsys, "runs", "rm", "doomed", "--output-dir", str(out), "--yes")
    assert code == 0 and "deleted doomed" in stdout
    assert not (out / "doomed").exists() and not [p for p in out.iterdir() if p.name.startswith(".doomed")]
    with sqlite3.connect(out / "registry.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)


def test_a_registry_of_an_older_recforge_gets_the_study_column(tmp_path, planted_csv):
    out = tmp_path / "runs"
    out.mkdir()
    with sqlite3.connect(out / "registry.sqlite") as con:
        con.execute(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, created TEXT, dataset TEXT, split TEXT, model TEXT, "
            "metrics TEXT, path TEXT)"
        )
        con.execute("INSERT INTO runs VALUES ('old', 't', 'd', 'random', 'ease', '{}', 'p')")
    (out / "old").mkdir()
    assert RunRegistry(out).list()[0]["study"] is None
    tree = {
        "data": {"path": str(planted_csv)},
        "model": {"name": "popularity"},
        "run": {"output_dir": str(out), "name": "new", "study": "st"},
    }
    run_experiment(ExperimentConfig.model_validate(tree))
    rows = {r["id"]: r for r in RunRegistry(out).list()}
    assert rows["new"]["study"] == "st" and rows["old"]["study"] is None


def test_runs_record_a_split_fingerprint(three_runs):
    prints = {
        json.loads((p / "split.json").read_text())["fingerprint"]
        for p in three_runs.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    }
    assert len(prints) == 1 and len(next(iter(prints))) == 32  # same data, protocol and seed: the same split
