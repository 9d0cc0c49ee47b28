"""JSON lines readers: Amazon reviews (McAuley 2014, Ni & McAuley 2018) and Goodreads (UCSD Book Graph).

JSON text is UTF-8 (RFC 8259): a file that is not is refused with the line of the first bad byte.
Ids are the JSON strings as written (a number where a string id belongs is refused); ratings must be
finite and fit a float32 (``NaN``, ``Infinity``, ``1e39`` and ``null`` are refused with file, line and field).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from recforge.data.readers._base import (
    INT64_MAX,
    INT64_MIN,
    DataFormatError,
    Field,
    RawDataset,
    arrow_stream,
    finite_float32,
    header_fields,
    name_of,
    need_input,
    number_problem,
    open_binary,
    probe,
    read_arrow_csv,
    reading,
    strip_compression,
    to_pandas,
)

__all__ = ["read_amazon_reviews", "read_goodreads"]


def _read_json_lines(path: Path, schema: pa.Schema, required: Sequence[str]) -> pa.Table:
    """Read JSON lines (plain or compressed) keeping only ``schema``'s fields; precise errors on bad input.

    ``required`` fields may not be null (string ones not empty either); float fields must be finite
    and fit a float32.
    """
    probe(path)
    if _line_starting_with_null(path):  # would crash pyarrow's reader: find the bad line in Python instead
        located = _locate_json_error(path, schema, required)
        if located is not None:
            raise located
    try:
        with reading(path):
            table = pajson.read_json(
                arrow_stream(path),
                read_options=pajson.ReadOptions(block_size=1 << 24),
                parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
        problem = _table_problem(table, schema, required)
        if problem is None:
            return table
    except pa.ArrowInvalid as exc:
        problem = str(exc)
    raise _locate_json_error(path, schema, required) or DataFormatError(path, problem)


_SCAN_CHUNK = 1 << 24
_NULL_LINE = re.compile(rb"(?:\A|\n)[ \t\r]*null")
_LINE_START = re.compile(rb"\n?[ \t\r]*")


def _line_starting_with_null(path: Path) -> bool:
    """Whether a line of ``path`` starts with a bare JSON ``null``.

    pyarrow's JSON reader (26.0, apache/arrow#47409) dereferences a null pointer -- the process dies
    with a segmentation fault -- when the first value of a block is a top-level ``null``; blocks start
    at line starts, so such lines are looked for (one pass, in C) before the file is handed to it.
    """
    carry = b""
    with open_binary(path) as fh:
        while chunk := fh.read(_SCAN_CHUNK):
            data = carry + chunk
            if b"null" in data and _NULL_LINE.search(data):
                return True
            newline = data.rfind(b"\n")
            tail = data[newline:] if newline >= 0 else data
            carry = tail[: _LINE_START.match(tail).end() + 4]  # the last line's start: enough to see a "null"
    return False


def _table_problem(table: pa.Table, schema: pa.Schema, required: Sequence[str]) -> str | None:
    for f in schema:
        column = table.column(f.name)
        if f.name in required:
            if column.null_count:
                return "missing value"
            if pa.types.is_string(f.type) and pc.any(pc.equal(pc.utf8_trim_whitespace(column), "")).as_py():
                return "missing value"
        if pa.types.is_floating(f.type) and not finite_float32(column):
            return "a number that is not a finite float32"
    return None


def _locate_json_error(path: Path, schema: pa.Schema, required: Sequence[str]) -> DataFormatError | None:
    checks: dict[str, Callable[[Any], bool]] = {}
    for f in schema:
        if pa.types.is_string(f.type):
            checks[f.name] = lambda v: isinstance(v, str)
        elif pa.types.is_integer(f.type):
            checks[f.name] = lambda v: isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX
        elif pa.types.is_floating(f.type):
            checks[f.name] = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
        elif pa.types.is_boolean(f.type):
            checks[f.name] = lambda v: isinstance(v, bool)
    with open_binary(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return DataFormatError(
                    path, f"not UTF-8 text (byte {raw[exc.start]:#04x}); JSON files must be UTF-8", line=line_no
                )
            try:
                record = json.loads(text)
            except (ValueError, RecursionError) as exc:
                return DataFormatError(path, f"not valid JSON ({exc})", line=line_no)
            if not isinstance(record, dict):
                return DataFormatError(path, "expected a JSON object", line=line_no)
            for name, ok in checks.items():
                value = record.get(name)
                if value is None or (name in required and isinstance(value, str) and not value.strip()):
                    if name in required:
                        return DataFormatError(path, "missing value", line=line_no, field=name)
                elif not ok(value):
                    return DataFormatError(
                        path,
                        f"{value!r} does not have the expected type {schema.field(name).type}",
                        line=line_no,
                        field=name,
                    )
                elif pa.types.is_floating(schema.field(name).type) and (
                    problem := number_problem(_float(value), value)
                ):
                    return DataFormatError(path, problem, line=line_no, field=name)
    return None


def _float(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        return math.inf


def _line_of_json_record(path: Path, row: int) -> int | None:
    """The line of JSON record ``row`` (0-based; blank lines hold no record)."""
    with open_binary(path) as fh:
        index = -1
        for line_no, raw in enumerate(fh, start=1):
            if raw.strip():
                index += 1
                if index == row:
                    return line_no
    return None


def read_amazon_reviews(
    path: str | Path,
    *,
    name: str | None = None,
    bad_lines: Literal["error", "skip"] = "error",
    require_text: bool = False,
    ratings: Sequence[float] | None = None,
) -> RawDataset:
    """Amazon reviews as JSON lines, plain or ``.gz`` (McAuley 2014 and Ni & McAuley 2018 5-core files).

    reviewerID -> ``user``, asin -> ``item`` (both str), overall -> ``rating``, unixReviewTime ->
    ``timestamp``, plus ``review_text`` (reviewText, "" when missing) and ``summary`` ("" when missing).

    Bad lines (not JSON, a required field missing or of the wrong type, a rating that is not finite) are
    refused with the file, line and field (``bad_lines="error"``, the default), or left out with a
    ``UserWarning`` that counts them and names the first lines (``bad_lines="skip"``). ``require_text`` makes
    a missing or empty reviewText a bad line (text models need it); ``ratings`` lists the allowed rating
    values (e.g. ``(1, 2, 3, 4, 5)``), any other is a bad line.
    """
    if bad_lines not in ("error", "skip"):
        raise ValueError(f"bad_lines must be 'error' or 'skip', got {bad_lines!r}")
    path = need_input(Path(path), "Amazon reviews", "read_amazon_reviews")
    if bad_lines == "skip" or require_text or ratings is not None:
        return _read_amazon_checked(path, name, bad_lines, require_text, ratings)
    schema = pa.schema(
        [
            ("reviewerID", pa.string()),
            ("asin", pa.string()),
            ("overall", pa.float32()),
            ("unixReviewTime", pa.int64()),
            ("reviewText", pa.string()),
            ("summary", pa.string()),
        ]
    )
    table = _read_json_lines(path, schema, ("reviewerID", "asin", "overall", "unixReviewTime"))
    table = table.rename_columns(["user", "item", "rating", "timestamp", "review_text", "summary"])
    frame = to_pandas(table)
    for col in ("review_text", "summary"):
        frame[col] = frame[col].fillna("")
    return RawDataset(name_of(path, name), frame)


_AMAZON_FIELDS = {  # JSON key -> (column, kind, required)
    "reviewerID": ("user", "id", True),
    "asin": ("item", "id", True),
    "overall": ("rating", "float", True),
    "unixReviewTime": ("timestamp", "int", True),
    "reviewText": ("review_text", "text", False),
    "summary": ("summary", "text", False),
}


def _amazon_record_problem(
    raw: bytes, require_text: bool, ratings: set[float] | None
) -> tuple[str, str | None, dict[str, Any] | None]:
    """(problem, field, None) for a bad line, ("", None, row) for a good one."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {raw[exc.start]:#04x}); JSON files must be UTF-8", None, None
    except (ValueError, RecursionError) as exc:
        return f"not valid JSON ({exc})", None, None
    if not isinstance(record, dict):
        return "expected a JSON object", None, None
    row: dict[str, Any] = {}
    for key, (column, kind, required) in _AMAZON_FIELDS.items():
        value = record.get(key)
        needed = required or (key == "reviewText" and require_text)
        if value is None or (kind in ("id", "text") and isinstance(value, str) and not value.strip()):
            if needed:
                return "missing value", key, None
            row[column] = ""
            continue
        if kind in ("id", "text") and not isinstance(value, str):
            return f"{value!r} does not have the expected type string", key, None
        if kind == "int" and (
            isinstance(value, bool) or not isinstance(value, int) or not INT64_MIN <= value <= INT64_MAX
        ):
            return f"{value!r} does not have the expected type int64", key, None
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{value!r} does not have the expected type float", key, None
            if problem := number_problem(_float(value), value):
                return problem, key, None
            if ratings is not None and float(value) not in ratings:
                return f"unknown rating {value!r} (allowed: {', '.join(map(str, sorted(ratings)))})", key, None
        row[column] = value
    return "", None, row


