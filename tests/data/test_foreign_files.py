"""Issue 20: files from outside the project keep their ids exactly as written (leading zeros, ISBN/ASIN-like ids)
through read, fit, recommend (API and command line) and save/load; header-less files read with column names."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.cli_runner import cli

from recforge.data.interactions import Interactions
from recforge.data.readers import DataFormatError, read_amazon_reviews, read_table
from recforge.data.splits import random_split
from recforge.models.linear import EASE
from recforge.models.registry import load_model

# "0012" and "12" are two items; "0001234567" is ISBN-like (its zeros are part of it); "007" a user with zeros.
ITEMS = ["0012", "12", "0001234567", "000000001X", "B000000042", "42", "0042", "7"]
USERS = ["007", "7", "0007", "u1", "1", "01", "001", "10"]


def events() -> pd.DataFrame:
    """Every user rates 6 of the 8 items (a rotating window), so every id appears in several events."""
    rows = []
    for u, user in enumerate(USERS):
        for j in range(6):
            item = ITEMS[(u + j) % len(ITEMS)]
            rows.append((user, item, float(1 + (u + j) % 5), 1_600_000_000 + 100 * u + j))
    return pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])


def write(frame: pd.DataFrame, path: Path, *, header: bool = True, sep: str = ",") -> Path:
    lines = [sep.join(frame.columns)] if header else []
    lines += [sep.join(str(v) for v in row) for row in frame.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "sep", "header"),
    [("e.csv", ",", True), ("e.tsv", "\t", True), ("e.txt", " ", False), ("e.csv.gz", ",", True)],
)
def test_ids_are_kept_exactly_as_written(tmp_path: Path, name: str, sep: str, header: bool) -> None:
    frame = events()
    path = tmp_path / name
    if name.endswith(".gz"):
        plain = write(frame, tmp_path / "plain.csv", sep=sep)
        path.write_bytes(gzip.compress(plain.read_bytes()))
    else:
        write(frame, path, header=header, sep=sep)
    options = {} if header else {"columns": ["user", "item", "rating", "timestamp"]}
    raw = read_table(path, user_col="user", item_col="item", rating_col="rating", **options)
    got = raw.interactions
    assert got["user"].tolist() == frame["user"].tolist() and got["item"].tolist() == frame["item"].tolist()
    assert all(isinstance(v, str) for v in [*got["user"], *got["item"]])
    assert got["item"].nunique() == len(ITEMS)  # 0012 and 12, 42 and 0042: distinct items


def test_parquet_and_json_lines_ids_are_text_as_written(tmp_path: Path) -> None:
    frame = events()
    parquet = tmp_path / "e.parquet"
    frame.to_parquet(parquet)
    assert read_table(parquet, user_col="user", item_col="item").interactions["item"].tolist() == frame["item"].tolist()
    numbers = tmp_path / "n.parquet"
    pd.DataFrame({"u": [1, 2], "i": [10.0, 2.5]}).to_parquet(numbers)
    got = read_table(numbers, user_col="u", item_col="i").interactions
    assert got["user"].tolist() == ["1", "2"] and got["item"].tolist() == ["10", "2.5"]  # numbers as their text
    reviews = tmp_path / "reviews.json"
    record = {"reviewerID": "007", "asin": "0001234567", "overall": 5.0, "unixReviewTime": 1}
    reviews.write_text(json.dumps(record) + "\n")
    got = read_amazon_reviews(reviews).interactions
    assert got["user"].tolist() == ["007"] and got["item"].tolist() == ["0001234567"]


def test_integers_only_when_asked_for(tmp_path: Path) -> None:
    path = write(pd.DataFrame({"user": ["007", "7"], "item": ["0012", "+12"]}), tmp_path / "n.csv")
    got = read_table(path, user_col="user", item_col="item", ids="int").interactions
    assert got["user"].tolist() == [7, 7] and got["item"].tolist() == [12, 12] and got["user"].dtype == np.int64
    bad = write(pd.DataFrame({"user": ["1", "x9"], "item": ["1", "2"]}), tmp_path / "bad.csv")
    with pytest.raises(DataFormatError, match=r"bad\.csv, line 3, field 'user': 'x9' is not an integer id"):
        read_table(bad, user_col="user", item_col="item", ids="int")
    with pytest.raises(ValueError, match="ids must be one of"):
        read_table(path, user_col="user", item_col="item", ids="float")


def test_a_header_less_space_separated_file_reads_with_named_columns(tmp_path: Path) -> None:
    """FilmTrust's ratings.txt: ``user item rating``, space-separated, no header line."""
    path = tmp_path / "ratings.txt"
    path.write_text("1 1 2\n1 2 4\n2 1 3.5\n2 3 0.5\n")
    raw = read_table(path, columns=["user", "item", "rating"], user_col="user", item_col="item", rating_col="rating")
    assert raw.interactions.values.tolist() == [["1", "1", 2.0], ["1", "2", 4.0], ["2", "1", 3.5], ["2", "3", 0.5]]
    by_position = read_table(path, header=False, user_col=1, item_col=2, rating_col=3).interactions
    assert by_position.equals(raw.interactions)
    explicit = read_table(path, sep=" ", columns=["u", "i", "r"], user_col="u", item_col="i", rating_col="r")
    assert explicit.interactions.values.tolist() == raw.interactions.values.tolist()
    # the first row is data, not column names: 4 events, and a reader without the option says what to do
    assert len(raw.interactions) == 4
    with pytest.raises(DataFormatError, match=r"not found; the file has columns '1', '1', '2'.*data\.columns"):
        read_table(path, user_col="user", item_col="item")
    with pytest.raises(DataFormatError, match="2 column names given"):
        read_table(path, columns=["user", "item"], user_col="user", item_col="item")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 2\n1 2 x\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt, line 2, field 'rating'"):
        read_table(bad, columns=["user", "item", "rating"], user_col="user", item_col="item", rating_col="rating")


