"""Property-based fuzzing of the readers: random bytes, truncations of valid files, encodings, huge and odd ids.

The property everywhere: a reader either returns a correct frame or raises a :class:`DataFormatError`
naming the file -- never another exception. The whole module runs in well under a minute.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from recforge.data.readers import (
    DataFormatError,
    RawDataset,
    read_amazon_reviews,
    read_goodreads,
    read_lastfm_hetrec,
    read_movielens_1m,
    read_movielens_10m,
    read_movielens_100k,
    read_movielens_csv,
    read_playcount_triplets,
    read_table,
)
from recforge.data.readers._base import NULLS

FIXTURES = Path(__file__).parent / "fixtures"
# RECFORGE_FUZZ_EXAMPLES=2000 fuzzes longer (the default keeps the module at a few seconds on 2 cores)
EXAMPLES = int(os.environ.get("RECFORGE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="recforge-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table_reader(path: Path) -> RawDataset:
    return read_table(path, user_col="visitor", item_col="product id", rating_col="score", timestamp_col="when")


# name -> (file name inside the folder, reader of the folder, bytes of a valid file)
FORMATS: dict[str, tuple[str, Callable[[Path], RawDataset], bytes]] = {
    "table.tsv": ("events.tsv", lambda d: table_reader(d / "events.tsv"), (FIXTURES / "table/events.tsv").read_bytes()),
    "table.csv.gz": (
        "events.csv.gz",
        lambda d: table_reader(d / "events.csv.gz"),
        gzip.compress((FIXTURES / "table/events.tsv").read_bytes().replace(b"\t", b",")),
    ),
    "ml-100k u.data": ("u.data", read_movielens_100k, (FIXTURES / "ml-100k/u.data").read_bytes()),
    "ml-1m ratings.dat": ("ratings.dat", read_movielens_1m, (FIXTURES / "ml-1m/ratings.dat").read_bytes()),
    "ml-1m movies.dat": ("movies.dat", read_movielens_1m, (FIXTURES / "ml-1m/movies.dat").read_bytes()),
    "ml-10m tags.dat": ("tags.dat", read_movielens_10m, (FIXTURES / "ml-10M100K/tags.dat").read_bytes()),
    "ml-20m ratings.csv": ("ratings.csv", read_movielens_csv, (FIXTURES / "ml-20m/ratings.csv").read_bytes()),
    "ml-20m movies.csv": ("movies.csv", read_movielens_csv, (FIXTURES / "ml-20m/movies.csv").read_bytes()),
    "lastfm user_artists.dat": (
        "user_artists.dat",
        read_lastfm_hetrec,
        (FIXTURES / "hetrec2011-lastfm-2k/user_artists.dat").read_bytes(),
    ),
    "lastfm tags.dat": ("tags.dat", read_lastfm_hetrec, (FIXTURES / "hetrec2011-lastfm-2k/tags.dat").read_bytes()),
    "amazon json": (
        "reviews.json",
        lambda d: read_amazon_reviews(d / "reviews.json"),
        (FIXTURES / "amazon/reviews_Tiny_5.json").read_bytes(),
    ),
    "amazon json.gz": (
        "reviews.json.gz",
        lambda d: read_amazon_reviews(d / "reviews.json.gz"),
        gzip.compress((FIXTURES / "amazon/reviews_Tiny_5.json").read_bytes()),
    ),
    "goodreads json": (
        "g.json",
        lambda d: read_goodreads(d / "g.json"),
        (FIXTURES / "goodreads/goodreads_interactions_poetry.json").read_bytes(),
    ),
    "goodreads csv": (
        "goodreads_interactions.csv",
        lambda d: read_goodreads(d / "goodreads_interactions.csv"),
        (FIXTURES / "goodreads/goodreads_interactions.csv").read_bytes(),
    ),
    "msd triplets": (
        "train_triplets.txt",
        lambda d: read_playcount_triplets(d / "train_triplets.txt"),
        (FIXTURES / "msd/train_triplets.txt").read_bytes(),
    ),
}
# the folder readers also need their other official files
SIDE_FILES = {
    "ml-1m movies.dat": {"ratings.dat": FIXTURES / "ml-1m/ratings.dat"},
    "ml-10m tags.dat": {"ratings.dat": FIXTURES / "ml-10M100K/ratings.dat"},
    "ml-20m movies.csv": {"ratings.csv": FIXTURES / "ml-20m/ratings.csv"},
    "lastfm tags.dat": {
        "user_artists.dat": FIXTURES / "hetrec2011-lastfm-2k/user_artists.dat",
        "user_taggedartists.dat": FIXTURES / "hetrec2011-lastfm-2k/user_taggedartists.dat",
    },
}


def check_frame(raw: RawDataset) -> None:
    """What every successfully read frame must satisfy."""
    frame = raw.interactions
    assert list(frame.columns[:2]) == ["user", "item"]
    for col in ("user", "item"):
        values = frame[col]
        assert values.dtype == np.int64 or all(isinstance(v, str) for v in values), (col, values.dtype)
        assert not values.isna().any()
    for col in ("rating", "weight"):
        if col in frame:
            assert frame[col].dtype == np.float32 and np.isfinite(frame[col].to_numpy()).all()
    if "timestamp" in frame and frame["timestamp"].dtype != "Int64":
        assert frame["timestamp"].dtype == np.int64


def read_or_refuse(folder: Path, name: str, reader: Callable[[Path], RawDataset]) -> RawDataset | None:
    """The reader's frame (checked), or None when it raised a DataFormatError naming a file in ``folder``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not valid UTF-8; reading it as Latin-1"
        try:
            raw = reader(folder)
        except DataFormatError as exc:
            assert str(folder) in str(exc) and exc.path.parent == folder, str(exc)
            return None
    check_frame(raw)
    return raw


