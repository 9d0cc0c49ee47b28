"""The readers' bad-input suite: one row per case (the files, the reader, the error type and the words it must say).

Every case must end in a :class:`DataFormatError` naming the file (and the line and field where there is
one) or a :class:`PermissionError` naming the file -- never a raw pandas/pyarrow/zlib/UnicodeDecodeError
traceback, and never a frame holding ``inf``/``NaN`` or ids turned into floats.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recforge.data.readers import (
    DataFormatError,
    _base,
    json_lines,
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

AMAZON_OK = b'{"reviewerID": "a", "asin": "b", "overall": 5.0, "unixReviewTime": 1}\n'
BINARY = bytes(range(256)) * 4  # NUL and control bytes: what random bytes or a stray archive look like


def amazon(overall: str) -> bytes:
    return AMAZON_OK + b'{"reviewerID": "a", "asin": "c", "overall": %s, "unixReviewTime": 2}\n' % overall.encode()


def parquet(**columns: list) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


def table(name: str, **cols: str) -> Callable[[Path], object]:
    cols = {"user_col": "u", "item_col": "i", "rating_col": "r", **cols}
    return lambda root: read_table(root / name, **cols)


def file(reader: Callable[[Path], object], name: str) -> Callable[[Path], object]:
    return lambda root: reader(root / name)


@dataclass(frozen=True)
class Case:
    """Write ``files`` under a fresh folder, call ``read(folder)``: it must raise ``error`` saying ``words``.

    The message must also name ``culprit`` (default: the first file). ``line``/``field`` are checked
    on a DataFormatError. ``unreadable`` names a file that reading must find unreadable.
    """

    id: str
    files: dict[str, bytes]
    read: Callable[[Path], object]
    error: type[Exception]
    words: tuple[str, ...]
    line: int | None = None
    field: str | None = None
    culprit: str | None = None
    unreadable: str | None = None


GZ_CSV = gzip.compress(b"u,i,r\n" + b"".join(b"%d,%d,4\n" % (n, n * 7) for n in range(20_000)))
GZ_JSON = gzip.compress(AMAZON_OK * 5_000)
TS_LINE7 = b"u,i,r,t\n" + b"".join(b"1,%d,3,97830%d\n" % (n, n) for n in range(5)) + b"1,9,3,yesterday\n"

CASES = [
    # ------------------------------------------------------------------ values: inf, -inf, 1e39, NaN, null
    Case(
        "csv-inf",
        {"t.csv": b"u,i,r\n1,2,3\n1,3,inf\n"},
        table("t.csv"),
        DataFormatError,
        ("not a finite number",),
        3,
        "r",
    ),
    Case(
        "csv--inf", {"t.csv": b"u,i,r\n1,2,3\n1,3,-inf\n"}, table("t.csv"), DataFormatError, ("not a finite",), 3, "r"
    ),
    Case(
        "csv-1e39", {"t.csv": b"u,i,r\n1,2,3\n1,3,1e39\n"}, table("t.csv"), DataFormatError, ("32-bit float",), 3, "r"
    ),
    Case("csv-NaN", {"t.csv": b"u,i,r\n1,2,3\n1,3,NaN\n"}, table("t.csv"), DataFormatError, ("missing value",), 3, "r"),
    Case(
        "tsv-weight-Infinity",
        {"t.tsv": b"u\ti\tw\n1\t2\tInfinity\n"},
        table("t.tsv", rating_col=None, weight_col="w"),
        DataFormatError,
        ("not a finite number",),
        2,
        "w",
    ),
    Case(
        "csv-1e39-multichar-sep",
        {"t.dat": b"u::i::r\n1::2::3\n1::3::1e39\n"},
        table("t.dat", sep="::"),
        DataFormatError,
        ("32-bit float",),
        3,
        "r",
    ),
    Case(
        "parquet-inf",
        {"t.parquet": parquet(u=[1, 2], i=[3, 4], r=[1.0, float("inf")])},
        table("t.parquet"),
        DataFormatError,
        ("(row 1)", "not a finite number"),
        None,
        "r",
    ),
    Case(
        "parquet-NaN",
        {"t.parquet": parquet(u=[1, 2], i=[3, 4], r=[float("nan"), 1.0])},
        table("t.parquet"),
        DataFormatError,
        ("(row 0)",),
        None,
        "r",
    ),
    Case(
        "parquet-1e39",
        {"t.parquet": parquet(u=[1, 2], i=[3, 4], r=[1.0, 1e39])},
        table("t.parquet"),
        DataFormatError,
        ("(row 1)", "32-bit float"),
        None,
        "r",
    ),
    Case(
        "ml100k-inf",
        {"u.data": b"1\t2\t3\t4\n1\t3\tinf\t5\n"},
        read_movielens_100k,
        DataFormatError,
        ("'inf' is not a finite number",),
        2,
        "rating",
    ),
    Case(
        "ml1m-1e39",
        {"ratings.dat": b"1::2::3::4\n1::3::1e39::5\n"},
        read_movielens_1m,
        DataFormatError,
        ("'1e39' is too large for a 32-bit float",),
        2,
        "rating",
    ),
    Case(
        "ml10m-NaN",
        {"ratings.dat": b"1::2::3::4\n1::3::NaN::5\n"},
        read_movielens_10m,
        DataFormatError,
        ("missing value ('NaN')",),
        2,
        "rating",
    ),
    Case(
        "mlcsv--inf",
        {"ratings.csv": b"userId,movieId,rating,timestamp\n1,2,3.5,4\n1,3,-inf,5\n"},
        read_movielens_csv,
        DataFormatError,
        ("'-inf' is not a finite number",),
        3,
        "rating",
    ),
    Case(
        "hetrec-Infinity",
        {"user_artists.dat": b"userID\tartistID\tweight\n2\t51\t13883\n2\t52\tInfinity\n"},
        read_lastfm_hetrec,
        DataFormatError,
        ("'Infinity' is not a finite number",),
        3,
        "weight",
    ),
    Case(
        "msd-1e39",
        {"triplets.txt": b"a\tb\t3\na\tc\t1e39\n"},
        file(read_playcount_triplets, "triplets.txt"),
        DataFormatError,
        ("32-bit float",),
        2,
        "weight",
    ),
    Case(
        "amazon-NaN",
        {"r.json": amazon("NaN")},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("NaN",),
        2,
        "overall",
    ),
    Case(
        "amazon-null",
        {"r.json": amazon("null")},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("missing value",),
        2,
        "overall",
    ),
    Case(
        "amazon-Infinity",
        {"r.json": amazon("Infinity")},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("not a finite number",),
        2,
        "overall",
    ),
    Case(
        "amazon-1e39",
        {"r.json": amazon("1e39")},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("32-bit float",),
        2,
        "overall",
    ),
    Case(
        "goodreads-json-NaN",
        {
            "g.json": b'{"user_id": "u", "book_id": "1", "rating": 4}\n\n'
            b'{"user_id": "u", "book_id": "2", "rating": NaN}\n'
        },
        file(read_goodreads, "g.json"),
        DataFormatError,
        ("NaN",),
        3,
        "rating",
    ),
    Case(
        "goodreads-csv-inf",
        {"goodreads_interactions.csv": b"user_id,book_id,rating\n1,2,3\n1,3,inf\n"},
        file(read_goodreads, "goodreads_interactions.csv"),
        DataFormatError,
        ("not a finite number",),
        3,
        "rating",
    ),
    # ------------------------------------------------------------------ ids
    Case(
        "mlcsv-id-above-int64",
        {"ratings.csv": b"userId,movieId,rating,timestamp\n1,2,3,4\n99999999999999999999,3,4,5\n"},
        read_movielens_csv,
        DataFormatError,
        ("'99999999999999999999' is outside the 64-bit integer range",),
        3,
        "user",
    ),
    Case(
        "ml1m-id-6.5",
        {"ratings.dat": b"1::2::3::4\n6.5::3::4::5\n"},
        read_movielens_1m,
        DataFormatError,
        ("'6.5' is not an integer",),
        2,
        "user",
    ),
    Case(
        "csv-missing-id",
        {"t.csv": b'u,i,r\n1,"two\nlines",3\n,3,4\n'},
        table("t.csv"),
        DataFormatError,
        ("missing value", "an id is required"),
        4,  # the quoted record spans lines 2-3
        "u",
    ),
    Case(
        "csv-NA-id",
        {"t.csv": b"u,i,r\n1,2,3\n1,NA,4\n"},
        table("t.csv"),
        DataFormatError,
        ("missing value ('NA')",),
        3,
        "i",
    ),
    Case(
        "amazon-latin1",
        {
            "r.json": AMAZON_OK
            + '{"reviewerID": "José", "asin": "c", "overall": 4, "unixReviewTime": 2}\n'.encode("latin-1")
        },
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("not UTF-8 text", "0xe9"),
        2,
    ),
    Case(
        "amazon-number-id",
        {"r.json": AMAZON_OK + b'{"reviewerID": "a", "asin": 12, "overall": 4, "unixReviewTime": 2}\n'},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("12 does not have the expected type string",),
        2,
        "asin",
    ),
    Case(
        "amazon-empty-id",
        {"r.json": AMAZON_OK + b'{"reviewerID": " ", "asin": "c", "overall": 4, "unixReviewTime": 2}\n'},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("missing value",),
        2,
        "reviewerID",
    ),
    # ------------------------------------------------------------------ corrupt, truncated, mislabelled files
    Case(
        "csv-gz-truncated",
        {"t.csv.gz": GZ_CSV[: len(GZ_CSV) // 2]},
        table("t.csv.gz"),
        DataFormatError,
        ("gzip data is truncated or corrupt",),
    ),
    Case(
        "csv-gz-not-gzip",
        {"t.csv.gz": b"u,i,r\n1,2,3\n"},
        table("t.csv.gz"),
        DataFormatError,
        ("not a gzip file", "ends in .gz"),
    ),
    Case("csv-gz-empty", {"t.csv.gz": b""}, table("t.csv.gz"), DataFormatError, ("not a gzip file",)),
    Case(
        "csv-gz-garbled",
        {"t.csv.gz": GZ_CSV[:20] + bytes(200) + GZ_CSV[220:]},
        table("t.csv.gz"),
        DataFormatError,
        ("gzip data is truncated or corrupt",),
    ),
    Case(
        "csv-bz2-corrupt",
        {"t.csv.bz2": b"BZh91AY&SY" + BINARY[:100]},
        table("t.csv.bz2"),
        DataFormatError,
        ("bzip2 data is truncated or corrupt",),
    ),
    Case("csv-random-bytes", {"t.csv": BINARY}, table("t.csv"), DataFormatError, ("not a text file", "binary")),
    Case(
        "csv-utf16",
        {"t.csv": "u,i,r\n1,2,3\n".encode("utf-16")},
        table("t.csv"),
        DataFormatError,
        ("binary data", "UTF-16"),
    ),
    Case("csv-empty", {"t.csv": b""}, table("t.csv"), DataFormatError, ("the file is empty",), 1),
    Case(
        "csv-duplicate-column",
        {"t.csv": b"u,u,i,r\n1,2,3,4\n"},
        table("t.csv"),
        DataFormatError,
        ("'u' appear more than once",),
        1,
    ),
    Case(
        "parquet-garbage",
        {"t.parquet": b"definitely not parquet"},
        table("t.parquet"),
        DataFormatError,
        ("not a Parquet file",),
    ),
    Case(
        "parquet-truncated",
        {"t.parquet": parquet(u=[1, 2], i=[3, 4], r=[1.0, 2.0])[:-30]},
        table("t.parquet"),
        DataFormatError,
        ("not a readable Parquet file",),
    ),
    Case(
        "parquet-cut-metadata",
        {"t.parquet": parquet(u=[1], i=[2], r=[3.0])[:24] + b"PAR1"},
        table("t.parquet"),
        DataFormatError,
        ("not a readable Parquet file",),
    ),
    Case("ml100k-random-bytes", {"u.data": BINARY}, read_movielens_100k, DataFormatError, ("binary data",)),
    Case(
        "ml1m-binary-side-file",
        {"ratings.dat": b"1::2::3::4\n", "movies.dat": BINARY},
        read_movielens_1m,
        DataFormatError,
        ("binary data",),
        culprit="movies.dat",
    ),
    Case(
        "json-gz-truncated",
        {"r.json.gz": GZ_JSON[: len(GZ_JSON) // 2]},
        file(read_amazon_reviews, "r.json.gz"),
        DataFormatError,
        ("gzip data is truncated or corrupt",),
    ),
    Case(
        "json-gz-not-gzip",
        {"r.json.gz": AMAZON_OK},
        file(read_amazon_reviews, "r.json.gz"),
        DataFormatError,
        ("not a gzip file",),
    ),
    Case(
        "json-random-bytes", {"r.json": BINARY}, file(read_amazon_reviews, "r.json"), DataFormatError, ("binary data",)
    ),
    Case(
        "json-not-json",
        {"r.json": AMAZON_OK + b'{"reviewerID": "a", \n'},
        file(read_amazon_reviews, "r.json"),
        DataFormatError,
        ("not valid JSON",),
        2,
    ),
    Case(
        "msd-gz-truncated",
        {"t.txt.gz": gzip.compress(b"".join(b"u%d\ts%d\t%d\n" % (n, n, n) for n in range(20_000)))[:4000]},
        file(read_playcount_triplets, "t.txt.gz"),
        DataFormatError,
        ("gzip data is truncated or corrupt",),
    ),
    Case(
        "goodreads-gz-truncated",
        {"g.json.gz": gzip.compress(b'{"user_id": "u", "book_id": "1", "rating": 4}\n' * 5000)[:500]},
        file(read_goodreads, "g.json.gz"),
        DataFormatError,
        ("gzip data is truncated or corrupt",),
    ),
    # ------------------------------------------------------------------ timestamps: the line of the bad value
    Case(
        "csv-bad-timestamp-line-7",
        {"t.csv": TS_LINE7},
        table("t.csv", timestamp_col="t"),
        DataFormatError,
        ("'yesterday' is not a unix time",),
        7,
        "t",
    ),
    Case(
        "csv-fractional-timestamp",
        {"t.csv": b"u,i,r,t\n1,2,3,100\n1,3,3,100\n1,4,3,100.5\n"},
        table("t.csv", timestamp_col="t"),
        DataFormatError,
        ("100.5 is not a whole number of unix seconds",),
        4,
        "t",
    ),
    Case(
        "csv-bad-date-line-5",
        {"t.csv": b"u,i,r,t\n1,2,3,2020-01-01\n1,3,3,2020-01-02\n1,4,3,2020-01-03\n1,5,3,someday\n"},
        table("t.csv", timestamp_col="t"),
        DataFormatError,
        ("'someday' is not a date",),
        5,
        "t",
    ),
    Case(
        "goodreads-bad-date-line",
        {
            "g.json": b'{"user_id": "u", "book_id": "1", "rating": 4, "date_added": "Tue Oct 17 07:36:49 -0700 2017"}\n'
            b'\n{"user_id": "u", "book_id": "2", "rating": 4, "date_added": "soon"}\n'
        },
        file(read_goodreads, "g.json"),
        DataFormatError,
        ("cannot parse 'soon'",),
        3,
        "date_added",
    ),
    # ------------------------------------------------------------------ unreadable files (permission denied)
    Case(
        "csv-unreadable",
        {"t.csv": b"u,i,r\n1,2,3\n"},
        table("t.csv"),
        PermissionError,
        ("cannot read", "permission denied"),
        unreadable="t.csv",
    ),
    Case(
        "ml100k-unreadable",
        {"u.data": b"1\t2\t3\t4\n"},
        read_movielens_100k,
        PermissionError,
        ("cannot read",),
        unreadable="u.data",
    ),
    Case(
        "ml1m-unreadable-side-file",
        {"ratings.dat": b"1::2::3::4\n", "movies.dat": b"2::A (1999)::Drama\n"},
        read_movielens_1m,
        PermissionError,
        ("cannot read",),
        culprit="movies.dat",
        unreadable="movies.dat",
    ),
    Case(
        "json-unreadable",
        {"r.json": AMAZON_OK},
        file(read_amazon_reviews, "r.json"),
        PermissionError,
        ("cannot read",),
        unreadable="r.json",
    ),
    Case(
        "parquet-unreadable",
        {"t.parquet": parquet(u=[1], i=[2], r=[3.0])},
        table("t.parquet"),
        PermissionError,
        ("cannot read",),
        unreadable="t.parquet",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content)
    if case.unreadable is not None:
        denied = tmp_path / case.unreadable
        real_open = _base.open_file

        def open_file(path, *args, **kwargs):  # as root chmod cannot deny a read: the open fails as it would
            if Path(path) == denied:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(_base, "open_file", open_file)
    with pytest.raises(case.error) as info:
        case.read(tmp_path)
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    message = str(err)
    culprit = tmp_path / (case.culprit or next(iter(case.files)))
    assert str(culprit) in message, message
    for words in case.words:
        assert words in message, message
    assert "\n" not in message
    assert "No such file or directory" not in message
    if isinstance(err, DataFormatError):
        assert err.path == culprit
        assert (err.line, err.field) == (case.line, case.field), message


def test_every_issue_case_is_in_the_table() -> None:
    ids = {c.id for c in CASES}
    for needed in (
        "csv-inf",
        "csv--inf",
        "csv-1e39",
        "csv-NaN",
        "parquet-inf",
        "ml100k-inf",
        "hetrec-Infinity",
        "amazon-NaN",
        "amazon-null",
        "csv-gz-truncated",
        "csv-gz-not-gzip",
        "csv-random-bytes",
        "json-gz-truncated",
        "csv-bad-timestamp-line-7",
        "csv-unreadable",
    ):
        assert needed in ids


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="needs fork (Linux)")
def test_a_really_unreadable_file(tmp_path: Path) -> None:
    """With real permissions: chmod 000 (as root: in a child process that gives up root)."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"u,i,r\n1,2,3\n")
    path.chmod(0)
    tmp_path.chmod(0o755)
    if os.geteuid() != 0:
        with pytest.raises(PermissionError, match="cannot read") as info:
            read_table(path, user_col="u", item_col="i")
        assert str(path) in str(info.value)
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, read, report, leave without running any pytest machinery
        code = 0
        try:
            os.close(read)
            try:
                os.setgid(65534)
                os.setuid(65534)
            except OSError:
                os.write(write, b"SKIP")
                raise SystemExit from None
            try:
                read_table(path, user_col="u", item_col="i")
                report = "no error"
            except Exception as exc:
                report = f"{type(exc).__name__}|{exc}"
            os.write(write, report.encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        report = fh.read().decode()
    os.waitpid(pid, 0)
    if report == "SKIP":
        pytest.skip("cannot drop root privileges here")
    kind, _, message = report.partition("|")
    assert kind == "PermissionError" and "cannot read" in message and str(path) in message, report


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64])
def test_a_line_starting_with_null_is_found_across_read_chunks(
    chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare ``null`` line kills pyarrow's JSON reader (apache/arrow#47409): it must be caught before."""
    monkeypatch.setattr(json_lines, "_SCAN_CHUNK", chunk)
    path = tmp_path / "r.json"
    for content, line in (
        (b"null", 1),
        (b" \t null\n" + AMAZON_OK, 1),
        (AMAZON_OK + b"\r\n   \t null\n", 3),
        (AMAZON_OK * 2 + b"null", 3),
    ):
        path.write_bytes(content)
        assert json_lines._line_starting_with_null(path)
        with pytest.raises(DataFormatError, match="expected a JSON object") as info:
            read_amazon_reviews(path)
        assert info.value.line == line
    clean = AMAZON_OK.replace(b'"b"', b'"b", "reviewText": "a null\\nnull line: null"')
    path.write_bytes(clean * 3)
    assert not json_lines._line_starting_with_null(path)
    assert len(read_amazon_reviews(path).interactions) == 3