def test_ids_round_trip_through_fit_recommend_and_save_load(tmp_path: Path) -> None:
    raw = read_table(write(events(), tmp_path / "e.csv"), user_col="user", item_col="item")
    data = Interactions.from_frame(raw.interactions.assign(value=1.0), value_col="value")
    model = EASE(l2=1.0).fit(data)
    assert sorted(model.items_.ids.tolist()) == sorted(ITEMS) and sorted(model.users_.ids.tolist()) == sorted(USERS)
    recs = model.recommend(["007", "0007"], k=8)
    seen = {u: set(raw.interactions.loc[raw.interactions["user"] == u, "item"]) for u in ("007", "0007")}
    for user, rec in zip(("007", "0007"), recs, strict=True):
        items = [i for i, _ in rec]
        assert items and set(items) <= set(ITEMS) - seen[user]  # the file's ids, seen ones excluded
    new = [i for i, _ in model.recommend_for_history(["0012", "0001234567"], k=8)]
    assert "0012" not in new and "0001234567" not in new and set(new) <= set(ITEMS)
    model.save(tmp_path / "model")
    ids = json.loads((tmp_path / "model" / "ids.json").read_text())
    assert ids["items"]["dtype"] == "str" and "0001234567" in ids["items"]["ids"] and "0012" in ids["items"]["ids"]
    again = load_model(tmp_path / "model", device="cpu")
    assert again.recommend(["007", "0007"], k=8) == recs
    assert [i for i, _ in again.recommend_for_history(["0012", "0001234567"], k=8)] == new
    with pytest.raises(KeyError, match="unknown user"):
        again.recommend([7])  # the integer 7 is not the id "7" of the file


def test_ids_round_trip_through_the_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    path = write(events(), tmp_path / "events.csv")
    out = tmp_path / "runs"
    args = ["run", "--dataset", str(path), "--model", "ease", "--set", "model.l2=1", "--set", "split.test=0.1"]
    code, _, err = cli(monkeypatch, capsys, *args, "--output-dir", str(out), "--set", "run.name=r")
    assert code == 0, err
    config = json.loads((out / "r" / "config.json").read_text())
    assert config["data"]["ids"] == "str"
    code, text, err = cli(
        monkeypatch, capsys, "recommend", str(out / "r"), "--user", "007", "--user", "0007", "-k", "3"
    )
    assert code == 0, err
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["user_id"] for r in rows] == ["007", "0007"]
    assert all(set(r["items"]) <= set(ITEMS) for r in rows)
    code, text, err = cli(monkeypatch, capsys, "recommend", str(out / "r"), "--items", "0012,0001234567", "-k", "8")
    assert code == 0, err
    row = json.loads(text)
    assert row["history"] == ["0012", "0001234567"] and set(row["items"]) <= set(ITEMS) - {"0012", "0001234567"}
    code, _, err = cli(monkeypatch, capsys, "recommend", str(out / "r"), "--items", "00012", "-k", "3")
    assert code == 2 and "unknown item id(s): 00012" in err  # never matched to 0012 or 12


def test_split_files_typed_alike_whatever_each_holds(tmp_path: Path) -> None:
    """A training file of canonical integers and a test file with ``0012``: one id type for both (the former
    per-file inference made the train ids int64 and the test ids text, so no test event matched)."""
    from recforge.data.splits import predefined_split

    train = write(pd.DataFrame({"user": ["1", "1", "2", "2"], "item": ["12", "13", "12", "14"]}), tmp_path / "t.csv")
    test = write(pd.DataFrame({"user": ["1", "2"], "item": ["14", "0012"]}), tmp_path / "s.csv")
    frames = [read_table(p, user_col="user", item_col="item").interactions for p in (train, test)]
    with pytest.warns(UserWarning, match="dropped 1 of 2 test events"):  # 0012 is not 12: unknown to train
        split = predefined_split(*frames)
    assert split.test.target.nnz == 1
    assert split.train.items.ids.tolist() == ["12", "13", "14"]


def test_random_split_of_string_ids_keeps_them(tmp_path: Path) -> None:
    raw = read_table(write(events(), tmp_path / "e.csv"), user_col="user", item_col="item", rating_col="rating")
    split = random_split(Interactions.from_frame(raw.interactions), test=0.2, seed=0)
    assert set(split.test.target.to_frame()["item"]) <= set(ITEMS)


def test_ids_round_trip_through_the_http_service(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from tests.serve.conftest import LiveServer

    from recforge.serve import create_app

    path = write(events(), tmp_path / "events.csv")
    args = ["run", "--dataset", str(path), "--model", "ease", "--set", "model.l2=1", "--set", "split.test=0.1"]
    code, _, err = cli(monkeypatch, capsys, *args, "--output-dir", str(tmp_path / "runs"), "--set", "run.name=r")
    assert code == 0, err
    server = LiveServer(create_app(tmp_path / "runs" / "r", device="cpu", state_dir=tmp_path / "state"))
    try:
        with server.client() as c:
            known = c.post("/recommend", json={"user_id": "007", "k": 3}).json()
            new = c.post("/recommend", json={"items": ["0012", "0001234567"], "k": 8}).json()
            unknown = c.post("/recommend", json={"items": ["00012"], "k": 3})
    finally:
        server.stop()
    assert known["user_id"] == "007" and {r["item_id"] for r in known["items"]} <= set(ITEMS)
    got = [r["item_id"] for r in new["items"]]
    assert got and set(got) <= set(ITEMS) - {"0012", "0001234567"}
    assert 400 <= unknown.status_code < 500 and "00012" in unknown.text  # never matched to 0012 or 12