def write(folder: Path, fmt: str, content: bytes) -> None:
    name = FORMATS[fmt][0]
    for side, source in SIDE_FILES.get(fmt, {}).items():
        shutil.copy(source, folder / side)
    (folder / name).write_bytes(content)


# ------------------------------------------------------------------------------------------ random bytes


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FUZZ
@given(data=st.one_of(st.binary(max_size=1500), st.text(max_size=400).map(lambda t: t.encode("utf-8"))))
def test_random_bytes(fmt: str, data: bytes) -> None:
    name, reader, _ = FORMATS[fmt]
    if name.endswith(".gz") and data[:1] == b"\x1f":
        data = gzip.compress(data)  # also get past the magic bytes now and then
    with scratch() as folder:
        write(folder, fmt, data)
        read_or_refuse(folder, name, reader)


@FUZZ
@given(data=st.binary(max_size=3000), keep=st.integers(0, 64))
def test_random_bytes_as_parquet(data: bytes, keep: int) -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"u": [1, 2], "i": ["a", "b"], "r": [1.0, 2.0]}), sink)
    valid = sink.getvalue()
    content = valid[:keep] + data if keep else data  # garbage, or a Parquet start followed by garbage
    with scratch() as folder:
        (folder / "t.parquet").write_bytes(content)
        read_or_refuse(folder, "t.parquet", lambda d: read_table(d / "t.parquet", user_col="u", item_col="i"))


# ------------------------------------------------------------------------------------------ truncations


def rows(raw: RawDataset) -> list[list[str]]:
    return [[str(v) for v in row] for row in raw.interactions.to_numpy().tolist()]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FUZZ
@given(cut=st.floats(0, 1), compressed_cut=st.booleans())
def test_truncations_of_valid_files(fmt: str, cut: float, compressed_cut: bool) -> None:
    name, reader, valid = FORMATS[fmt]
    with scratch() as folder:
        write(folder, fmt, valid)
        full = reader(folder)
        if name.endswith(".gz") and not compressed_cut:
            plain = gzip.decompress(valid)
            content = gzip.compress(plain[: int(len(plain) * cut)])  # a complete gzip of a cut file
        else:
            content = valid[: int(len(valid) * cut)]  # cut bytes (for .gz: a truncated stream)
        write(folder, fmt, content)
        raw = read_or_refuse(folder, name, reader)
    if raw is not None and fmt in ("table.tsv", "ml-100k u.data", "ml-1m ratings.dat", "ml-20m ratings.csv"):
        got, want = rows(raw), rows(full)
        assert len(got) <= len(want)
        assert got[:-1] == want[: max(len(got) - 1, 0)]  # complete lines read as before; the last may be cut


# ------------------------------------------------------------------------------------------ encodings

NAME_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=',"\t\r\n\x85')


