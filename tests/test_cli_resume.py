"""Runs through the command line that must not lie: changed data after an interrupted run, two identical runs at
once, a killed run's leftovers, and a model loaded onto the device asked for."""

from __future__ import annotations

import bz2
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from recforge.experiments.runs import remove_abandoned
from recforge.models.autoencoders import MultiVAE
from tests.cli_runner import cli
from tests.test_bad_input import ratings_csv
from tests.test_cli import DATA, needs_ml100k

VAE = ["--model", "multivae", "--set", "model.hidden_dims=[16]", "--set", "model.max_epochs=4"]
VAE += ["--set", "model.batch_size=64", "--set", 'evaluation.metrics=["ndcg@20"]']


def _csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> list[str]:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return ["--set", f"data.path='{path}'", "--set", "data.rating_col='rating'", "--set", "split.test=0.2"]


def _metrics(out_dir: Path) -> list[dict]:
    return [json.loads(p.read_text())["test"]["metrics"] for p in sorted(out_dir.glob("*/metrics.json"))]


@needs_ml100k
def test_changed_data_after_an_interrupted_run_trains_on_the_new_data(monkeypatch, capsys, tmp_path):
    events = pd.read_csv(Path(DATA) / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    first = _csv(tmp_path, "a.csv", events[events["user"] <= 300])
    changed = _csv(tmp_path, "b.csv", events[events["user"] <= 250])  # the file was edited before the rerun
    ckpt = ["--set", f"training.checkpoint_dir='{tmp_path / 'ckpt'}'"]

    original = MultiVAE.training_step

    def interrupted(self, module, batch, ctx):
        if ctx.epoch == 2:
            raise KeyboardInterrupt
        return original(self, module, batch, ctx)

    monkeypatch.setattr(MultiVAE, "training_step", interrupted)
    code, _, _ = cli(monkeypatch, capsys, "run", *first, *VAE, *ckpt, "--output-dir", str(tmp_path / "runs"))
    assert code == 130 and (tmp_path / "ckpt" / "last.pt").exists()  # Ctrl-C: "Aborted!", exit 128 + SIGINT
    monkeypatch.setattr(MultiVAE, "training_step", original)

    code, _, err = cli(monkeypatch, capsys, "run", *changed, *VAE, *ckpt, "--output-dir", str(tmp_path / "runs"))
    assert code == 0 and "starting afresh" in err and "Traceback" not in err
    code, _, _ = cli(
        monkeypatch,
        capsys,
        "run",
        *changed,
        *VAE,
        "--set",
        "training.checkpoints=false",
        "--output-dir",
        str(tmp_path / "fresh"),
    )
    assert code == 0 and _metrics(tmp_path / "runs") == _metrics(tmp_path / "fresh")
    assert not (tmp_path / "ckpt").exists()


@needs_ml100k
def test_two_identical_runs_started_together_both_finish_right(tmp_path):
    args = ["--dataset", "ml-100k", "--split", "liang2018", "--set", "split.heldout_users=100", *VAE]
    cmd = [sys.executable, "-m", "recforge", "run", *args, "--output-dir", str(tmp_path / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    first, second = _metrics(tmp_path / "runs")
    assert first == second  # same config, same seed, same numbers: neither resumed the other's half-trained model
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.endswith(".tmp")]


def test_a_killed_runs_temporary_folder_is_removed_by_the_next_run(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    abandoned = tmp_path / f".20261201-ml-100k-multivae-ab12.{pid}.0badcafe.tmp"
    (abandoned / "model").mkdir(parents=True)
    running = tmp_path / f".20261201-ml-100k-ease-cd34.{os.getpid()}.c0ffee00.tmp"
    running.mkdir()
    assert remove_abandoned(tmp_path) == [abandoned]
    assert not abandoned.exists() and running.exists()


def test_a_checkpoint_folder_named_by_the_user_keeps_its_other_files(monkeypatch, capsys, tmp_path):
    csv = ratings_csv(tmp_path / "events.csv")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    args = ["run", "--dataset", str(csv), *VAE, "--set", f"training.checkpoint_dir='{folder}'"]
    code, _, err = cli(monkeypatch, capsys, *args, "--output-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # the checkpoint is gone, nothing else


def test_a_bz2_table_gets_its_rating_column_detected(monkeypatch, capsys, tmp_path):
    csv = ratings_csv(tmp_path / "events.csv")
    packed = tmp_path / "events.csv.bz2"
    packed.write_bytes(bz2.compress(csv.read_bytes()))
    args = ["run", "--dataset", str(packed), "--model", "biasedmf", "--set", "model.max_epochs=2"]
    code, _, err = cli(monkeypatch, capsys, *args, "--output-dir", str(tmp_path / "runs"))
    assert code == 0, err
    assert "data.rating_col = 'rating'" in err
    (metrics,) = _metrics(tmp_path / "runs")
    assert "rating_rmse" in metrics