def _read_amazon_checked(
    path: Path, name: str | None, bad_lines: str, require_text: bool, ratings: Sequence[float] | None
) -> RawDataset:
    """The checked reading of :func:`read_amazon_reviews` (one pass in Python: every line validated)."""
    allowed = None if ratings is None else {float(r) for r in ratings}
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[int, str]] = []
    with reading(path), open_binary(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            problem, field, row = _amazon_record_problem(raw, require_text, allowed)
            if row is not None:
                rows.append(row)
                continue
            if bad_lines == "error":
                raise DataFormatError(path, problem, line=line_no, field=field)
            skipped.append((line_no, f"{field}: {problem}" if field else problem))
    if skipped:
        shown = "; ".join(f"line {n} ({why})" for n, why in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(f"{path}: skipped {len(skipped)} bad line(s): {shown}{more}", UserWarning, stacklevel=3)
    columns = [c for c, _, _ in _AMAZON_FIELDS.values()]
    frame = pd.DataFrame(rows, columns=columns)
    frame["rating"] = frame["rating"].astype(np.float32)
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    frame.attrs["skipped_lines"] = [n for n, _ in skipped]
    return RawDataset(name_of(path, name), frame)


_GOODREADS_DATE = "%a %b %d %H:%M:%S %z %Y"


def read_goodreads(path: str | Path, *, name: str | None = None) -> RawDataset:
    """Goodreads interactions (UCSD Book Graph), in either official form.

    * ``goodreads_interactions_<genre>.json.gz`` (or any ``.json``/``.json.gz``): JSON lines with
      user_id, book_id (str), rating (0 = shelved without a rating), is_read, date_added
      ("Tue Oct 17 07:36:49 -0700 2017") -> ``timestamp`` (int64; nullable Int64 only if some
      records lack the date).
    * ``goodreads_interactions.csv``: ``user_id,book_id,rating`` (optionally is_read, is_reviewed)
      with integer ids (int64; an id column holding anything but canonical integers is read as the
      strings written, never as floats).

    Columns: ``user``, ``item``, ``rating`` (float32), ``is_read`` (bool, when given), ``timestamp``.
    """
    path = need_input(Path(path), "Goodreads", "read_goodreads")
    stem = strip_compression(path.name).lower()
    if stem.endswith((".json", ".jsonl")):
        schema = pa.schema(
            [
                ("user_id", pa.string()),
                ("book_id", pa.string()),
                ("rating", pa.float32()),
                ("is_read", pa.bool_()),
                ("date_added", pa.string()),
            ]
        )
        table = _read_json_lines(path, schema, ("user_id", "book_id", "rating"))
        frame = pd.DataFrame(
            {
                "user": table.column("user_id").to_pandas(),
                "item": table.column("book_id").to_pandas(),
                "rating": table.column("rating").to_pandas(),
            }
        )
        if table.column("is_read").null_count < len(table):
            frame["is_read"] = table.column("is_read").fill_null(False).to_pandas()
        dates = table.column("date_added")
        if dates.null_count < len(table):
            frame["timestamp"] = _goodreads_timestamps(path, dates)
        return RawDataset(name_of(path, name), frame)

    sep = "\t" if stem.endswith(".tsv") else ","
    columns = [c.strip() for c in header_fields(path, sep)]
    missing = [c for c in ("user_id", "book_id", "rating") if c not in columns]
    if missing:
        raise DataFormatError(
            path, f"missing column(s) {', '.join(missing)}; the file has columns {', '.join(columns)}", line=1
        )
    fields: list[Field] = [
        (c, {"user_id": "id", "book_id": "id", "rating": "float", "is_read": "int"}.get(c, "any")) for c in columns
    ]
    table = read_arrow_csv(path, fields, sep=sep, header=True, quoted=True)
    frame = pd.DataFrame(
        {
            "user": table.column("user_id").to_pandas(),
            "item": table.column("book_id").to_pandas(),
            "rating": table.column("rating").to_pandas(),
        }
    )
    if "is_read" in columns:
        frame["is_read"] = table.column("is_read").to_pandas().astype(bool)
    return RawDataset(name_of(path, name), frame)


def _goodreads_timestamps(path: Path, dates: pa.ChunkedArray) -> pd.Series:
    present = pc.and_(pc.is_valid(dates), pc.not_equal(dates, ""))
    dates = pc.if_else(present, dates, pa.scalar(None, pa.string()))
    parsed = pc.strptime(dates, format=_GOODREADS_DATE, unit="s", error_is_null=True)
    bad = pc.and_(pc.is_null(parsed), pc.is_valid(dates))
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise DataFormatError(
            path,
            f"cannot parse {dates[row].as_py()!r} as a date like 'Tue Oct 17 07:36:49 -0700 2017'",
            line=_line_of_json_record(path, row),
            field="date_added",
        )
    seconds = pc.cast(parsed, pa.int64())
    if seconds.null_count:
        return pd.Series(seconds.to_pylist(), dtype="Int64")
    return pd.Series(seconds.to_numpy(), dtype=np.int64)
