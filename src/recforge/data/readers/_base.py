"""What every reader shares: the error and result types, safe file access, text decoding, value and id checks.

Nothing here knows a dataset format. The rules it enforces for every reader:

* a file is opened once with Python first (:func:`probe`), so an unreadable file is a clear
  :class:`PermissionError` naming it, a ``.gz``/``.bz2`` name over other bytes, a truncated or
  corrupt compressed stream and binary data are a :class:`DataFormatError` naming it;
* text is UTF-8; a file that is not valid UTF-8 is read as Latin-1 (ISO-8859-1), which maps every
  byte to one character, so nothing is lost (a warning names the file where UTF-8 was expected);
* ratings and weights must be finite numbers that fit a float32 (``inf``, ``NaN``, ``1e39`` are
  refused with the file, line and field);
* ids are never floats. A file that is not a registered dataset's official format (``read_table``, the JSON
  lines readers, MSD triplets) keeps its ids exactly as written, as strings (``0012`` and ``12`` are two ids,
  ``0001234567`` keeps its zeros), unless the user asks for integers (``ids="int"``, :data:`IdType`); the
  official formats that define integer ids (MovieLens, Last.fm, the Goodreads CSV) read an id column whose
  values are all integers written canonically (no sign but ``-``, no leading zero, within int64) as int64 and
  any other as the strings written (``ids="auto"``).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import errno
import gzip
import io
import re
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


class DataFormatError(ValueError):
    """A data file does not have the expected format.

    The message names the file and, where known, the 1-based line number and the field;
    they are also available as the ``path``, ``line`` and ``field`` attributes.
    """

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, field: str | None = None):
        self.path = Path(path)
        self.line = line
        self.field = field
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field {field!r}"
        message = " ".join(message.strip().splitlines())  # one line, whatever a library's message held
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, eq=False)
class RawDataset:
    """A dataset as read from its files, before any id indexing or filtering (see the package doc)."""

    name: str
    interactions: pd.DataFrame
    item_info: pd.DataFrame | None = None
    user_info: pd.DataFrame | None = None

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def n_users(self) -> int:
        return int(self.interactions["user"].nunique())

    @property
    def n_items(self) -> int:
        return int(self.interactions["item"].nunique())

    @property
    def density(self) -> float:
        """Distinct (user, item) pairs / (users x items): the share of the matrix that is known (0 when empty)."""
        cells = self.n_users * self.n_items
        if cells == 0:
            return 0.0
        pairs = len(self.interactions[["user", "item"]].drop_duplicates())
        return pairs / cells

    def stats(self) -> dict[str, Any]:
        """Users, items, interactions (events), distinct (user, item) pairs and density, for logs and ``info``."""
        pairs = len(self.interactions[["user", "item"]].drop_duplicates())
        users, items = self.n_users, self.n_items
        return {
            "users": users,
            "items": items,
            "interactions": self.n_interactions,
            "pairs": pairs,
            "density": pairs / (users * items) if users and items else 0.0,
        }

    def __repr__(self) -> str:
        info = [f"{self.n_interactions} interactions", f"columns={list(self.interactions.columns)}"]
        if self.item_info is not None:
            info.append(f"item_info={list(self.item_info.columns)}")
        if self.user_info is not None:
            info.append(f"user_info={list(self.user_info.columns)}")
        return f"RawDataset({self.name!r}, {', '.join(info)})"


# ---------------------------------------------------------------------------------------- constants

NULLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"})
NULLS |= {"<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,18})$"
_INT_TEXT = re.compile(r"\s*[-+]?[0-9]+\s*")
_FLOAT_TEXT = re.compile(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*|\s*[-+]?(inf|infinity|nan)\s*", re.I)

# The field kinds the readers declare; they map to arrow types for the fast reader and to checks for the scan.
# "int" | "float" (finite float32) | "str" | "id" (int64 or str, not missing) | "sid" (str id, not missing)
# | "any" | "empty" (a "::" gap)
Kind = str
Field = tuple[str, Kind]

_HEAD_BYTES = 1 << 13
_MAGIC = {".gz": (b"\x1f\x8b", "gzip"), ".bz2": (b"BZh", "bzip2")}


# ---------------------------------------------------------------------------------------- file access

# Python's open, as a module attribute: the one place a reader opens a file (tests replace it to simulate
# a permission error when running as root, where chmod cannot).
open_file: Callable[..., IO[bytes]] = open


def unreadable(path: Path, exc: OSError) -> PermissionError:
    """The error for a file we may not read: names it (never "No such file or directory")."""
    reason = exc.strerror or str(exc)
    return PermissionError(
        errno.EACCES, f"cannot read {path}: {reason.lower()} (check the permissions of the file and its folders)"
    )


def is_file(path: Path) -> bool:
    """``path.is_file()``, but a folder we may not enter is a clear PermissionError, not "not found"."""
    try:
        path.stat()
    except PermissionError as exc:
        raise unreadable(path, exc) from None
    except OSError:
        return False
    return path.is_file()


def compression(path: Path) -> str | None:
    """The compression a file's name announces (``gzip``/``bz2``), or None."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".bz2"):
        return "bz2"
    return None


