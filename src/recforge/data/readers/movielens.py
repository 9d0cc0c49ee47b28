"""MovieLens in its official layouts: ML-100K (``u.data``...), ML-1M/10M (``::`` files) and the CSV layout.

The formats define integer user and movie ids: they are read as int64, and an id that is not an
integer within the int64 range (``6.5``, ``99999999999999999999``) is refused with a
:class:`DataFormatError` naming the file, line and field rather than read as a float or text.
Ratings must be finite numbers (``inf``, ``NaN``, ``1e39`` are refused the same way). ``u.item``,
``u.user`` are Latin-1 (their official encoding); the ``::`` side files are UTF-8 or Latin-1
(whichever decodes); the CSV layout is UTF-8 (Latin-1 with a warning if it does not decode).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from recforge.data.readers._base import (
    DataFormatError,
    Field,
    RawDataset,
    attach_tags,
    check_header,
    need,
    parse_int,
    read_arrow_csv,
    tag_lists,
    text_lines,
    to_pandas,
)

__all__ = [
    "ML100K_FOLDS",
    "read_movielens_1m",
    "read_movielens_10m",
    "read_movielens_100k",
    "read_movielens_100k_fold",
    "read_movielens_csv",
]

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


def _read_colon_file(path: Path, fields: Sequence[Field]) -> pa.Table:
    """Read a numeric ``a::b::c`` file (ML-1M/10M ratings.dat) with the fast reader, as ``:``-separated."""
    spread: list[Field] = []
    for i, field in enumerate(fields):
        if i:
            spread.append((f"__gap{i}", "empty"))
        spread.append(field)
    return read_arrow_csv(path, spread, sep=":", header=False, scan=(fields, "::"))


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


# ---------------------------------------------------------------------------------------- MovieLens

_RATING_FIELDS: tuple[Field, ...] = (
    ("user", "int"),
    ("item", "int"),
    ("rating", "float"),
    ("timestamp", "int"),
)

ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")


def _read_udata(path: Path) -> pd.DataFrame:
    return to_pandas(read_arrow_csv(path, _RATING_FIELDS, sep="\t", header=False))


def read_movielens_100k(directory: str | Path, *, name: str = "ml-100k") -> RawDataset:
    """MovieLens 100K (folder ``ml-100k``): ``u.data`` ratings, ``u.item`` movies, ``u.user`` demographics.

    ``item_info``: title, release_date, imdb_url, genres (names from ``u.genre``), year.
    ``user_info``: age, gender, occupation, zip.
    """
    directory = Path(directory)
    reader = "read_movielens_100k"
    interactions = _read_udata(need(directory / "u.data", "MovieLens 100K", reader))
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
    train = _read_udata(need(directory / f"{name}.base", "MovieLens 100K", reader))
    test = _read_udata(need(directory / f"{name}.test", "MovieLens 100K", reader))
    return train, test


def _ml100k_genres(path: Path) -> list[str]:
    if not path.is_file():
        return list(_ML100K_GENRES)
    pairs: list[tuple[int, str]] = []
    for line_no, line in text_lines(path):
        if not line.strip():
            continue
        genre, sep, idx = line.rpartition("|")
        if not sep:
            raise DataFormatError(path, "expected 'genre|index'", line=line_no)
        pairs.append((parse_int(path, line_no, "index", idx), genre))
    return [g for _, g in sorted(pairs)]


def _ml100k_items(path: Path, genre_names: list[str]) -> pd.DataFrame:
    n_fields = 5 + len(genre_names)
    ids, titles, dates, urls, genres = [], [], [], [], []
    for line_no, line in text_lines(path, "latin-1"):
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
        ids.append(parse_int(path, line_no, "movie id", parts[0]))
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
    for line_no, line in text_lines(path, "latin-1"):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) != 5:
            raise DataFormatError(
                path, f"expected 5 fields (id|age|gender|occupation|zip), found {len(parts)}", line=line_no
            )
        rows.append(
            (
                parse_int(path, line_no, "user id", parts[0]),
                parse_int(path, line_no, "age", parts[1]),
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
    for line_no, line in text_lines(path, "auto"):
        if not line.strip():
            continue
        movie, title, genre = _split_colon_line(path, line_no, line, ("MovieID", "Title", "Genres"), 1)
        ids.append(parse_int(path, line_no, "MovieID", movie))
        titles.append(title)
        genres.append(_genres(genre))
    return _movies_frame(ids, titles, genres)


def _read_colon_ratings(path: Path) -> pd.DataFrame:
    return to_pandas(_read_colon_file(path, _RATING_FIELDS))


def read_movielens_1m(directory: str | Path, *, name: str = "ml-1m") -> RawDataset:
    """MovieLens 1M (folder ``ml-1m``): ``ratings.dat``, ``movies.dat`` and ``users.dat`` (``::``-separated).

    ``user_info``: gender, age (the ML-1M age group: 1, 18, 25, 35, 45, 50, 56), occupation (name),
    occupation_code (0-20), zip.
    """
    directory = Path(directory)
    interactions = _read_colon_ratings(need(directory / "ratings.dat", "MovieLens 1M", "read_movielens_1m"))
    movies = directory / "movies.dat"
    item_info = _read_colon_movies(movies) if movies.is_file() else None
    users = directory / "users.dat"
    user_info = _ml1m_users(users) if users.is_file() else None
    return RawDataset(name, interactions, item_info, user_info)


def _ml1m_users(path: Path) -> pd.DataFrame:
    rows = []
    names = ("UserID", "Gender", "Age", "Occupation", "Zip-code")
    for line_no, line in text_lines(path, "auto"):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) != len(names):
            raise DataFormatError(
                path,
                f"expected 5 fields separated by '::' ({'::'.join(names)}), found {len(parts)}",
                line=line_no,
            )
        code = parse_int(path, line_no, "Occupation", parts[3])
        occupation = _ML1M_OCCUPATIONS[code] if 0 <= code < len(_ML1M_OCCUPATIONS) else str(code)
        user = parse_int(path, line_no, "UserID", parts[0])
        age = parse_int(path, line_no, "Age", parts[2])
        rows.append((user, parts[1], age, occupation, code, parts[4]))
    return _users_frame(rows, ("gender", "age", "occupation", "occupation_code", "zip"))


def read_movielens_10m(directory: str | Path, *, name: str = "ml-10m") -> RawDataset:
    """MovieLens 10M (folder ``ml-10M100K``): ``ratings.dat`` (0.5 steps), ``movies.dat``, ``tags.dat``.

    ``item_info`` gets a ``tags`` column (distinct tags per movie, most used first) from ``tags.dat``.
    """
    directory = Path(directory)
    interactions = _read_colon_ratings(need(directory / "ratings.dat", "MovieLens 10M", "read_movielens_10m"))
    movies = directory / "movies.dat"
    item_info = _read_colon_movies(movies) if movies.is_file() else None
    tags_path = directory / "tags.dat"
    if tags_path.is_file():
        items, tags = [], []
        for line_no, line in text_lines(tags_path, "auto"):
            if not line.strip():
                continue
            user, movie, tag, ts = _split_colon_line(
                tags_path, line_no, line, ("UserID", "MovieID", "Tag", "Timestamp"), 2
            )
            parse_int(tags_path, line_no, "UserID", user)
            items.append(parse_int(tags_path, line_no, "MovieID", movie))
            tags.append(tag)
            parse_int(tags_path, line_no, "Timestamp", ts)
        item_info = attach_tags(item_info, tag_lists(pd.DataFrame({"item": items, "tag": tags})))
    return RawDataset(name, interactions, item_info)


def read_movielens_csv(directory: str | Path, *, name: str | None = None) -> RawDataset:
    """MovieLens in the CSV layout (ml-20m, ml-25m, ml-latest, ml-latest-small).

    ``ratings.csv`` (``userId,movieId,rating,timestamp``) is required; ``movies.csv``
    (``movieId,title,genres``, quoted titles) gives title/genres/year and ``tags.csv``
    (``userId,movieId,tag,timestamp``) a ``tags`` list per movie. ``name`` defaults to the folder name.
    """
    directory = Path(directory)
    ratings = need(directory / "ratings.csv", "MovieLens (CSV layout)", "read_movielens_csv")
    check_header(ratings, ",", ("userId", "movieId", "rating", "timestamp"))
    interactions = to_pandas(read_arrow_csv(ratings, _RATING_FIELDS, sep=",", header=True, quoted=True))

    item_info = None
    movies = directory / "movies.csv"
    if movies.is_file():
        check_header(movies, ",", ("movieId", "title", "genres"))
        table = read_arrow_csv(
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
        check_header(tags_path, ",", ("userId", "movieId", "tag", "timestamp"))
        tags = read_arrow_csv(
            tags_path,
            (("user", "int"), ("item", "int"), ("tag", "str"), ("timestamp", "int")),
            sep=",",
            header=True,
            quoted=True,
            newlines_in_values=True,
        )
        item_info = attach_tags(item_info, tag_lists(tags.select(["item", "tag"]).to_pandas()))
    return RawDataset(name or directory.name, interactions, item_info)
