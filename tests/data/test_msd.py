"""The Million Song Dataset taste profile with its Last.fm-MSD song tags: every tag format, the track -> song map,
the registered (hand-fetched) dataset, and reading the triplets by path from the pipeline."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from recforge.data.datasets import get_spec, load_dataset
from recforge.data.readers import DataFormatError, read_lastfm_msd_tags, read_msd_taste_profile
from recforge.data.readers.msd import read_track_song_map

FIXTURES = Path(__file__).parent / "fixtures"
TRIPLETS = FIXTURES / "msd" / "train_triplets.txt"

TRACKS = "TRA0001<SEP>SOAKIMP12A8C130995<SEP>Jack Johnson<SEP>The Cove\nTRA0002<SEP>SOAPDEY12A81C210A9<SEP>X<SEP>Y\n"
RECORDS = [
    {"track_id": "TRA0001", "title": "The Cove", "tags": [["acoustic", "40"], ["folk", "100"], ["surf", "0"]]},
    {"track_id": "TRA0002", "tags": [["rock", "55"]]},
    {"song_id": "SOAPDEY12A81C210A9", "tags": [["rock", "70"], ["indie", "10"]]},  # keyed by song: no map needed
]


def folder_with_tags(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / "msd-taste-profile"
    folder.mkdir()
    shutil.copy(TRIPLETS, folder / "train_triplets.txt")
    (folder / "unique_tracks.txt").write_text(TRACKS)
    if how == "jsonl":
        (folder / "lastfm_tags.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    elif how == "tree":  # lastfm_train/A/B/C/TR....json, one object per file
        for r in RECORDS:
            key = r.get("track_id") or r["song_id"]
            where = folder / "lastfm_train" / key[2] / key[3] / key[4]
            where.mkdir(parents=True, exist_ok=True)
            (where / f"{key}.json").write_text(json.dumps(r))
    else:
        db = sqlite3.connect(folder / "lastfm_tags.db")
        db.executescript(
            "CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT); "
            "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);"
        )
        tags: list[str] = []
        for n, r in enumerate(r for r in RECORDS if "track_id" in r):
            db.execute("INSERT INTO tids VALUES (?)", (r["track_id"],))
            for tag, val in r["tags"]:
                if tag not in tags:
                    tags.append(tag)
                    db.execute("INSERT INTO tags VALUES (?)", (tag,))
                db.execute("INSERT INTO tid_tag VALUES (?, ?, ?)", (n + 1, tags.index(tag) + 1, float(val)))
        db.commit()
        db.close()
    return folder


@pytest.mark.parametrize("how", ["jsonl", "tree", "sqlite"])
def test_taste_profile_with_song_tags_heaviest_first(tmp_path, how):
    raw = read_msd_taste_profile(folder_with_tags(tmp_path, how))
    assert list(raw.interactions.columns) == ["user", "item", "weight"]
    assert raw.interactions["weight"].tolist() == [1.0, 2.0, 17.0]  # play counts kept as weights
    info = raw.item_info
    assert info.loc["SOAKIMP12A8C130995", "tags"] == ["folk", "acoustic", "surf"]
    assert info.loc["SOAKIMP12A8C130995", "tag_weights"] == [100.0, 40.0, 0.0]
    expected = ["rock", "indie"] if how != "sqlite" else ["rock"]  # the song-keyed record is JSON only
    assert info.loc["SOAPDEY12A81C210A9", "tags"] == expected
    assert set(info.index) == set(raw.interactions["item"])


def test_tags_keep_each_tags_largest_weight_over_a_songs_tracks(tmp_path):
    path = tmp_path / "tags.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS))
    tags = read_lastfm_msd_tags(path, tracks={"TRA0001": "S1", "TRA0002": "S2"})
    assert tags["S1"] == [("folk", 100.0), ("acoustic", 40.0), ("surf", 0.0)]
    assert tags["SOAPDEY12A81C210A9"] == [("rock", 70.0), ("indie", 10.0)]
    assert read_lastfm_msd_tags(path)["TRA0002"] == [("rock", 55.0)]  # no map: track ids stay the keys


def test_triplets_alone_and_bad_tag_files(tmp_path):
    assert read_msd_taste_profile(TRIPLETS).item_info is None
    bad = tmp_path / "t.jsonl"
    bad.write_text('{"track_id": "T1", "tags": [["rock", "loud"]]}\n')
    with pytest.raises(DataFormatError, match="not a number"):
        read_lastfm_msd_tags(bad)
    bad.write_text('{"tags": []}\n')
    with pytest.raises(DataFormatError, match="track_id"):
        read_lastfm_msd_tags(bad)
    (tmp_path / "u.txt").write_text("TR1 SO1\n")
    with pytest.raises(DataFormatError, match="SEP"):
        read_track_song_map(tmp_path / "u.txt")
    with pytest.raises(FileNotFoundError):
        read_msd_taste_profile(tmp_path / "nothing-here")


def test_registered_dataset_is_read_from_the_data_folder_and_never_downloaded(tmp_path):
    spec = get_spec("msd-taste-profile")
    assert spec.archive == "manual" and spec.files[0] == "train_triplets.txt"
    with pytest.raises(FileNotFoundError, match="does not download it"):
        load_dataset("msd-taste-profile", data_dir=tmp_path)
    folder_with_tags(tmp_path, "jsonl")
    raw = load_dataset("msd-taste-profile", data_dir=tmp_path)
    assert raw.name == "msd-taste-profile" and len(raw.interactions) == 3 and "tags" in raw.item_info


def test_pipeline_reads_the_triplets_by_path(tmp_path):
    from recforge.experiments.config import load_config
    from recforge.experiments.pipeline import load_raw

    folder = folder_with_tags(tmp_path, "jsonl")
    cfg = load_config(None, [f'data.path="{folder / "train_triplets.txt"}"', 'model.name="songvae"'])
    raw = load_raw(cfg)
    assert raw.interactions["weight"].tolist() == [1.0, 2.0, 17.0] and "tags" in raw.item_info