def strip_compression(name: str) -> str:
    for ext in (".gz", ".bz2"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn the low-level failures of reading ``path`` into errors that name it.

    Permission problems become :class:`PermissionError` naming the file; truncated or corrupt
    compressed data and undecodable text become :class:`DataFormatError`. Other errors pass.
    """
    try:
        yield
    except (DataFormatError, FileNotFoundError):
        raise
    except PermissionError as exc:
        raise unreadable(path, exc) from None
    except (EOFError, zlib.error) as exc:
        raise DataFormatError(path, corrupt_message(path, exc)) from None
    except UnicodeError as exc:
        raise DataFormatError(path, f"the text cannot be decoded ({exc})") from None
    except OSError as exc:
        text = str(exc).lower()
        if (
            isinstance(exc, gzip.BadGzipFile)
            or compression(path)
            or any(w in text for w in ("compress", "zlib", "gzip", "bz2", "inflate"))
        ):
            raise DataFormatError(path, corrupt_message(path, exc)) from None
        raise


def corrupt_message(path: Path, exc: BaseException) -> str:
    kind = {"gzip": "gzip", "bz2": "bzip2"}.get(compression(path) or "", "compressed")
    return f"the {kind} data is truncated or corrupt ({exc}); the file is damaged, fetch it again"


@contextlib.contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """The (decompressed) bytes of ``path``; failures name the file (see :func:`reading`)."""
    with reading(path), open_file(path, "rb") as raw:
        kind = compression(path)
        if kind == "gzip":
            with gzip.GzipFile(fileobj=raw, mode="rb") as fh:
                yield fh
        elif kind == "bz2":
            with bz2.BZ2File(raw, "rb") as fh:
                yield fh
        else:
            yield raw


def arrow_stream(path: Path) -> pa.NativeFile:
    """An arrow input stream of ``path``, decompressed like :func:`open_binary` (by the suffix only)."""
    return pa.input_stream(str(path), compression=compression(path))


def probe(path: Path) -> bytes:
    """Check that ``path`` can be read and looks like text; return its first (decompressed) bytes.

    Raises a clear :class:`PermissionError` for an unreadable file and a :class:`DataFormatError` for a
    ``.gz``/``.bz2`` name over other bytes, a truncated or corrupt compressed start and binary data.
    """
    with reading(path), open_file(path, "rb") as raw:
        magic = raw.read(4)
    for ext, (expected, label) in _MAGIC.items():
        if path.name.lower().endswith(ext) and not magic.startswith(expected):
            raise DataFormatError(
                path,
                f"not a {label} file although its name ends in {ext} (it starts with {magic!r}); "
                f"rename it without {ext} if it is not compressed",
            )
    with open_binary(path) as fh:
        head = fh.read(_HEAD_BYTES)
    if looks_binary(head):
        raise DataFormatError(
            path,
            "not a text file: its first bytes are binary data (a compressed file without its .gz suffix, "
            "UTF-16 text, or a damaged file?)",
        )
    return head


def looks_binary(head: bytes) -> bool:
    """NUL bytes (binary data, UTF-16/32 text), or bytes that are not UTF-8 with many control characters.

    Text in any 8-bit encoding has few control characters (tab, newline, carriage return aside);
    random, compressed or encrypted bytes have about 11% and are almost never valid UTF-8.
    """
    if not head:
        return False
    if b"\0" in head:
        return True
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut last character is fine
        return False
    except UnicodeDecodeError:
        pass
    control = sum(head.count(bytes([c])) for c in (*range(1, 9), 11, 12, *range(14, 32), 127))
    return len(head) >= 16 and control > len(head) // 20


# ---------------------------------------------------------------------------------------- text

_warned: set[tuple[str, str]] = set()


def warn_latin1(path: Path, where: str = "") -> None:
    """Say once per file that it is read as Latin-1 because it is not valid UTF-8."""
    key = (str(path), where)
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(
        f"{path} is not valid UTF-8{where}; reading it as Latin-1 (ISO-8859-1), which keeps every byte",
        UserWarning,
        stacklevel=4,
    )


def decode(path: Path, data: bytes, encoding: str) -> str:
    """Decode ``data`` read from ``path``.

    ``"latin-1"``: the format's official encoding. ``"auto"``: UTF-8, else Latin-1 (old MovieLens
    files mix both; no warning). ``"utf-8"``: UTF-8 expected; a file that is not is read as Latin-1
    with a warning naming the file and the line of the first byte that is not UTF-8.
    """
    if encoding in ("latin-1", "latin1", "iso-8859-1"):
        return data.decode("latin-1")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if encoding != "auto":
            line = data.count(b"\n", 0, exc.start) + 1
            warn_latin1(path, f" (line {line})")
        return data.decode("latin-1")


def read_bytes(path: Path) -> bytes:
    probe(path)
    with open_binary(path) as fh:
        return fh.read()


def text_lines(path: Path, encoding: str = "auto") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end of line) for every line of a small text file.

    Only "\\n" ends a line (str.splitlines would also split at U+0085 = Latin-1 byte 0x85, U+2028, ...).
    """
    text = decode(path, read_bytes(path), encoding)
    for i, line in enumerate(text.split("\n"), start=1):
        yield i, line.removesuffix("\r")


