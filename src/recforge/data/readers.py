"""Readers for the official file formats of public recommender-system datasets.

Every reader returns a :class:`RawDataset`: an ``interactions`` frame with raw ids plus optional
``item_info`` / ``user_info`` frames indexed by raw id. Column conventions of ``interactions``:

``user``, ``item``
    raw ids in their natural dtype: ``int64`` (MovieLens, Last.fm, Goodreads CSV) or ``str``
    (Amazon, Goodreads JSON, MSD).
``rating`` (float32, optional)
    an explicit rating as given by the source (1-5, 0.5-5.0, Goodreads 0 = "no rating").
``weight`` (float32, optional)
    an implicit strength such as a play count.
``timestamp`` (int64 unix seconds, optional)
Any other column is source specific (e.g. ``review_text``/``summary`` for Amazon, ``is_read`` for Goodreads).

``item_info`` is indexed by the raw item id (index name ``"item"``) and may hold ``title``, ``genres``
(list of str), ``year`` (nullable Int64), ``tags`` (list of str, most used first), ``name``...;
``user_info`` is indexed by the raw user id (index name ``"user"``).

Large delimited files are parsed with the multi-threaded pyarrow CSV reader (a 20M-row
``ratings.csv`` reads in a few seconds); when it rejects a file, the file is re-scanned line by line to
raise a :class:`DataFormatError` naming the file, line and field. Only the interactions file of a
dataset is required; side files (titles, users, tags) are read when present.
"""

from __future__ import annotations

import bz2
import csv
import errno
import gzip
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

__all__ = [
    "ML100K_FOLDS",
    "DataFormatError",
    "RawDataset",
    "read_amazon_reviews",
    "read_goodreads",
    "read_lastfm_hetrec",
    "read_movielens_1m",
    "read_movielens_10m",
    "read_movielens_100k",
    "read_movielens_100k_fold",
    "read_movielens_csv",
    "read_playcount_triplets",
    "read_table",
]


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
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, eq=False)
class RawDataset:
    """A dataset as read from its files, before any id indexing or filtering (see the module doc)."""

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

    def __repr__(self) -> str:
        info = [f"{self.n_interactions} interactions", f"columns={list(self.interactions.columns)}"]
        if self.item_info is not None:
            info.append(f"item_info={list(self.item_info.columns)}")
        if self.user_info is not None:
            info.append(f"user_info={list(self.user_info.columns)}")
        return f"RawDataset({self.name!r}, {', '.join(info)})"


# ---------------------------------------------------------------------------------------- helpers

_NULLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"})
_NULLS |= {"<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
_NO_GENRES = "(no genres listed)"
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")

# the 19 genres of ML-100K u.genre, used when u.genre is absent
_ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

# ML-1M users.dat occupation codes (ML-1M README)
_ML1M_OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

# The field kinds the line scanner checks; they mirror the arrow types given to the fast reader.
_Kind = str  # "int" | "float" | "str" | "id" (any type, not missing) | "any" | "empty" (a "::" gap)
_Field = tuple[str, _Kind]


def _need(path: Path, dataset: str, reader: str) -> Path:
    """``path`` if it is a file, else a FileNotFoundError naming it and the dataset that expects it."""
    if path.is_file():
        return path
    where = path.parent
    hint = f"the folder {where} does not exist" if not where.is_dir() else f"the folder {where} has no {path.name}"
    raise FileNotFoundError(
        errno.ENOENT,
        f"{dataset} file not found: {path} ({reader} expects the official files of {dataset} there; {hint})",
    )


def _need_input(path: Path, dataset: str, reader: str) -> Path:
    if path.is_file():
        return path
    raise FileNotFoundError(errno.ENOENT, f"{dataset} file not found: {path} (given to {reader})")


def _strip_compression(name: str) -> str:
    for ext in (".gz", ".bz2"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _open_binary(path: Path) -> IO[bytes]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _read_bytes(path: Path) -> bytes:
    with _open_binary(path) as fh:
        return fh.read()


def _decode(data: bytes, encoding: str) -> str:
    """Decode ``data``; ``encoding="auto"`` means UTF-8, falling back to Latin-1 (old MovieLens files)."""
    if encoding == "auto":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return data.decode(encoding, errors="replace")


def _text_lines(path: Path, encoding: str = "auto") -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its end of line) for every line of a small text file.

    Only "\n" ends a line (str.splitlines would also split at U+0085 = Latin-1 byte 0x85, U+2028, ...).
    """
    text = _decode(_read_bytes(path), encoding)
    for i, line in enumerate(text.split("\n"), start=1):
        yield i, line.removesuffix("\r")


def _first_line(path: Path, encoding: str = "utf-8") -> str:
    with _open_binary(path) as fh:
        return fh.readline().decode(encoding, errors="replace").rstrip("\r\n")


def _header_fields(path: Path, sep: str, *, quoted: bool = True) -> list[str]:
    line = _first_line(path).lstrip("\ufeff")
    if quoted and len(sep) == 1:
        return next(csv.reader([line], delimiter=sep), [])
    return line.split(sep)


def _check_header(path: Path, sep: str, expected: Sequence[str], *, quoted: bool = True) -> None:
    found = _header_fields(path, sep, quoted=quoted)
    if [f.strip() for f in found[: len(expected)]] != list(expected):
        raise DataFormatError(path, f"expected the header {sep.join(expected)!r} but found {sep.join(found)!r}", line=1)


def _arrow_type(kind: _Kind) -> pa.DataType | None:
    return {"int": pa.int64(), "float": pa.float32(), "str": pa.string(), "empty": pa.null()}.get(kind)


def _check_value(value: str, kind: _Kind) -> str | None:
    """Why ``value`` is not a valid ``kind`` (None when it is)."""
    if kind in ("str", "any"):
        return None
    if kind == "id":
        return f"missing value ({value!r})" if value.strip() in _NULLS else None
    if kind == "empty":
        return None if value == "" else f"expected nothing between the separators, found {value!r}"
    if value.strip() in _NULLS:
        return f"missing value ({value!r})"
    try:
        int(value) if kind == "int" else float(value)
    except ValueError:
        return f"{value!r} is not {'an integer' if kind == 'int' else 'a number'}"
    return None


def _split_records(path: Path, sep: str, *, quoted: bool, encoding: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-empty record, for the slow error-locating scan."""
    with _open_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="latin-1" if encoding == "latin-1" else "utf-8", errors="replace")
        if quoted and len(sep) == 1:
            reader = csv.reader(text, delimiter=sep)
            for row in reader:
                if row:
                    yield reader.line_num, row
        else:
            for i, line in enumerate(text, start=1):
                line = line.rstrip("\r\n")
                if line:
                    yield i, line.split(sep)


