"""Issue 20: a predefined split given as three files runs from the command line without ``data.path``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli_runner import cli


@pytest.fixture(scope="module")
def three_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """train/valid/test CSV files of 60 users x 40 items; ids written with leading zeros (``u007``, ``0012``)."""
    folder = tmp_path_factory.mktemp("predefined")
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        for i in rng.choice(40, 12, replace=False):
            rows.append((f"u{u:03d}", f"{int(i):04d}", int(rng.integers(1, 6)), int(rng.integers(1e9, 2e9))))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    part = rng.choice(["train", "valid", "test"], len(frame), p=[0.7, 0.1, 0.2])
    paths = []
    for name in ("train", "valid", "test"):
        path = folder / f"{name}.csv"
        frame[part == name].to_csv(path, index=False)
        paths.append(path)
    return paths[0], paths[1], paths[2]


def test_three_files_and_no_data_path(three_files, tmp_path, monkeypatch, capsys):
    train, valid, test = three_files
    out = tmp_path / "runs"
    args = ["run", "--split", "predefined", "--model", "ease", "--set", "model.l2=10", "--output-dir", str(out)]
    args += [
        f"--set=split.train_path='{train}'",
        f"--set=split.valid_path='{valid}'",
        f"--set=split.test_path='{test}'",
    ]
    code, text, err = cli(monkeypatch, capsys, *args)
    assert code == 0, err
    (run,) = out.glob("*-train-ease-*")  # named after the training file
    config = json.loads((run / "config.json").read_text())
    assert "path" not in config["data"] and config["split"]["protocol"] == "predefined"
    source = json.loads((run / "split.json").read_text())["data_source"]
    assert source == {"train_path": str(train.resolve()), "valid_path": str(valid.resolve()), "test_path": str(test)}
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"valid", "test"} <= set(metrics) and metrics["test"]["metrics"]["ndcg@100"] > 0
    assert metrics["test"]["protocol"] == {"input": "train+valid", "exclude": "train+valid"}
    assert metrics["valid"]["protocol"] == {"input": "train", "exclude": "train"}
    assert "test protocol: scores from train+valid, excludes train+valid" in err
    split = json.loads((run / "split.json").read_text())
    assert split["train_interactions"] == len(pd.read_csv(train))  # the training file read once, all of it
    # the model's ids are the files' ids as written
    code, text, err = cli(monkeypatch, capsys, "recommend", str(run), "--user", "u007", "-k", "3")
    assert code == 0, err
    row = json.loads(text)
    assert row["user_id"] == "u007" and all(len(i) == 4 and i.isdigit() for i in row["items"])


def test_file_flags_imply_the_predefined_split(three_files, tmp_path, monkeypatch, capsys):
    train, valid, test = three_files
    out = tmp_path / "runs"
    args = ["run", "--train-file", str(train), "--valid-file", str(valid), "--test-file", str(test)]
    code, _, err = cli(
        monkeypatch, capsys, *args, "--model", "popularity", "--output-dir", str(out), "--set=run.name=p"
    )
    assert code == 0, err
    config = json.loads((out / "p" / "config.json").read_text())
    assert config["split"]["protocol"] == "predefined"
    assert Path(config["split"]["train_path"]) == train and Path(config["split"]["test_path"]) == test
    code, _, err = cli(monkeypatch, capsys, "evaluate", str(out / "p"))  # the split is rebuilt from the files
    assert code == 0, err
    args += ["--set", f"split.test_path='{valid}'", "--model", "popularity", "--output-dir", str(out)]
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 2 and "--test-file" in err and "disagree" in err


def test_without_any_data_source_the_error_names_the_choices(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "run", "--model", "ease", "--output-dir", str(tmp_path))
    assert code == 2 and "data.dataset or data.path" in err and "split.train_path" in err
    args = ["run", "--split", "predefined", "--set", "split.train_path='x.csv'", "--model", "ease"]
    code, _, err = cli(monkeypatch, capsys, *args, "--output-dir", str(tmp_path))
    assert code == 2 and "split.test_path" in err


def test_header_less_split_files_from_the_command_line(tmp_path, monkeypatch, capsys):
    """FilmTrust-style files (``user item rating``, space-separated, no header) with data.columns."""
    rng = np.random.default_rng(1)
    lines = {"train": [], "test": []}
    for u in range(1, 41):
        items = rng.choice(np.arange(1, 31), 8, replace=False)
        for n, i in enumerate(items):
            lines["test" if n == 0 else "train"].append(f"{u} {i} {rng.integers(1, 9) / 2}")
    paths = {}
    for name, rows in lines.items():
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text("\n".join(rows) + "\n")
    args = ["run", "--train-file", str(paths["train"]), "--test-file", str(paths["test"]), "--model", "itemknn"]
    args += ["--set", 'data.columns=["user", "item", "rating"]', "--output-dir", str(tmp_path / "runs")]
    code, _, err = cli(monkeypatch, capsys, *args, "--set=run.name=ft")
    assert code == 0, err
    assert "data.rating_col = 'rating'" in err  # the named column is found like a header's
    summary = json.loads((tmp_path / "runs" / "ft" / "split.json").read_text())
    assert summary["train_interactions"] == len(lines["train"])