def first_line(path: Path) -> str:
    head = probe(path)
    line = head.split(b"\n", 1)[0]
    if len(line) == len(head) and len(head) == _HEAD_BYTES:  # a header longer than the probe: read it whole
        with open_binary(path) as fh:
            line = fh.readline()
    return decode(path, line.rstrip(b"\r\n"), "utf-8").lstrip("\ufeff")


def header_fields(path: Path, sep: str, *, quoted: bool = True) -> list[str]:
    line = first_line(path)
    if quoted and len(sep) == 1:
        try:
            return next(csv.reader([line], delimiter=sep), [])
        except csv.Error as exc:
            raise DataFormatError(path, f"cannot parse the header line ({exc})", line=1) from None
    return line.split(sep)


def check_header(path: Path, sep: str, expected: Sequence[str], *, quoted: bool = True) -> None:
    found = header_fields(path, sep, quoted=quoted)
    if [f.strip() for f in found[: len(expected)]] != list(expected):
        shown = sep.join(found)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise DataFormatError(path, f"expected the header {sep.join(expected)!r} but found {shown!r}", line=1)


# ---------------------------------------------------------------------------------------- values


def check_value(value: str, kind: Kind) -> str | None:
    """Why ``value`` is not a valid ``kind`` (None when it is)."""
    if kind in ("str", "any"):
        return None
    if kind in ("id", "sid"):
        return f"missing value ({value!r})" if value.strip() in NULLS else None
    if kind == "empty":
        return None if value == "" else f"expected nothing between the separators, found {value!r}"
    if value.strip() in NULLS:
        return f"missing value ({value!r})"
    if kind == "int":
        if not _INT_TEXT.fullmatch(value):
            return f"{value!r} is not an integer"
        if not INT64_MIN <= int(value) <= INT64_MAX:
            return f"{value!r} is outside the 64-bit integer range"
        return None
    if not _FLOAT_TEXT.fullmatch(value):
        return f"{value!r} is not a number"
    return number_problem(float(value), value)


def number_problem(number: float, shown: Any) -> str | None:
    """Why a rating/weight ``number`` is refused: NaN, infinite, or too large for a float32 (None when fine)."""
    if number != number:
        return f"{shown!r} is not a number (NaN)"
    if number in (float("inf"), float("-inf")):
        return f"{shown!r} is not a finite number"
    if abs(number) > FLOAT32_MAX:
        return f"{shown!r} is too large for a 32-bit float (at most 3.4e38)"
    return None


