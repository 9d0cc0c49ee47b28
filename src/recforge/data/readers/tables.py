"""Generic tables (CSV/TSV/Parquet with a column mapping) and play-count triplets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recforge.data.readers import _base
from recforge.data.readers._base import (
    FLOAT32_MAX,
    ID_TYPES,
    INT64_MAX,
    DataFormatError,
    IdType,
    IdTypeError,
    RawDataset,
    arrow_stream,
    check_value,
    compression,
    first_line,
    header_fields,
    line_of_record,
    locate_error,
    missing_ids,
    name_of,
    need_input,
    normalise_ids,
    number_problem,
    probe,
    read_arrow_csv,
    read_bytes,
    reading,
    strip_compression,
    to_pandas,
    warn_latin1,
)

__all__ = ["read_playcount_triplets", "read_table"]


def read_playcount_triplets(path: str | Path, *, name: str | None = None) -> RawDataset:
    """Million Song Dataset taste profile ``train_triplets.txt``: ``user<TAB>song<TAB>playcount``, no header.

    Ids are str; the play count becomes ``weight`` (float32, finite). ``.gz`` files are read too.
    """
    path = need_input(Path(path), "MSD taste profile", "read_playcount_triplets")
    table = read_arrow_csv(path, (("user", "sid"), ("item", "sid"), ("weight", "float")), sep="\t", header=False)
    return RawDataset(name_of(path, name), to_pandas(table))


# ---------------------------------------------------------------------------------------- generic


def _sniff_sep(path: Path) -> str:
    """The most frequent of tab, comma, semicolon and bar in the first line; else a space when it has one
    (FilmTrust's ``ratings.txt``: ``user item rating``); else a comma."""
    line = first_line(path)
    counts = {sep: line.count(sep) for sep in ("\t", ",", ";", "|")}
    best = max(counts, key=lambda s: counts[s])
    if counts[best]:
        return best
    return " " if " " in line.strip() else ","


LineOf = Callable[[int], "int | None"]


def table_columns(
    path: str | Path, sep: str | None = None, *, header: bool = True, columns: Sequence[str] | None = None
) -> list[str]:
    """The column names of a table :func:`read_table` reads: the header line of a CSV/TSV (``.gz``/``.bz2``
    too; separator by suffix, ``sep`` or sniffed) or a Parquet schema; for a file without a header line,
    ``columns`` or the positions ``"1"``, ``"2"``, ... Errors name the file."""
    path = need_input(Path(path), "table", "table_columns")
    if columns is not None:
        return [str(c) for c in columns]
    stem = strip_compression(path.name).lower()
    if stem.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        with reading(path):
            return list(pq.read_schema(path).names)
    if sep is None:
        sep = _separator(path, stem)
    fields = [c.strip() for c in header_fields(path, sep)]
    return fields if header else [str(i) for i in range(1, len(fields) + 1)]


def _separator(path: Path, stem: str) -> str:
    return "," if stem.endswith(".csv") else "\t" if stem.endswith((".tsv", ".tab")) else _sniff_sep(path)


def read_table(
    path: str | Path,
    *,
    user_col: str | int,
    item_col: str | int,
    rating_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    weight_col: str | int | None = None,
    sep: str | None = None,
    extra_cols: Sequence[str | int] = (),
    name: str | None = None,
    ids: IdType = "str",
    header: bool | None = None,
    columns: Sequence[str] | None = None,
) -> RawDataset:
    """Any CSV/TSV (optionally ``.gz``/``.bz2``) or Parquet file, with a column mapping.

    The format follows the suffix: ``.parquet``/``.pq``; ``.csv`` (``,``); ``.tsv``/``.tab`` (tab);
    otherwise ``sep`` or a separator sniffed from the first line (tab, comma, semicolon, bar, else a space).
    ``extra_cols`` are kept under their own names.

    * Header: by default the first line names the columns. A file without one (FilmTrust's space-separated
      ``ratings.txt``) is read with ``columns=["user", "item", "rating"]`` (its names, in order; ``header=True``
      as well replaces the names of a header line), or with ``header=False`` alone, when the columns are named by
      their 1-based positions: ``user_col=1`` (or ``"1"``), ``item_col=2``.
    * Ids (``ids``): by default (``"str"``) exactly as written, as strings, whatever they look like: ``0012`` and
      ``12`` are two ids and ``0001234567`` keeps its zeros, so recommended ids always match the file (Parquet
      numbers become their decimal text, integral floats without ``.0``). ``ids="int"`` asks for integers
      (``0012`` is 12; an id that is not an integer is refused naming its line); ``ids="auto"`` is the former
      inference: int64 when every id of the column is a canonical integer, else the text. Empty ids and null
      markers (``NA``, ``null``, ...) are refused. Files of one split (train, valid, test) must be read alike.
    * ``rating`` and ``weight`` become float32 and must be finite numbers within the float32 range:
      ``inf``, ``-inf``, ``NaN``, ``1e39`` are refused with a :class:`DataFormatError` naming the
      file, the line (Parquet: the row) and the column.
    * ``timestamp``: int64 unix seconds. A column whose first value is a number holds whole unix
      seconds; otherwise dates/datetimes are converted (naive ones taken as UTC).
    * Text: UTF-8; a file that is not valid UTF-8 is read as Latin-1 (ISO-8859-1, every byte kept) with
      a warning, so ids are always str, never bytes.
    """
    path = need_input(Path(path), "table", "read_table")
    if ids not in ID_TYPES:
        raise ValueError(f"ids must be one of {', '.join(map(repr, ID_TYPES))}, got {ids!r}")
    if header is None:
        header = columns is None
    user_col, item_col = str(user_col), str(item_col)
    mapping = {"user": user_col, "item": item_col}
    for target, col in (("rating", rating_col), ("weight", weight_col), ("timestamp", timestamp_col)):
        if col is not None:
            mapping[target] = str(col)
    for col in extra_cols:
        mapping.setdefault(str(col), str(col))
    wanted = list(dict.fromkeys(mapping.values()))
    id_cols = {user_col, item_col}
    stem = strip_compression(path.name).lower()

    line_of: LineOf
    if stem.endswith((".parquet", ".pq")):
        if columns is not None or not header:
            raise ValueError("columns and header apply to CSV/TSV files: a Parquet file names its columns itself")
        table = _read_parquet(path, wanted)

        def line_of(row: int) -> int | None:
            return None

    else:
        if sep is None:
            sep = _separator(path, stem)
        if not sep or "\n" in sep or "\r" in sep or '"' in sep:
            raise ValueError(f"sep must be a non-empty separator without quotes or line breaks, got {sep!r}")
        found = [c.strip() for c in header_fields(path, sep)]
        if columns is not None:
            names = [str(c) for c in columns]
            if any(f for f in found) and len(names) != len(found):
                where = "its header line" if header else "its first line"
                raise DataFormatError(
                    path,
                    f"{len(names)} column names given ({', '.join(names)}) but {where} has {len(found)} fields "
                    f"separated by {sep!r}",
                    line=1,
                )
        elif header:
            names = found
        else:
            names = [str(i) for i in range(1, len(found) + 1)] if any(found) else []
        _check_mapping(path, wanted, names, header=header and columns is None)
        table, encoding = _read_delimited(path, names, wanted, id_cols, sep, header=header)
        quoted = len(sep) == 1

        def line_of(row: int) -> int | None:
            return line_of_record(path, row, sep=sep, quoted=quoted, header=header, encoding=encoding)

    frame = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for target, col in mapping.items():
        column = table.column(col)
        if target in ("user", "item"):
            row = missing_ids(column)
            if row is not None:
                shown = column[row].as_py()
                problem = "missing value" if shown is None else f"missing value ({shown!r})"
                raise _bad(path, col, row, line_of, f"{problem}: an id is required")
            try:
                values = normalise_ids(column, ids).to_pandas()
            except pa.ArrowException as exc:
                raise DataFormatError(path, f"cannot use the {column.type} values as ids ({exc})", field=col) from None
            except IdTypeError as exc:  # ids="int" and an id that is not an integer
                raise _bad(path, col, exc.row, line_of, exc.problem) from None
        else:
            values = column.to_pandas()
            if target in ("rating", "weight"):
                values = _as_float32(path, col, values, line_of)
            elif target == "timestamp":
                values = _as_unix_seconds(path, col, values, line_of)
        frame[target] = values
    return RawDataset(name_of(path, name), frame)


def _read_parquet(path: Path, wanted: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    if compression(path):
        raise DataFormatError(path, "a compressed Parquet file: Parquet compresses its columns itself, unpack it")
    with reading(path), _base.open_file(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PAR1":
        raise DataFormatError(path, f"not a Parquet file (it starts with {magic!r}, not b'PAR1')")
    try:
        with reading(path):
            columns = pq.read_schema(path).names
            _check_mapping(path, wanted, columns)
            duplicated = sorted({c for c in columns if columns.count(c) > 1 and c in wanted})
            if duplicated:
                raise DataFormatError(path, f"column(s) {', '.join(map(repr, duplicated))} appear more than once")
            return pq.read_table(path, columns=wanted)
    except (pa.ArrowException, OSError) as exc:  # a damaged file: pyarrow raises OSError("Couldn't deserialize ...")
        if isinstance(exc, PermissionError | FileNotFoundError):
            raise
        raise DataFormatError(path, f"not a readable Parquet file ({exc})") from None


def _read_delimited(
    path: Path, columns: list[str], wanted: list[str], id_cols: set[str], sep: str, *, header: bool = True
) -> tuple[pa.Table, str]:
    """The ``wanted`` columns (id columns as text); also the encoding used (utf-8, or latin-1 as fallback)."""
    duplicated = sorted({c for c in columns if columns.count(c) > 1 and c in wanted})
    if duplicated:
        raise DataFormatError(path, f"column(s) {', '.join(map(repr, duplicated))} appear more than once", line=1)
    names = [c if columns.count(c) == 1 else f"{c}\x00{i}" for i, c in enumerate(columns)]
    types = {c: pa.string() for c in id_cols}
    quoted = len(sep) == 1
    for encoding in ("utf-8", "latin-1"):
        try:
            with reading(path):
                if quoted:
                    probe(path)
                    source = arrow_stream(path)
                    delimiter = sep
                else:
                    source = pa.BufferReader(read_bytes(path).replace(sep.encode(), b"\x1f"))
                    delimiter = "\x1f"
                table = pacsv.read_csv(
                    source,
                    read_options=pacsv.ReadOptions(
                        column_names=names, skip_rows=1 if header else 0, block_size=1 << 24, encoding=encoding
                    ),
                    parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False),
                    convert_options=pacsv.ConvertOptions(
                        column_types=types, include_columns=wanted, strings_can_be_null=False
                    ),
                )
        except pa.ArrowInvalid as exc:
            if "invalid UTF8" in str(exc) and encoding == "utf-8":
                continue
            fields = [(c, "any") for c in columns]
            located = locate_error(path, fields, sep=sep, quoted=quoted, header=header, encoding=encoding)
            raise located or DataFormatError(path, str(exc)) from None
        if encoding == "utf-8" and any(
            pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema
        ):
            continue  # an inferred column that is not UTF-8: read the whole file as Latin-1
        if encoding == "latin-1":
            warn_latin1(path)
        return table, encoding
    raise AssertionError("unreachable: Latin-1 decodes any bytes")


def _check_mapping(path: Path, wanted: Iterable[str], columns: Sequence[str], *, header: bool = True) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing and not any(columns):
        what = "no header line naming its columns" if header else "no first line to count its columns"
        raise DataFormatError(path, f"the file is empty: {what}", line=1)
    if missing:
        shown = ", ".join(map(repr, columns[:50])) + (f", ... ({len(columns)} columns)" if len(columns) > 50 else "")
        hint = (
            ""
            if not header
            else "; a file without a header line: give data.columns (its column names) or data.header=false "
            "(columns named by position, 1, 2, ...)"
        )
        raise DataFormatError(
            path, f"column(s) {', '.join(map(repr, missing))} not found; the file has columns {shown}{hint}"
        )


def _bad(path: Path, col: str, row: int, line_of: LineOf, problem: str) -> DataFormatError:
    line = line_of(row)
    where = "" if line is not None else f" (row {row})"
    return DataFormatError(path, f"{problem}{where}", line=line, field=col)


def _scalar(value: object) -> object:
    """A numpy scalar as the plain Python value (so messages show 1e+39, not np.float64(1e+39))."""
    return value.item() if isinstance(value, np.generic) else value


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _as_float32(path: Path, col: str, values: pd.Series, line_of: LineOf) -> pd.Series:
    """Finite float32 numbers; the first missing, non-numeric, infinite or too large value names its line."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise _bad(path, col, _first(missing), line_of, "missing value")
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(np.int8)
    text = not pd.api.types.is_numeric_dtype(values)
    array = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(array) | (np.abs(array) > FLOAT32_MAX)
    if bad.any():
        row = _first(bad)
        shown = _scalar(values.iloc[row])
        problem = check_value(str(shown), "float") if text else number_problem(float(array[row]), shown)
        raise _bad(path, col, row, line_of, problem or f"{shown!r} is not a number")
    return pd.Series(array.astype(np.float32), index=values.index)


def _as_unix_seconds(path: Path, col: str, values: pd.Series, line_of: LineOf) -> pd.Series:
    """int64 unix seconds. Numbers (decided by the first value) must be whole seconds; otherwise dates."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise _bad(path, col, _first(missing), line_of, "missing value")
    if pd.api.types.is_datetime64_any_dtype(values):
        converted = values
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if len(values) == 0 or not pd.isna(numeric.iloc[0]):
            return _whole_seconds(path, col, values, numeric, line_of)
        try:
            converted = pd.to_datetime(values.astype(str), errors="coerce", utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            converted = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    bad = converted.isna().to_numpy()
    if bad.any():
        row = _first(bad)
        raise _bad(path, col, row, line_of, f"{_scalar(values.iloc[row])!r} is not a date or unix time")
    if converted.dt.tz is None:
        converted = converted.dt.tz_localize("UTC")
    return ((converted - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)


def _whole_seconds(path: Path, col: str, values: pd.Series, numeric: pd.Series, line_of: LineOf) -> pd.Series:
    array = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        not_number = np.isnan(array)
        out_of_range = ~not_number & ~(np.abs(array) < INT64_MAX)
        fractional = ~not_number & ~out_of_range & (array != np.floor(array))
    for bad, what in (
        (not_number, "is not a unix time (the column holds numbers: unix seconds)"),
        (out_of_range, "is out of range for unix seconds"),
        (fractional, "is not a whole number of unix seconds"),
    ):
        if bad.any():
            row = _first(bad)
            raise _bad(path, col, row, line_of, f"{_scalar(values.iloc[row])!r} {what}")
    if pd.api.types.is_integer_dtype(values):
        return values.astype(np.int64)
    return pd.Series(array.astype(np.int64), index=values.index)
