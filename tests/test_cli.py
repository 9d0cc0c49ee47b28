"""The command line end to end: the acceptance run, recommendations, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from recforge.cli import main
from tests.cli_runner import cli

DATA = os.environ.get("RECFORGE_DATA")
needs_ml100k = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "ml-100k" / "u.data").exists(), reason="RECFORGE_DATA with ml-100k not set"
)


@pytest.fixture(scope="module")
def ease_run(tmp_path_factory) -> Path:
    """The README's main job, run once for the module."""
    out = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    args = ["run", "--dataset", "ml-100k", "--split", "liang2018", "--set", "split.heldout_users=100"]
    args += ["--model", "ease", "--set", "model.l2=100", "--output-dir", str(out), "--set", "run.name=ease"]
    mp.setattr(sys, "argv", ["recforge", *args])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    finally:
        mp.undo()
    return out / "ease"


@needs_ml100k
def test_acceptance_run_reproduces_liang_protocol_numbers(ease_run):
    split = json.loads((ease_run / "split.json").read_text())
    assert (split["train_users"], split["items"], split["train_interactions"]) == (738, 1415, 43606)
    test = json.loads((ease_run / "metrics.json").read_text())["test"]
    assert test["metrics"]["ndcg@100"] == pytest.approx(0.4737, abs=0.002)
    assert test["metrics"]["recall@20"] == pytest.approx(0.4239, abs=0.002)
    for name in ("config.json", "per_user_test.csv", "log.txt", "model/weights.safetensors"):
        assert (ease_run / name).exists(), name
    assert not [p for p in ease_run.parent.iterdir() if p.name.startswith(".")]


@needs_ml100k
def test_evaluate_and_runs_list(ease_run, monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "evaluate", str(ease_run))
    assert code == 0 and "0.47" in out
    code, out, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(ease_run.parent))
    assert code == 0 and "ease" in out


@needs_ml100k
def test_recommend_for_a_made_up_star_wars_history(ease_run, monkeypatch, capsys):
    from recforge.data.datasets import load_dataset

    info = load_dataset("ml-100k").item_info
    # Star Wars (50), The Empire Strikes Back (172), Return of the Jedi (181)
    code, out, _ = cli(monkeypatch, capsys, "recommend", str(ease_run), "--items", "50,172,181", "-k", "5")
    assert code == 0
    rec = json.loads(out)
    assert rec["history"] == [50, 172, 181] and len(rec["items"]) == 5
    assert not {50, 172, 181} & set(rec["items"])
    genres = [set(info.loc[i, "genres"]) for i in rec["items"]]
    assert all(g & {"Sci-Fi", "Action", "Adventure"} for g in genres[:3]), genres


@needs_ml100k
def test_recommend_known_users_to_file(ease_run, monkeypatch, capsys, tmp_path):
    target = tmp_path / "recs.jsonl"
    code, _, _ = cli(monkeypatch, capsys, "recommend", str(ease_run), "--all-users", "-k", "3", "--output", str(target))
    assert code == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 738 and all(len(r["items"]) == 3 for r in rows)