def _locate_error(
    path: Path, fields: Sequence[_Field], *, sep: str, quoted: bool, header: bool, encoding: str = "utf-8"
) -> DataFormatError | None:
    """Scan ``path`` line by line for the first record that does not match ``fields``."""
    n = len(fields)
    shown = "::" if sep == "::" else repr(sep)
    for line_no, values in _split_records(path, sep, quoted=quoted, encoding=encoding):
        if header and line_no == 1:
            continue
        if len(values) != n:
            names = sep.join(f for f, _ in fields)
            return DataFormatError(
                path,
                f"expected {n} fields separated by {shown} ({names}), found {len(values)}: {sep.join(values)[:200]!r}",
                line=line_no,
            )
        for (name, kind), value in zip(fields, values, strict=True):
            problem = _check_value(value, kind)
            if problem:
                return DataFormatError(path, problem, line=line_no, field=name)
    return None


def _read_arrow_csv(
    path: Path,
    fields: Sequence[_Field],
    *,
    sep: str,
    header: bool,
    quoted: bool = False,
    encoding: str = "utf-8",
    newlines_in_values: bool = False,
    scan: tuple[Sequence[_Field], str] | None = None,
) -> pa.Table:
    """Fast multi-threaded read of a delimited file with known columns; precise errors on bad input.

    ``fields`` lists every column of the file (name, kind); columns of kind ``"empty"`` (the gaps of
    ``::`` separators read as ``:``) are checked to be empty and dropped. Columns of kind int, float
    and id may not hold missing values. When the file is rejected it is scanned line by line with
    ``scan`` (fields, separator; default ``fields``, ``sep``) to name the offending line and field.
    """
    names = [name for name, _ in fields]
    types = {name: t for name, kind in fields if (t := _arrow_type(kind)) is not None}
    keep = [name for name, kind in fields if kind != "empty"]
    try:
        table = pacsv.read_csv(
            pa.input_stream(str(path)),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1 if header else 0, encoding=encoding, block_size=1 << 24
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=sep, quote_char='"' if quoted else False, newlines_in_values=newlines_in_values
            ),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=keep),
        )
        required = [name for name, kind in fields if kind in ("int", "float", "id")]
        if not any(table.column(name).null_count for name in required):
            return table
        problem = "missing value"
    except pa.ArrowInvalid as exc:
        problem = str(exc)
    scan_fields, scan_sep = scan or (fields, sep)
    located = _locate_error(
        path,
        scan_fields,
        sep=scan_sep,
        quoted=quoted,
        header=header,
        encoding="latin-1" if encoding.replace("-", "").lower() in ("latin1", "iso88591") else "utf-8",
    )
    raise located or DataFormatError(path, problem)


