"""The Million Song Dataset taste profile (play counts) and the Last.fm-MSD song tags read beside it.

* ``train_triplets.txt`` (Echo Nest taste profile subset): ``user<TAB>song<TAB>playcount``, no header, 48,373,586
  lines over 1,019,318 users and 384,546 songs (``.gz`` read too). Read by :func:`read_playcount_triplets`; the
  play count is the ``weight`` column.
* Last.fm-MSD tags (``lastfm_train``/``lastfm_test``/``lastfm_subset``): one JSON object per track, ``{"track_id":
  "TR...", "tags": [["classic rock", "100"], ["rock", "62"], ...], ...}`` -- a folder tree of ``.json`` files, one
  JSON file, or JSON lines -- or the SQLite ``lastfm_tags.db`` (tables ``tids``, ``tags``, ``tid_tag(tid, tag,
  val)``). Tags are per *track*; the taste profile counts *songs*, so ``unique_tracks.txt``
  (``track<SEP>song<SEP>artist<SEP>title``) maps them; a record with a ``song_id`` key needs no map.

:func:`read_lastfm_msd_tags` gives ``song id -> [(tag, weight), ...]`` (heaviest first; a song with several tracks
keeps each tag's largest weight). :func:`read_msd_taste_profile` reads a folder holding the triplets and, when
present, the tags: its ``item_info`` has ``tags`` (tag names, heaviest first) and ``tag_weights`` (the weights).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.readers._base import (
    DataFormatError,
    RawDataset,
    attach_tags,
    is_file,
    read_bytes,
    strip_compression,
    text_lines,
)
from recforge.data.readers.tables import read_playcount_triplets

__all__ = [
    "TAG_FILES",
    "TRACK_FILES",
    "TRIPLET_FILES",
    "read_lastfm_msd_tags",
    "read_msd_taste_profile",
    "read_track_song_map",
]

#: Names of the taste-profile file in a dataset folder, in order of preference.
TRIPLET_FILES = ("train_triplets.txt", "train_triplets.txt.gz")
#: Names of the Last.fm-MSD tag source looked for beside the triplets, in order of preference.
TAG_FILES = ("lastfm_tags.db", "lastfm_tags.jsonl", "lastfm_tags.json", "lastfm_train", "lastfm_subset")
#: Names of the MSD track -> song map looked for beside the triplets.
TRACK_FILES = ("unique_tracks.txt", "unique_tracks.txt.gz")

SongTags = dict[str, list[tuple[str, float]]]


def read_track_song_map(path: str | Path) -> dict[str, str]:
    """``unique_tracks.txt`` of the MSD (``track<SEP>song<SEP>artist<SEP>title``): track id -> song id."""
    path = Path(path)
    out: dict[str, str] = {}
    for line_no, line in text_lines(path, "utf-8"):
        if not line.strip():
            continue
        parts = line.split("<SEP>")
        if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
            raise DataFormatError(path, "expected 'track<SEP>song<SEP>artist<SEP>title'", line=line_no)
        out[parts[0].strip()] = parts[1].strip()
    return out


def _tag_pairs(path: Path, where: str, tags: Any) -> list[tuple[str, float]]:
    if not isinstance(tags, list):
        raise DataFormatError(path, f"{where}: 'tags' must be a list of [tag, weight] pairs")
    pairs = []
    for entry in tags:
        if not isinstance(entry, list | tuple) or len(entry) != 2 or not isinstance(entry[0], str):
            raise DataFormatError(path, f"{where}: a tag must be a [tag, weight] pair, got {str(entry)[:80]!r}")
        try:
            weight = float(entry[1])
        except (TypeError, ValueError):
            raise DataFormatError(path, f"{where}: tag {entry[0]!r} has weight {entry[1]!r}, not a number") from None
        if not np.isfinite(weight):
            raise DataFormatError(path, f"{where}: tag {entry[0]!r} has weight {entry[1]!r}, not a finite number")
        pairs.append((entry[0], weight))
    return pairs


def _json_records(path: Path) -> Iterator[tuple[Path, str, Any]]:
    """``(file, where, record)`` of a JSON file (one object, or JSON lines) or of every ``.json`` under a folder."""
    files: Iterable[Path] = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    for file in files:
        try:
            text = read_bytes(file).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(file, f"not UTF-8 JSON ({exc.reason} at byte {exc.start})") from None
        stripped = text.strip()
        if not stripped:
            continue
        try:
            yield file, "", json.loads(stripped)
            continue
        except json.JSONDecodeError:
            pass
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield file, f"line {line_no}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(file, f"not JSON ({exc.msg})", line=line_no) from None


def _sqlite_records(path: Path) -> Iterator[tuple[str, str, float]]:
    """``(track, tag, weight)`` rows of ``lastfm_tags.db``."""
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True) as db:
            rows = db.execute(
                "SELECT tids.tid, tags.tag, tid_tag.val FROM tid_tag "
                "JOIN tids ON tids.ROWID = tid_tag.tid JOIN tags ON tags.ROWID = tid_tag.tag"
            ).fetchall()
    except sqlite3.Error as exc:
        raise DataFormatError(path, f"not a Last.fm-MSD lastfm_tags.db ({exc})") from None
    for track, tag, val in rows:
        yield str(track), str(tag), float(val)


def read_lastfm_msd_tags(path: str | Path, *, tracks: str | Path | dict[str, str] | None = None) -> SongTags:
    """Song id -> ``[(tag, weight), ...]`` heaviest first (ties alphabetically), from a Last.fm-MSD tag source.

    ``path``: a folder of per-track ``.json`` files (``lastfm_train``), one JSON file or JSON lines, or the SQLite
    ``lastfm_tags.db``. Records keyed by ``song_id`` are used as they are; those keyed by ``track_id`` go through
    ``tracks`` (``unique_tracks.txt`` or a dict; without one the track id is the key). Several tracks of one song
    keep each tag's largest weight; tags of weight 0 are kept (Last.fm rounds small counts down to 0).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Last.fm-MSD tag source not found: {path}")
    track_map = read_track_song_map(tracks) if isinstance(tracks, str | Path) else (tracks or {})
    best: dict[str, dict[str, float]] = {}

    def add(key: str, tag: str, weight: float) -> None:
        song = track_map.get(key, key)
        tags = best.setdefault(song, {})
        if weight > tags.get(tag, -np.inf):
            tags[tag] = weight

    if path.is_file() and strip_compression(path.name).lower().endswith((".db", ".sqlite")):
        for track, tag, weight in _sqlite_records(path):
            add(track, tag, weight)
    else:
        for file, where, record in _json_records(path):
            label = where or "record"
            if not isinstance(record, dict):
                raise DataFormatError(
                    file, f"{label}: expected a JSON object with 'track_id' (or 'song_id') and 'tags'"
                )
            key = record.get("song_id") or record.get("track_id")
            if not isinstance(key, str) or not key:
                raise DataFormatError(file, f"{label}: no 'song_id' or 'track_id'")
            for tag, weight in _tag_pairs(file, label, record.get("tags", [])):
                add(key, tag, weight)
    return {song: sorted(tags.items(), key=lambda tw: (-tw[1], tw[0])) for song, tags in sorted(best.items()) if tags}