@needs_ml100k
@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--user", "999999"], "999999"),
        (["--items", "50,nope"], "nope"),
    ],
)
def test_recommend_unknown_ids_are_reported(ease_run, monkeypatch, capsys, args, culprit):
    code, out, err = cli(monkeypatch, capsys, "recommend", str(ease_run), *args)
    assert code == 2 and culprit in err and out == ""


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--dataset", "ml-nope", "--model", "ease"], "ml-nope"),
        (["--dataset", "ml-100k", "--model", "nope"], "nope"),
        (["--dataset", "ml-100k", "--model", "ease", "--set", "model.lamda=3"], "lamda"),
        (["--dataset", "ml-100k", "--model", "ease", "--set", "model.l2=-1"], "l2"),
        (["--dataset", "ml-100k", "--model", "ease", "--split", "nope"], "nope"),
        (["--dataset", "ml-100k", "--model", "ease", "--set", "split.heldout=3"], "heldout"),
        (["--dataset", "ml-100k", "--model", "ease", "--set", "evaluation.metrics=['ndcg@x']"], "ndcg@x"),
        (["missing.toml"], "missing.toml"),
    ],
)
def test_bad_run_input_is_one_line_and_leaves_nothing(monkeypatch, capsys, tmp_path, args, culprit):
    code, _, err = cli(monkeypatch, capsys, "run", *args, "--output-dir", str(tmp_path / "runs"))
    assert code == 2
    assert culprit in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_failed_run_leaves_no_directory(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "events.csv"
    bad.write_text("u,i\n1,2\n")
    out_dir = tmp_path / "runs"
    args = ["run", "--set", f"data.path='{bad}'", "--set", "data.user_col='user'", "--model", "ease"]
    code, _, err = cli(monkeypatch, capsys, *args, "--output-dir", str(out_dir))
    assert code == 2 and "user" in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_models_and_datasets_listings(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "models", "list")
    assert code == 0 and "ease" in out and "itemknn" in out and "popularity" in out
    code, out, _ = cli(monkeypatch, capsys, "models", "info", "ease")
    assert code == 0 and "l2" in out and "> 0" in out
    code, out, _ = cli(monkeypatch, capsys, "models", "info", "biasedmf")  # [brackets] are text, not markup
    assert code == 0 and "[b_u, p_u]" in out
    code, _, err = cli(monkeypatch, capsys, "models", "info", "nope")
    assert code == 2 and "nope" in err
    code, _, err = cli(monkeypatch, capsys, "models", "info", "[bold]x[/bold]")  # user text is never markup
    assert code == 2 and "[bold]x[/bold]" in err
    code, out, _ = cli(monkeypatch, capsys, "datasets", "list")
    assert code == 0 and "ml-100k" in out
    code, out, _ = cli(monkeypatch, capsys, "datasets", "info", "ml-100k")
    assert code == 0 and "files.grouplens.org" in out


@needs_ml100k
def test_official_fold_and_sampled_negatives_protocols(monkeypatch, capsys, tmp_path):
    out_dir = str(tmp_path / "runs")
    args = ["run", "--dataset", "ml-100k", "--split", "predefined", "--set", "split.fold=u1"]
    code, _, err = cli(
        monkeypatch,
        capsys,
        *args,
        "--set",
        "split.valid_fraction=0.1",
        "--model",
        "popularity",
        "--output-dir",
        out_dir,
        "--set",
        "run.name=fold",
    )
    assert code == 0, err
    split = json.loads((tmp_path / "runs" / "fold" / "split.json").read_text())
    # u1.base's 80,000 events, 10% carved out for validation; events on items unseen in training are dropped
    assert 79_900 <= split["train_interactions"] + split["valid_target_interactions"] <= 80_000
    assert split["valid_target_interactions"] == pytest.approx(8_000, abs=50)
    assert 19_900 <= split["test_target_interactions"] < 20_000
    args = ["run", "--dataset", "ml-100k", "--split", "leave_one_out_ncf", "--set", "data.binarize=true"]
    code, _, err = cli(monkeypatch, capsys, *args, "--model", "ease", "--output-dir", out_dir, "--set", "run.name=loo")
    assert code == 0, err
    test = json.loads((tmp_path / "runs" / "loo" / "metrics.json").read_text())["test"]
    assert test["n_users"] == 943 and 0.5 < test["metrics"]["sampled_hr@10"] <= 1.0
    assert (tmp_path / "runs" / "loo" / "per_user_test_sampled.csv").exists()


@needs_ml100k
def test_recommend_prints_the_titles_saved_with_the_run(ease_run, monkeypatch, capsys):
    titles = pd.read_csv(ease_run / "items.csv")
    assert len(titles) == 1415 and set(titles.columns) == {"item", "title", "genres"}  # genres: for recforge serve
    code, out, _ = cli(monkeypatch, capsys, "recommend", str(ease_run), "--items", "50:5,172:5,181:4", "-k", "3")
    rec = json.loads(out)
    assert code == 0 and rec["ratings"] == [5.0, 5.0, 4.0] and len(rec["titles"]) == 3
    assert all(isinstance(t, str) and "(19" in t for t in rec["titles"])  # e.g. "Raiders of the Lost Ark (1981)"


@needs_ml100k
def test_a_held_out_user_is_named_as_such(ease_run, monkeypatch, capsys):
    heldout = json.loads((ease_run / "heldout_users.json").read_text())
    assert len(heldout["valid"]) == len(heldout["test"]) == 100
    user = str(heldout["test"][0])
    code, out, err = cli(monkeypatch, capsys, "recommend", str(ease_run), "--user", user)
    assert code == 2 and out == ""
    assert f"user {user} (test part) was held out of training by the split; use --items with their history" in err


@needs_ml100k
def test_evaluate_finds_moved_data_with_data_dir_and_the_run_records_its_source(
    ease_run, tmp_path, monkeypatch, capsys
):
    source = json.loads((ease_run / "split.json").read_text())["data_source"]
    assert source["dataset"] == "ml-100k" and Path(source["folder"]).resolve() == (Path(DATA) / "ml-100k").resolve()
    moved = tmp_path / "run"
    shutil.copytree(ease_run, moved)
    config = json.loads((moved / "config.json").read_text())
    config["data"].update(data_dir=str(tmp_path / "gone"), download=False)  # the data moved since the run
    (moved / "config.json").write_text(json.dumps(config))
    code, _, err = cli(monkeypatch, capsys, "evaluate", str(moved))
    assert code == 2 and "gone" in err and "Traceback" not in err
    code, out, err = cli(monkeypatch, capsys, "evaluate", str(moved), "--data-dir", DATA)
    assert code == 0 and "0.47" in out, err