def _read_colon_file(path: Path, fields: Sequence[_Field]) -> pa.Table:
    """Read a numeric ``a::b::c`` file (ML-1M/10M ratings.dat) with the fast reader, as ``:``-separated."""
    spread: list[_Field] = []
    for i, field in enumerate(fields):
        if i:
            spread.append((f"__gap{i}", "empty"))
        spread.append(field)
    return _read_arrow_csv(path, spread, sep=":", header=False, scan=(fields, "::"))


def _split_colon_line(path: Path, line_no: int, line: str, names: Sequence[str], text: int) -> list[str]:
    """Split a ``::`` line into ``len(names)`` fields; field ``text`` (a title, a tag) may itself hold "::"."""
    n = len(names)
    left = line.split("::", text)
    parts = left if len(left) <= text else [*left[:text], *left[text].rsplit("::", n - text - 1)]
    if len(parts) != n:
        raise DataFormatError(
            path,
            f"expected {n} fields separated by '::' ({'::'.join(names)}), found {len(parts)}",
            line=line_no,
        )
    return parts


def _parse_int(path: Path, line_no: int, field: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, f"{value!r} is not an integer", line=line_no, field=field) from None


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _year_from_title(title: str) -> int | None:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else None


def _genres(value: str | None) -> list[str]:
    if value is None or value != value or value in ("", _NO_GENRES):
        return []
    return [g for g in value.split("|") if g]


def _movies_frame(ids: list[int], titles: list[str], genres: list[list[str]]) -> pd.DataFrame:
    index = pd.Index(np.asarray(ids, dtype=np.int64), name="item")
    return pd.DataFrame(
        {
            "title": pd.Series(titles, index=index, dtype="str"),
            "genres": pd.Series(genres, index=index, dtype=object),
            "year": pd.Series([_year_from_title(t) for t in titles], index=index, dtype="Int64"),
        },
        index=index,
    )


def _tag_lists(frame: pd.DataFrame, key: str = "item", tag: str = "tag") -> pd.Series:
    """Distinct tags per ``key``, most used first (ties alphabetically)."""
    frame = frame[[key, tag]]
    frame = frame[frame[tag].notna() & (frame[tag].astype(str).str.len() > 0)]
    counts = frame.groupby([key, tag], sort=False).size().rename("n").reset_index()
    counts = counts.sort_values([key, "n", tag], ascending=[True, False, True], kind="stable")
    return counts.groupby(key, sort=True)[tag].agg(list)


def _attach_tags(item_info: pd.DataFrame | None, tags: pd.Series) -> pd.DataFrame:
    if item_info is None:
        item_info = pd.DataFrame(index=pd.Index(tags.index.to_numpy(), name="item"))
    aligned = tags.reindex(item_info.index)
    item_info = item_info.copy()
    item_info["tags"] = pd.Series([v if isinstance(v, list) else [] for v in aligned], index=item_info.index)
    return item_info


def _name_of(path: Path, name: str | None) -> str:
    if name:
        return name
    stem = _strip_compression(path.name)
    for ext in (".json", ".jsonl", ".csv", ".tsv", ".txt", ".dat", ".parquet"):
        if stem.lower().endswith(ext):
            return stem[: -len(ext)]
    return stem


# ---------------------------------------------------------------------------------------- MovieLens

_RATING_FIELDS: tuple[_Field, ...] = (
    ("user", "int"),
    ("item", "int"),
    ("rating", "float"),
    ("timestamp", "int"),
)

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


def _read_udata(path: Path) -> pd.DataFrame:
    return _to_pandas(_read_arrow_csv(path, _RATING_FIELDS, sep="\t", header=False))


def read_movielens_100k(directory: str | Path, *, name: str = "ml-100k") -> RawDataset:
    """MovieLens 100K (folder ``ml-100k``): ``u.data`` ratings, ``u.item`` movies, ``u.user`` demographics.

    ``item_info``: title, release_date, imdb_url, genres (names from ``u.genre``), year.
    ``user_info``: age, gender, occupation, zip.
    """
    directory = Path(directory)
    reader = "read_movielens_100k"
    interactions = _read_udata(_need(directory / "u.data", "MovieLens 100K", reader))
    genre_names = _ml100k_genres(directory / "u.genre")
    item_info = _ml100k_items(directory / "u.item", genre_names) if (directory / "u.item").is_file() else None
    user_info = _ml100k_users(directory / "u.user") if (directory / "u.user").is_file() else None
    return RawDataset(name, interactions, item_info, user_info)