def finite_float32(column: pa.ChunkedArray | pa.Array) -> bool:
    """True when every present value is finite and fits a float32."""
    if len(column) == column.null_count:
        return True
    finite = pc.is_finite(column)
    if not pc.all(finite).as_py():
        return False
    extreme = pc.max(pc.abs(column)).as_py()
    return extreme is None or extreme <= FLOAT32_MAX


# ---------------------------------------------------------------------------------------- ids


IdType = str
"""How a reader types an id column: ``"str"`` (the text exactly as written: the default of every file that is not a
registered dataset's official format), ``"int"`` (integers, asked for by the user: ``0012`` becomes 12, anything
that is not an integer is refused) or ``"auto"`` (int64 when every id is a canonical integer, else the text as
written: the official formats that define integer ids, and recforge's behaviour before issue 20)."""

ID_TYPES = ("str", "int", "auto")
_INT_ID = r"^\s*[-+]?[0-9]+\s*$"


class IdTypeError(ValueError):
    """An id that cannot have the asked type (``ids="int"``); ``row`` is its 0-based record."""

    def __init__(self, row: int, problem: str):
        self.row, self.problem = row, problem
        super().__init__(f"row {row}: {problem}")


def normalise_ids(column: pa.ChunkedArray, ids: IdType = "auto") -> pa.ChunkedArray:
    """An id column typed as ``ids`` says (:data:`IdType`); never floats.

    ``"auto"``: int64 when every id is a canonical integer (or an integral number) within int64, else the strings as
    written; Parquet floats that are all integral become int64, others their decimal text. ``"str"``: text; text
    columns are returned untouched, numbers (Parquet) become their decimal text (integral floats without ``.0``).
    ``"int"``: int64; text must be integers (leading zeros, a sign and surrounding blanks allowed), floats
    integral, else :class:`IdTypeError` with the row of the first id that is not an integer.
    """
    t = column.type
    if ids == "str":
        if pa.types.is_string(t):
            return column
        if pa.types.is_floating(t):
            integral = pc.equal(pc.floor(column), column)
            as_int = pc.cast(pc.if_else(integral, column, pa.scalar(0.0, t)), pa.int64(), safe=False)
            return pc.if_else(integral, pc.cast(as_int, pa.string()), pc.cast(column, pa.string()))
        return pc.cast(column, pa.string())
    if ids == "int":
        if pa.types.is_integer(t):
            if pa.types.is_unsigned_integer(t) and len(column) and (pc.max(column).as_py() or 0) > INT64_MAX:
                raise IdTypeError(_first_row(pc.greater(column, INT64_MAX)), "id above the 64-bit integer range")
            return pc.cast(column, pa.int64())
        if pa.types.is_floating(t):
            bad = pc.or_(pc.not_equal(pc.floor(column), column), pc.greater_equal(pc.abs(column), 2.0**63))
            if pc.any(bad).as_py():
                row = _first_row(bad)
                raise IdTypeError(row, f"{column[row].as_py()!r} is not an integer id")
            return pc.cast(column, pa.int64())
        text = pc.cast(column, pa.string()) if not pa.types.is_string(t) else column
        bad = pc.invert(pc.match_substring_regex(text, _INT_ID))
        if pc.any(bad).as_py():
            row = _first_row(bad)
            raise IdTypeError(row, f"{text[row].as_py()!r} is not an integer id (ids = 'int' asks for integers)")
        stripped = pc.replace_substring_regex(pc.utf8_trim_whitespace(text), r"^\+", "")
        try:
            return pc.cast(stripped, pa.int64())
        except pa.ArrowInvalid:
            values = stripped.to_pylist()
            row = next(i for i, v in enumerate(values) if not INT64_MIN <= int(v) <= INT64_MAX)
            raise IdTypeError(row, f"{text[row].as_py()!r} is outside the 64-bit integer range") from None
    if pa.types.is_integer(t):
        if pa.types.is_unsigned_integer(t) and len(column) and (pc.max(column).as_py() or 0) > INT64_MAX:
            return pc.cast(column, pa.string())
        return pc.cast(column, pa.int64())
    if pa.types.is_floating(t):
        integral = pc.all(pc.equal(pc.floor(column), column)).as_py() in (True, None)
        extreme = pc.max(pc.abs(column)).as_py() if len(column) else 0
        if integral and (extreme is None or extreme < 2**53):
            return pc.cast(column, pa.int64())
        return pc.cast(column, pa.string())
    if pa.types.is_large_string(t):
        column = pc.cast(column, pa.string())
        t = column.type
    if pa.types.is_string(t):
        if pc.all(pc.match_substring_regex(column, _CANONICAL_INT)).as_py() in (True, None):
            with contextlib.suppress(pa.ArrowInvalid):
                return pc.cast(column, pa.int64())
        return column
    return pc.cast(column, pa.string())