def _first(folder: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        candidate = folder / name
        if candidate.is_dir() or is_file(candidate):
            return candidate
    return None


def read_msd_taste_profile(
    path: str | Path, *, tags: str | Path | None = None, tracks: str | Path | None = None, name: str | None = None
) -> RawDataset:
    """The taste profile (a folder holding ``train_triplets.txt[.gz]``, or the file itself) with its song tags.

    ``interactions``: ``user``, ``item`` (str ids), ``weight`` (the play count). ``item_info`` (index: song id),
    when a tag source is given or found beside the triplets (:data:`TAG_FILES`, with :data:`TRACK_FILES` for the
    track -> song map): ``tags`` (names, heaviest first) and ``tag_weights`` (their weights), for every song of the
    interactions (an untagged song has empty lists).
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    triplets = _first(path, TRIPLET_FILES) if path.is_dir() else path
    if triplets is None:
        raise FileNotFoundError(
            f"MSD taste profile not found: no {' or '.join(TRIPLET_FILES)} in {path} (download "
            "train_triplets.txt.zip from millionsongdataset.com and unzip it there)"
        )
    raw = read_playcount_triplets(triplets, name=name or "msd-taste-profile")
    tag_source = Path(tags) if tags is not None else _first(folder, TAG_FILES)
    if tag_source is None:
        return raw
    track_source = Path(tracks) if tracks is not None else _first(folder, TRACK_FILES)
    song_tags = read_lastfm_msd_tags(tag_source, tracks=track_source)
    songs = pd.Index(pd.unique(raw.interactions["item"].astype(str)), name="item")
    names = pd.Series({s: [t for t, _ in tw] for s, tw in song_tags.items()}, dtype=object)
    weights = pd.Series({s: [w for _, w in tw] for s, tw in song_tags.items()}, dtype=object)
    info = attach_tags(pd.DataFrame(index=songs), names)
    aligned = weights.reindex(songs)
    info["tag_weights"] = pd.Series([v if isinstance(v, list) else [] for v in aligned], index=songs)
    return RawDataset(raw.name, raw.interactions, info)
