"""`recforge plot RUN_DIR [curves|latent|users|steer]` and `recforge recommend --steer` end to end, on a small
listening log in the Million Song Dataset's formats (taste-profile triplets read by path, Last.fm-MSD tags beside
them): three styles of songs, each listened to by its own group of users."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.cli_runner import cli

STYLES = ("rock", "jazz", "metal")


@pytest.fixture(scope="module")
def song_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("msd")
    rng = np.random.default_rng(0)
    songs = {style: [f"SO{style[:2].upper()}{i:03d}" for i in range(15)] for style in STYLES}
    lines = []
    for g, style in enumerate(STYLES):
        for u in range(25):
            for song in rng.choice(songs[style], 7, replace=False):
                lines.append(f"user{g}x{u:02d}\t{song}\t{int(rng.integers(1, 30))}")
            other = STYLES[(g + 1) % 3]
            lines.append(f"user{g}x{u:02d}\t{rng.choice(songs[other])}\t1")
    (folder / "train_triplets.txt").write_text("\n".join(lines) + "\n")
    records = [{"song_id": s, "tags": [[style, "100"], ["music", "10"]]} for style in STYLES for s in songs[style]]
    (folder / "lastfm_tags.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    capsys = _Capture()
    code, _, stderr = cli(
        mp, capsys, "run", "--dataset", str(folder / "train_triplets.txt"), "--model", "songvae",
        "--split", "liang2018", "--output-dir", str(out),
        "--set", "split.heldout_users=6", "--set", "split.rating_col=weight", "--set", "split.min_rating=0",
        "--set", "split.value_col=weight", "--set", "model.dims=[16, 3]", "--set", "model.max_epochs=25",
        "--set", "model.batch_size=16", "--set", "model.learning_rate=0.01",
    )  # fmt: skip
    mp.undo()
    assert code == 0, stderr
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


class _Capture:
    """capsys for a module-scoped fixture: the CLI writes through rich consoles, whose output is not needed here."""

    def readouterr(self):
        class Out:
            out = err = ""

        return Out()


def test_run_is_named_by_the_models_parameters(song_run):
    assert "songvae_bce-kld_dims-16-3_beta-1" in song_run.name


def test_curves_default_and_latent_figures(song_run, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "plot", str(song_run))
    assert code == 0, err
    assert (song_run / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = cli(monkeypatch, capsys, "plot", str(song_run), "latent", "--n-points", "5")
    assert code == 0, err
    assert (song_run / "latent_classes.png").is_file() and "separation of z" in out
    stats = json.loads((song_run / "latent" / "class_stats.json").read_text())
    assert stats["class2idx"] == {"jazz": 0, "metal": 1, "rock": 2} and len(stats["mean"][0]) == 3
    separation = json.loads((song_run / "latent" / "separation.json").read_text())["train"]
    assert separation["latent"] > separation["random_projection"]
    code, out, err = cli(monkeypatch, capsys, "plot", str(song_run), "users")
    assert code == 0, err
    assert (song_run / "latent_users.png").is_file()
    assert (song_run / "latent" / "test_users.csv").read_text().startswith("user,top_tag,z0,z1,z2")


def test_steer_figure_and_recommend_steer(song_run, monkeypatch, capsys):
    history = "SORO000,SORO001,SORO002"  # rock songs
    code, out, err = cli(monkeypatch, capsys, "plot", str(song_run), "steer", "--steer", "jazz=1", "--items", history)
    assert code == 0, err
    assert (song_run / "latent_steer.png").is_file() and "share of 'jazz' items" in out
    code, out, err = cli(monkeypatch, capsys, "recommend", str(song_run), "--items", history, "-k", "5")
    plain = json.loads(out)["items"]
    code, out, err = cli(
        monkeypatch, capsys, "recommend", str(song_run), "--items", history, "-k", "5", "--steer", "jazz=1"
    )
    assert code == 0, err
    steered = json.loads(out)["items"]
    assert sum(s.startswith("SOJA") for s in steered) > sum(s.startswith("SOJA") for s in plain)
    code, out, err = cli(monkeypatch, capsys, "recommend", str(song_run), "--items", history, "--steer", "polka=1")
    assert code == 2 and "unknown tag 'polka'" in err
    code, out, err = cli(monkeypatch, capsys, "recommend", str(song_run), "--items", history, "--steer", "jazz")
    assert code == 2 and "TAG=FACTOR" in err
    code, out, err = cli(monkeypatch, capsys, "plot", str(song_run), "steer")
    assert code == 2 and "--steer" in err
    code, out, err = cli(monkeypatch, capsys, "plot", str(song_run), "nonsense")
    assert code == 2