def _first_row(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def missing_ids(column: pa.ChunkedArray) -> int | None:
    """Row of the first missing id (null, empty or a null marker such as ``NA``), or None."""
    if column.null_count:
        return int(pc.index(pc.is_null(column), True).as_py())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        bad = pc.is_in(pc.utf8_trim_whitespace(column), value_set=pa.array(sorted(NULLS)))
        if pc.any(bad).as_py():
            return int(pc.index(bad, True).as_py())
    return None


# ---------------------------------------------------------------------------------------- delimited files


def arrow_type(kind: Kind) -> pa.DataType | None:
    types = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "id": pa.string(), "sid": pa.string()}
    return types.get(kind, pa.null() if kind == "empty" else None)


def split_records(path: Path, sep: str, *, quoted: bool, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) of each non-empty record, for the slow error-locating scan."""
    with open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="latin-1" if encoding == "latin-1" else "utf-8", errors="replace")
        if quoted and len(sep) == 1:
            reader = csv.reader(text, delimiter=sep)
            end = 0
            try:
                for row in reader:
                    start, end = end + 1, reader.line_num
                    if row:
                        yield start, row
            except csv.Error as exc:
                raise DataFormatError(path, f"cannot parse the record ({exc})", line=end + 1) from None
        else:
            for i, line in enumerate(text, start=1):
                line = line.rstrip("\r\n")
                if line:
                    yield i, line.split(sep)


def locate_error(
    path: Path, fields: Sequence[Field], *, sep: str, quoted: bool, header: bool, encoding: str = "utf-8"
) -> DataFormatError | None:
    """Scan ``path`` line by line for the first record that does not match ``fields``."""
    n = len(fields)
    shown = "::" if sep == "::" else repr(sep)
    for index, (line_no, values) in enumerate(split_records(path, sep, quoted=quoted, encoding=encoding)):
        if header and index == 0:
            continue
        if len(values) != n:
            names = sep.join(f for f, _ in fields)
            return DataFormatError(
                path,
                f"expected {n} fields separated by {shown} ({names}), found {len(values)}: {sep.join(values)[:200]!r}",
                line=line_no,
            )
        for (name, kind), value in zip(fields, values, strict=True):
            problem = check_value(value, kind)
            if problem:
                return DataFormatError(path, problem, line=line_no, field=name)
    return None


def line_of_record(path: Path, row: int, *, sep: str, quoted: bool, header: bool, encoding: str) -> int | None:
    """The line where data record ``row`` (0-based, after the header) starts, or None if the scan cannot find it."""
    skip = 1 if header else 0
    for index, (line_no, _) in enumerate(split_records(path, sep, quoted=quoted, encoding=encoding)):
        if index == row + skip:
            return line_no
    return None


def _is_latin1(encoding: str) -> bool:
    return encoding.replace("-", "").replace("_", "").lower() in ("latin1", "iso88591")


def read_arrow_csv(
    path: Path,
    fields: Sequence[Field],
    *,
    sep: str,
    header: bool,
    quoted: bool = False,
    encoding: str = "utf-8",
    newlines_in_values: bool = False,
    scan: tuple[Sequence[Field], str] | None = None,
) -> pa.Table:
    """Fast multi-threaded read of a delimited file with known columns; precise errors on bad input.

    ``fields`` lists every column of the file (name, kind); columns of kind ``"empty"`` (the gaps of
    ``::`` separators read as ``:``) are checked to be empty and dropped. Columns of kind int, float
    and id may not hold missing values; float columns must be finite and fit a float32 (they are
    returned as float32); id columns are int64 or str (:func:`normalise_ids`). When the file is
    rejected it is scanned line by line with ``scan`` (fields, separator; default ``fields``,
    ``sep``) to name the offending line and field. A file that is not valid UTF-8 is read as
    Latin-1 (with a warning unless ``encoding="latin-1"`` says that is its official encoding).
    """
    probe(path)
    names = [name for name, _ in fields]
    types = {name: t for name, kind in fields if (t := arrow_type(kind)) is not None}
    keep = [name for name, kind in fields if kind != "empty"]
    required = [name for name, kind in fields if kind in ("int", "float")]
    ids = [name for name, kind in fields if kind in ("id", "sid")]
    floats = [name for name, kind in fields if kind == "float"]
    problem = ""
    table = None
    for enc in dict.fromkeys([encoding, "latin-1"]):
        try:
            with reading(path):
                table = pacsv.read_csv(
                    arrow_stream(path),
                    read_options=pacsv.ReadOptions(
                        column_names=names, skip_rows=1 if header else 0, encoding=enc, block_size=1 << 24
                    ),
                    parse_options=pacsv.ParseOptions(
                        delimiter=sep, quote_char='"' if quoted else False, newlines_in_values=newlines_in_values
                    ),
                    convert_options=pacsv.ConvertOptions(column_types=types, include_columns=keep),
                )
        except pa.ArrowInvalid as exc:
            problem = str(exc)
            if "invalid UTF8" in problem and not _is_latin1(enc):
                continue
            table = None
        break
    if table is not None:
        if not _is_latin1(encoding) and enc == "latin-1":
            warn_latin1(path)
        if any(table.column(name).null_count for name in required):
            problem = "missing value"
        elif any(missing_ids(table.column(name)) is not None for name in ids):
            problem = "missing id"
        elif not all(finite_float32(table.column(name)) for name in floats):
            problem = "a rating or weight that is not a finite float32"
        else:
            for name in floats:
                table = table.set_column(
                    table.schema.get_field_index(name), name, table.column(name).cast(pa.float32())
                )
            for name in (name for name, kind in fields if kind == "id"):
                table = table.set_column(table.schema.get_field_index(name), name, normalise_ids(table.column(name)))
            return table
    scan_fields, scan_sep = scan or (fields, sep)
    located = locate_error(
        path,
        scan_fields,
        sep=scan_sep,
        quoted=quoted,
        header=header,
        encoding="latin-1" if _is_latin1(enc) else "utf-8",
    )
    raise located or DataFormatError(path, problem)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(split_blocks=True, self_destruct=True)


def parse_int(path: Path, line_no: int, field: str, value: str) -> int:
    problem = check_value(value, "int")
    if problem:
        raise DataFormatError(path, problem, line=line_no, field=field)
    return int(value)


def tag_lists(frame: pd.DataFrame, key: str = "item", tag: str = "tag") -> pd.Series:
    """Distinct tags per ``key``, most used first (ties alphabetically)."""
    frame = frame[[key, tag]]
    frame = frame[frame[tag].notna() & (frame[tag].astype(str).str.len() > 0)]
    counts = frame.groupby([key, tag], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", tag], ascending=[True, False, True], kind="stable")
    return counts.groupby(key, sort=True)[tag].agg(list)


def attach_tags(item_info: pd.DataFrame | None, tags: pd.Series) -> pd.DataFrame:
    if item_info is None:
        item_info = pd.DataFrame(index=pd.Index(tags.index.to_numpy(), name="item"))
    aligned = tags.reindex(item_info.index)
    item_info = item_info.copy()
    item_info["tags"] = pd.Series([v if isinstance(v, list) else [] for v in aligned], index=item_info.index)
    return item_info


def name_of(path: Path, name: str | None) -> str:
    if name:
        return name
    stem = strip_compression(path.name)
    for ext in (".json", ".jsonl", ".csv", ".tsv", ".txt", ".dat", ".parquet"):
        if stem.lower().endswith(ext):
            return stem[: -len(ext)]
    return stem


def need(path: Path, dataset: str, reader: str) -> Path:
    """``path`` if it is a file, else a FileNotFoundError naming it and the dataset that expects it."""
    if is_file(path):
        return path
    where = path.parent
    hint = f"the folder {where} does not exist" if not where.is_dir() else f"the folder {where} has no {path.name}"
    raise FileNotFoundError(
        errno.ENOENT,
        f"{dataset} file not found: {path} ({reader} expects the official files of {dataset} there; {hint})",
    )


def need_input(path: Path, dataset: str, reader: str) -> Path:
    if is_file(path):
        return path
    what = "a folder, not a file" if path.is_dir() else "not found"
    raise FileNotFoundError(errno.ENOENT, f"{dataset} file {what}: {path} (given to {reader})")