def read_movielens_100k_fold(directory: str | Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The official ML-100K split ``name`` (u1..u5: 5-fold 80/20; ua, ub: 10 test ratings per user).

    Returns the (train, test) interaction frames read from ``{name}.base`` and ``{name}.test``.
    """
    if name not in ML100K_FOLDS:
        raise ValueError(f"unknown MovieLens 100K fold {name!r}; the official folds are {', '.join(ML100K_FOLDS)}")
    directory = Path(directory)
    reader = "read_movielens_100k_fold"
    train = _read_udata(_need(directory / f"{name}.base", "MovieLens 100K", reader))
    test = _read_udata(_need(directory / f"{name}.test", "MovieLens 100K", reader))
    return train, test


def _ml100k_genres(path: Path) -> list[str]:
    if not path.is_file():
        return list(_ML100K_GENRES)
    pairs: list[tuple[int, str]] = []
    for line_no, line in _text_lines(path):
        if not line.strip():
            continue
        genre, sep, idx = line.rpartition("|")
        if not sep:
            raise DataFormatError(path, "expected 'genre|index'", line=line_no)
        pairs.append((_parse_int(path, line_no, "index", idx), genre))
    return [g for _, g in sorted(pairs)]


def _ml100k_items(path: Path, genre_names: list[str]) -> pd.DataFrame:
    n_fields = 5 + len(genre_names)
    ids, titles, dates, urls, genres = [], [], [], [], []
    for line_no, line in _text_lines(path, "latin-1"):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != n_fields:
            raise DataFormatError(
                path,
                f"expected {n_fields} '|'-separated fields (id|title|release date|video release date|IMDb URL"
                f"|{len(genre_names)} genre flags), found {len(parts)}",
                line=line_no,
            )
        ids.append(_parse_int(path, line_no, "movie id", parts[0]))
        titles.append(parts[1])
        dates.append(parts[2])
        urls.append(parts[4])
        flags = parts[5:]
        bad = [f for f in flags if f not in ("0", "1")]
        if bad:
            raise DataFormatError(path, f"genre flags must be 0 or 1, found {bad[0]!r}", line=line_no)
        genres.append([g for g, f in zip(genre_names, flags, strict=True) if f == "1" and g != "unknown"])
    frame = _movies_frame(ids, titles, genres)
    years = pd.Series([int(d[-4:]) if d[-4:].isdigit() else None for d in dates], index=frame.index, dtype="Int64")
    frame["year"] = frame["year"].fillna(years)
    frame.insert(1, "release_date", pd.Series(dates, index=frame.index, dtype="str"))
    frame.insert(2, "imdb_url", pd.Series(urls, index=frame.index, dtype="str"))
    return frame


def _ml100k_users(path: Path) -> pd.DataFrame:
    rows = []
    for line_no, line in _text_lines(path, "latin-1"):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise DataFormatError(
                path, f"expected 5 fields (id|age|gender|occupation|zip), found {len(parts)}", line=line_no
            )
        rows.append(
            (
                _parse_int(path, line_no, "user id", parts[0]),
                _parse_int(path, line_no, "age", parts[1]),
                parts[2],
                parts[3],
                parts[4],
            )
        )
    return _users_frame(rows, ("age", "gender", "occupation", "zip"))


def _users_frame(rows: list[tuple[Any, ...]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=["user", *columns])
    for col in columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("str")
    return frame.set_index("user")


def _read_colon_movies(path: Path) -> pd.DataFrame:
    ids, titles, genres = [], [], []
    for line_no, line in _text_lines(path, "auto"):
        if not line.strip():
            continue
        movie, title, genre = _split_colon_line(path, line_no, line, ("MovieID", "Title", "Genres"), 1)
        ids.append(_parse_int(path, line_no, "MovieID", movie))
        titles.append(title)
        genres.append(_genres(genre))
    return _movies_frame(ids, titles, genres)


def _read_colon_ratings(path: Path) -> pd.DataFrame:
    return _to_pandas(_read_colon_file(path, _RATING_FIELDS))


def read_movielens_1m(directory: str | Path, *, name: str = "ml-1m") -> RawDataset:
    """MovieLens 1M (folder ``ml-1m``): ``ratings.dat``, ``movies.dat`` and ``users.dat`` (``::``-separated).

    ``user_info``: gender, age (the ML-1M age group: 1, 18, 25, 35, 45, 50, 56), occupation (name),
    occupation_code (0-20), zip.
    """
    directory = Path(directory)
    interactions = _read_colon_ratings(_need(directory / "ratings.dat", "MovieLens 1M", "read_movielens_1m"))
    movies = directory / "movies.dat"
    item_info = _read_colon_movies(movies) if movies.is_file() else None
    users = directory / "users.dat"
    user_info = _ml1m_users(users) if users.is_file() else None
    return RawDataset(name, interactions, item_info, user_info)


def _ml1m_users(path: Path) -> pd.DataFrame:
    rows = []
    names = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
    for line_no, line in _text_lines(path, "auto"):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != len(names):
            raise DataFormatError(
                path,
                f"expected 5 fields separated by '::' ({'::'.join(names)}), found {len(parts)}",
                line=line_no,
            )
        code = _parse_int(path, line_no, "Occupation", parts[3])
        occupation = _ML1M_OCCUPATIONS[code] if 0 <= code < len(_ML1M_OCCUPATIONS) else str(code)
        user = _parse_int(path, line_no, "UserID", parts[0])
        age = _parse_int(path, line_no, "Age", parts[2])
        rows.append((user, parts[1], age, occupation, code, parts[4]))
    return _users_frame(rows, ("gender", "age", "occupation", "occupation_code", "zip"))


def read_movielens_10m(directory: str | Path, *, name: str = "ml-10m") -> RawDataset:
    """MovieLens 10M (folder ``ml-10M100K``): ``ratings.dat`` (0.5 steps), ``movies.dat``, ``tags.dat``.

    ``item_info`` gets a ``tags`` column (distinct tags per movie, most used first) from ``tags.dat``.
    """
    directory = Path(directory)
    interactions = _read_colon_ratings(_need(directory / "ratings.dat", "MovieLens 10M", "read_movielens_10m"))
    movies = directory / "movies.dat"
    item_info = _read_colon_movies(movies) if movies.is_file() else None
    tags_path = directory / "tags.dat"
    if tags_path.is_file():
        items, tags = [], []
        for line_no, line in _text_lines(tags_path, "auto"):
            if not line.strip():
                continue
            user, movie, tag, ts = _split_colon_line(
                tags_path, line_no, line, ("UserID", "MovieID", "Tag", "Timestamp"), 2
            )
            _parse_int(tags_path, line_no, "UserID", user)
            items.append(_parse_int(tags_path, line_no, "MovieID", movie))
            tags.append(tag)
            _parse_int(tags_path, line_no, "Timestamp", ts)
        item_info = _attach_tags(item_info, _tag_lists(pd.DataFrame({"item": items, "tag": tags})))
    return RawDataset(name, interactions, item_info)


def read_movielens_csv(directory: str | Path, *, name: str | None = None) -> RawDataset:
    """MovieLens in the CSV layout (ml-20m, ml-25m, ml-latest, ml-latest-small).

    ``ratings.csv`` (``userId,movieId,rating,timestamp``) is required; ``movies.csv``
    (``movieId,title,genres``, quoted titles) gives title/genres/year and ``tags.csv``
    (``userId,movieId,tag,timestamp``) a ``tags`` list per movie. ``name`` defaults to the folder name.
    """
    directory = Path(directory)
    ratings = _need(directory / "ratings.csv", "MovieLens (CSV layout)", "read_movielens_csv")
    _check_header(ratings, ",", ("userId", "movieId", "rating", "timestamp"))
    interactions = _to_pandas(_read_arrow_csv(ratings, _RATING_FIELDS, sep=",", header=True, quoted=True))

    item_info = None
    movies = directory / "movies.csv"
    if movies.is_file():
        _check_header(movies, ",", ("movieId", "title", "genres"))
        table = _read_arrow_csv(
            movies,
            (("item", "int"), ("title", "str"), ("genres", "str")),
            sep=",",
            header=True,
            quoted=True,
            newlines_in_values=True,
        )
        titles = table.column("title").to_pylist()
        genres = [_genres(g) for g in table.column("genres").to_pylist()]
        item_info = _movies_frame(table.column("item").to_pylist(), titles, genres)

    tags_path = directory / "tags.csv"
    if tags_path.is_file():
        _check_header(tags_path, ",", ("userId", "movieId", "tag", "timestamp"))
        tags = _read_arrow_csv(
            tags_path,
            (("user", "int"), ("item", "int"), ("tag", "str"), ("timestamp", "int")),
            sep=",",
            header=True,
            quoted=True,
            newlines_in_values=True,
        )
        item_info = _attach_tags(item_info, _tag_lists(tags.select(["item", "tag"]).to_pandas()))
    return RawDataset(name or directory.name, interactions, item_info)


# ---------------------------------------------------------------------------------------- Last.fm


def read_lastfm_hetrec(directory: str | Path, *, name: str = "lastfm-2k") -> RawDataset:
    """HetRec 2011 Last.fm (folder ``hetrec2011-lastfm-2k``): ``user_artists.dat`` play counts as ``weight``.

    ``item_info`` (index: artist id) has ``name``, ``url`` (``artists.dat``) and ``tags``: tag names
    (``tags.dat``) assigned to the artist in ``user_taggedartists.dat``, most used first. It covers the
    artists of ``artists.dat`` and of the interactions.
    """
    directory = Path(directory)
    path = _need(directory / "user_artists.dat", "Last.fm HetRec 2011", "read_lastfm_hetrec")
    _check_header(path, "\t", ("userID", "artistID", "weight"), quoted=False)
    interactions = _to_pandas(
        _read_arrow_csv(path, (("user", "int"), ("item", "int"), ("weight", "float")), sep="\t", header=True)
    )

    item_info = None
    artists = directory / "artists.dat"
    if artists.is_file():
        ids, names, urls = [], [], []
        for line_no, line in _text_lines(artists, "utf-8"):
            if line_no == 1 or not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                raise DataFormatError(artists, "expected 'id name url pictureURL' (tab-separated)", line=line_no)
            ids.append(_parse_int(artists, line_no, "id", parts[0]))
            names.append(parts[1])
            urls.append(parts[2])
        index = pd.Index(np.asarray(ids, dtype=np.int64), name="item")
        item_info = pd.DataFrame(
            {
                "name": pd.Series(names, index=index, dtype="str"),
                "url": pd.Series(urls, index=index, dtype="str"),
            },
            index=index,
        )
        missing = np.setdiff1d(interactions["item"].unique(), item_info.index.to_numpy())
        if len(missing):
            item_info = item_info.reindex(item_info.index.append(pd.Index(missing, name="item")))

    tagged = directory / "user_taggedartists.dat"
    tag_names = directory / "tags.dat"
    if tagged.is_file() and tag_names.is_file():
        names_by_id: dict[int, str] = {}
        for line_no, line in _text_lines(tag_names, "latin-1"):
            if line_no == 1 or not line.strip():
                continue
            tag_id, sep, value = line.partition("\t")
            if not sep:
                raise DataFormatError(tag_names, "expected 'tagID<TAB>tagValue'", line=line_no)
            names_by_id[_parse_int(tag_names, line_no, "tagID", tag_id)] = value
        _check_header(tagged, "\t", ("userID", "artistID", "tagID"), quoted=False)
        fields = (("user", "int"), ("item", "int"), ("tag_id", "int"), ("day", "int"), ("month", "int"))
        table = _read_arrow_csv(tagged, (*fields, ("year", "int")), sep="\t", header=True)
        frame = table.select(["item", "tag_id"]).to_pandas()
        counts = frame.groupby(["item", "tag_id"], sort=False).size().rename("n").reset_index()
        counts["tag"] = counts["tag_id"].map(names_by_id)
        counts = counts[counts["tag"].notna()]
        counts = counts.sort_values(["item", "n", "tag_id"], ascending=[True, False, True], kind="stable")
        tags = counts.groupby("item", sort=True)["tag"].agg(list)
        if item_info is not None:
            tags = tags[tags.index.isin(item_info.index)]
        item_info = _attach_tags(item_info, tags)
    return RawDataset(name, interactions, item_info)


# ---------------------------------------------------------------------------------------- JSON lines


def _read_json_lines(path: Path, schema: pa.Schema, required: Sequence[str]) -> pa.Table:
    """Read JSON lines (plain or compressed) keeping only ``schema``'s fields; precise errors on bad input."""
    try:
        table = pajson.read_json(
            pa.input_stream(str(path)),
            read_options=pajson.ReadOptions(block_size=1 << 24),
            parse_options=pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
        if not any(table.column(name).null_count for name in required):
            return table
        problem = "missing value"
    except pa.ArrowInvalid as exc:
        problem = str(exc)
    raise _locate_json_error(path, schema, required) or DataFormatError(path, problem)


def _locate_json_error(path: Path, schema: pa.Schema, required: Sequence[str]) -> DataFormatError | None:
    checks: dict[str, Callable[[Any], bool]] = {}
    for f in schema:
        if pa.types.is_string(f.type):
            checks[f.name] = lambda v: isinstance(v, str)
        elif pa.types.is_integer(f.type):
            checks[f.name] = lambda v: isinstance(v, int) and not isinstance(v, bool)
        elif pa.types.is_floating(f.type):
            checks[f.name] = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
        elif pa.types.is_boolean(f.type):
            checks[f.name] = lambda v: isinstance(v, bool)
    with _open_binary(path) as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError as exc:
                return DataFormatError(path, f"not valid JSON ({exc})", line=line_no)
            if not isinstance(record, dict):
                return DataFormatError(path, "expected a JSON object", line=line_no)
            for name, ok in checks.items():
                value = record.get(name)
                if value is None:
                    if name in required:
                        return DataFormatError(path, "missing value", line=line_no, field=name)
                elif not ok(value):
                    return DataFormatError(
                        path,
                        f"{value!r} does not have the expected type {schema.field(name).type}",
                        line=line_no,
                        field=name,
                    )
    return None


def read_amazon_reviews(path: str | Path, *, name: str | None = None) -> RawDataset:
    """Amazon reviews as JSON lines, plain or ``.gz`` (McAuley 2014 and Ni & McAuley 2018 5-core files).

    reviewerID -> ``user``, asin -> ``item`` (both str), overall -> ``rating``, unixReviewTime ->
    ``timestamp``, plus ``review_text`` (reviewText, "" when missing) and ``summary`` ("" when missing).
    """
    path = _need_input(Path(path), "Amazon reviews", "read_amazon_reviews")
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
    frame = _to_pandas(table)
    for col in ("review_text", "summary"):
        frame[col] = frame[col].fillna("")
    return RawDataset(_name_of(path, name), frame)


_GOODREADS_DATE = "%a %b %d %H:%M:%S %z %Y"


def read_goodreads(path: str | Path, *, name: str | None = None) -> RawDataset:
    """Goodreads interactions (UCSD Book Graph), in either official form.

    * ``goodreads_interactions_<genre>.json.gz`` (or any ``.json``/``.json.gz``): JSON lines with
      user_id, book_id (str), rating (0 = shelved without a rating), is_read, date_added
      ("Tue Oct 17 07:36:49 -0700 2017") -> ``timestamp`` (int64; nullable Int64 only if some
      records lack the date).
    * ``goodreads_interactions.csv``: ``user_id,book_id,rating`` (optionally is_read, is_reviewed)
      with integer ids.

    Columns: ``user``, ``item``, ``rating`` (float32), ``is_read`` (bool, when given), ``timestamp``.
    """
    path = _need_input(Path(path), "Goodreads", "read_goodreads")
    stem = _strip_compression(path.name).lower()
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
        return RawDataset(_name_of(path, name), frame)

    sep = "\t" if stem.endswith(".tsv") else ","
    columns = [c.strip() for c in _header_fields(path, sep)]
    missing = [c for c in ("user_id", "book_id", "rating") if c not in columns]
    if missing:
        raise DataFormatError(
            path, f"missing column(s) {', '.join(missing)}; the file has columns {', '.join(columns)}", line=1
        )
    fields: list[_Field] = [
        (c, {"user_id": "id", "book_id": "id", "rating": "float", "is_read": "int"}.get(c, "any")) for c in columns
    ]
    table = _read_arrow_csv(path, fields, sep=sep, header=True, quoted=True)
    frame = pd.DataFrame(
        {
            "user": table.column("user_id").to_pandas(),
            "item": table.column("book_id").to_pandas(),
            "rating": table.column("rating").to_pandas(),
        }
    )
    if "is_read" in columns:
        frame["is_read"] = table.column("is_read").to_pandas().astype(bool)
    return RawDataset(_name_of(path, name), frame)


def _goodreads_timestamps(path: Path, dates: pa.ChunkedArray) -> pd.Series:
    present = pc.and_(pc.is_valid(dates), pc.not_equal(dates, ""))
    dates = pc.if_else(present, dates, pa.scalar(None, pa.string()))
    parsed = pc.strptime(dates, format=_GOODREADS_DATE, unit="s", error_is_null=True)
    bad = pc.and_(pc.is_null(parsed), pc.is_valid(dates))
    if pc.any(bad).as_py():
        row = pc.index(bad, True).as_py()
        raise DataFormatError(
            path,
            f"cannot parse {dates[row].as_py()!r} as a date like 'Tue Oct 17 07:36:49 -0700 2017' (record {row + 1})",
            field="date_added",
        )
    seconds = pc.cast(parsed, pa.int64())
    if seconds.null_count:
        return pd.Series(seconds.to_pylist(), dtype="Int64")
    return pd.Series(seconds.to_numpy(), dtype=np.int64)


# ---------------------------------------------------------------------------------------- triplets


def read_playcount_triplets(path: str | Path, *, name: str | None = None) -> RawDataset:
    """Million Song Dataset taste profile ``train_triplets.txt``: ``user<TAB>song<TAB>playcount``, no header.

    Ids are str; the play count becomes ``weight`` (float32). ``.gz`` files are read too.
    """
    path = _need_input(Path(path), "MSD taste profile", "read_playcount_triplets")
    table = _read_arrow_csv(path, (("user", "str"), ("item", "str"), ("weight", "float")), sep="\t", header=False)
    return RawDataset(_name_of(path, name), _to_pandas(table))


# ---------------------------------------------------------------------------------------- generic


def _sniff_sep(path: Path) -> str:
    line = _first_line(path)
    counts = {sep: line.count(sep) for sep in ("\t", ",", ";", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def read_table(
    path: str | Path,
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    timestamp_col: str | None = None,
    weight_col: str | None = None,
    sep: str | None = None,
    extra_cols: Sequence[str] = (),
    name: str | None = None,
) -> RawDataset:
    """Any CSV/TSV (with a header line, optionally ``.gz``) or Parquet file, with a column mapping.

    The format follows the suffix: ``.parquet``/``.pq``; ``.csv`` (``,``); ``.tsv``/``.tab`` (tab);
    otherwise ``sep`` or a separator sniffed from the header line. Ids keep their dtype; ``rating``
    and ``weight`` become float32; ``timestamp`` int64 unix seconds (numbers are taken as seconds, dates
    and datetimes are converted). ``extra_cols`` are kept under their own names.
    """
    path = _need_input(Path(path), "table", "read_table")
    mapping = {"user": user_col, "item": item_col}
    for target, col in (("rating", rating_col), ("weight", weight_col), ("timestamp", timestamp_col)):
        if col is not None:
            mapping[target] = col
    for col in extra_cols:
        mapping.setdefault(col, col)
    wanted = list(dict.fromkeys(mapping.values()))
    stem = _strip_compression(path.name).lower()

    if stem.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        try:
            columns = pq.read_schema(path).names
        except pa.ArrowException as exc:
            raise DataFormatError(path, f"not a readable Parquet file ({exc})") from None
        _check_mapping(path, wanted, columns)
        table = pq.read_table(path, columns=wanted)
        line_offset = None
    else:
        if sep is None:
            sep = "," if stem.endswith(".csv") else "\t" if stem.endswith((".tsv", ".tab")) else _sniff_sep(path)
        columns = [c.strip() for c in _header_fields(path, sep)]
        _check_mapping(path, wanted, columns)
        fields: list[_Field] = [(c, "any") for c in columns]
        if len(sep) == 1:
            try:
                table = pacsv.read_csv(
                    pa.input_stream(str(path)),
                    read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1, block_size=1 << 24),
                    parse_options=pacsv.ParseOptions(delimiter=sep),
                    convert_options=pacsv.ConvertOptions(include_columns=wanted),
                )
            except pa.ArrowInvalid as exc:
                located = _locate_error(path, fields, sep=sep, quoted=True, header=True)
                raise located or DataFormatError(path, str(exc)) from None
        else:
            data = _read_bytes(path).replace(sep.encode(), b"\x1f")
            try:
                table = pacsv.read_csv(
                    pa.BufferReader(data),
                    read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
                    parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False),
                    convert_options=pacsv.ConvertOptions(include_columns=wanted),
                )
            except pa.ArrowInvalid as exc:
                located = _locate_error(path, fields, sep=sep, quoted=False, header=True)
                raise located or DataFormatError(path, str(exc)) from None
        line_offset = 2  # header line + 1-based

    source = _to_pandas(table)
    frame = pd.DataFrame(index=source.index)
    for target, col in mapping.items():
        values = source[col]
        if target in ("user", "item") and values.isna().any():
            raise _bad_row(path, col, values, values.isna().to_numpy(), line_offset, "an id")
        if target in ("rating", "weight"):
            values = _as_float32(path, col, values, line_offset)
        elif target == "timestamp":
            values = _as_unix_seconds(path, col, values, line_offset)
        frame[target] = values
    return RawDataset(_name_of(path, name), frame)


def _check_mapping(path: Path, wanted: Iterable[str], columns: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataFormatError(
            path,
            f"column(s) {', '.join(map(repr, missing))} not found; the file has columns "
            f"{', '.join(map(repr, columns))}",
        )


def _bad_row(
    path: Path, col: str, values: pd.Series, bad: np.ndarray, line_offset: int | None, what: str
) -> DataFormatError:
    row = int(np.flatnonzero(bad)[0])
    line = row + line_offset if line_offset is not None else None
    where = "" if line is not None else f" (row {row})"
    value = values.iloc[row]
    problem = "missing value" if pd.isna(value) else f"{value!r} is not {what}"
    return DataFormatError(path, f"{problem}{where}", line=line, field=col)


def _as_float32(path: Path, col: str, values: pd.Series, line_offset: int | None) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        raise _bad_row(path, col, values, bad, line_offset, "a number")
    return numeric.astype(np.float32)


def _as_unix_seconds(path: Path, col: str, values: pd.Series, line_offset: int | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        converted = values
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            if not (numeric == np.floor(numeric)).all():
                raise DataFormatError(path, "timestamps must be whole unix seconds", field=col)
            return numeric.astype(np.int64)
        converted = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = converted.isna().to_numpy()
    if bad.any():
        raise _bad_row(path, col, values, bad, line_offset, "a unix time or a date")
    if converted.dt.tz is None:
        converted = converted.dt.tz_localize("UTC")
    return ((converted - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)