@FUZZ
@given(
    names=st.lists(st.text(NAME_CHARS, min_size=1, max_size=8), min_size=1, max_size=6),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le", "utf-32"]),
)
def test_encodings(names: list[str], encoding: str) -> None:
    assume(all(n.strip() and n.strip() not in NULLS for n in names))
    text = "user,item,rating\n" + "".join(f"{n},item{k},4\n" for k, n in enumerate(names))
    try:
        content = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    with scratch() as folder:
        path = folder / "t.csv"
        path.write_bytes(content)
        raw = read_or_refuse(folder, "t.csv", lambda d: read_table(path, user_col="user", item_col="item"))
    if encoding in ("utf-8", "utf-8-sig", "latin-1"):  # exactly the names written
        assert raw is not None
        assert [str(u) for u in raw.interactions["user"]] == names
    elif raw is not None:  # another encoding: never bytes, and what was read are whole rows
        assert len(raw.interactions) == len(names)


# ------------------------------------------------------------------------------------------ huge and odd ids

ODD_IDS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.sampled_from(["007", "+5", "-0", "1e5", "0x1F", "１２", " 12", "12 ", "NA", "", "nan", "None", "٣"]),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6),
).map(str)


def canonical_int(text: str) -> bool:
    import re

    return bool(re.fullmatch(r"0|-?[1-9][0-9]*", text)) and -(2**63) <= int(text) < 2**63


@FUZZ
@given(ids=st.lists(ODD_IDS, min_size=1, max_size=8), fmt=st.sampled_from(["csv", "tsv", "parquet"]))
def test_huge_and_odd_ids(ids: list[str], fmt: str) -> None:
    with scratch() as folder:
        path = folder / f"t.{fmt}"
        frame = pd.DataFrame({"u": ids, "i": [f"i{k}" for k in range(len(ids))], "r": [4.0] * len(ids)})
        if fmt == "parquet":
            frame.to_parquet(path)
        else:
            buffer = io.StringIO()
            frame.to_csv(buffer, sep="," if fmt == "csv" else "\t", index=False, quoting=csv.QUOTE_MINIMAL)
            path.write_text(buffer.getvalue(), encoding="utf-8")
        raw = read_or_refuse(folder, path.name, lambda d: read_table(path, user_col="u", item_col="i", rating_col="r"))
    plain = all(i.strip() and i.strip() not in NULLS and not set(i) & set("\n\r\0") for i in ids)
    if raw is None:
        assert not plain, ids  # only missing ids, line breaks or NUL bytes (binary data) may be refused
        return
    users = raw.interactions["user"]
    assert users.dtype.kind != "f"
    if not plain:  # e.g. a bare "\r" in an id is a line break in a CSV file: no exact round trip to expect
        return
    if users.dtype == np.int64:
        assert all(canonical_int(i) for i in ids) and users.tolist() == [int(i) for i in ids]
    else:
        assert users.tolist() == ids  # exactly as written: nothing rounded, nothing trimmed


# ------------------------------------------------------------------------------------------ JSON structure

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5))
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
)
AMAZON_KEYS = ["reviewerID", "asin", "overall", "unixReviewTime", "reviewText", "summary"]
RECORDS = st.one_of(
    st.fixed_dictionaries({k: JSON_VALUES for k in AMAZON_KEYS[:4]}),  # the right keys, any values
    st.dictionaries(st.sampled_from(AMAZON_KEYS), JSON_VALUES, max_size=6),
    JSON_VALUES,  # anything at all on a line: null, numbers, lists...
)


@FUZZ
@given(
    records=st.lists(RECORDS, max_size=6),
    blank=st.sampled_from(["\n", "\r\n", "\n\n", " \n"]),
    gz=st.booleans(),
)
def test_json_lines_of_any_structure(records: list, blank: str, gz: bool) -> None:
    import json

    text = blank.join(json.dumps(r, allow_nan=True) for r in records)
    content = gzip.compress(text.encode()) if gz else text.encode()
    name = "r.json.gz" if gz else "r.json"
    with scratch() as folder:
        (folder / name).write_bytes(content)
        raw = read_or_refuse(folder, name, lambda d: read_amazon_reviews(d / name))
        goodreads = read_or_refuse(folder, name, lambda d: read_goodreads(d / name))
    assert goodreads is None or len(goodreads.interactions) == len(records)
    if raw is not None:  # accepted: every line was a review with string ids, a finite rating and a time
        assert len(raw.interactions) == len(records)
        for record, (user, item) in zip(records, raw.interactions[["user", "item"]].to_numpy().tolist(), strict=True):
            assert (record["reviewerID"], record["asin"]) == (user, item)
