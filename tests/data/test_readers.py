"""Readers of the official dataset formats: tiny official-format fixtures, real copies when available, errors."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recforge.data.readers import (
    DataFormatError,
    RawDataset,
    read_amazon_reviews,
    read_goodreads,
    read_lastfm_hetrec,
    read_movielens_1m,
    read_movielens_10m,
    read_movielens_100k,
    read_movielens_100k_fold,
    read_movielens_csv,
    read_playcount_triplets,
    read_table,
)

FIXTURES = Path(__file__).parent / "fixtures"


def real_data(folder: str) -> Path:
    """The real copy of ``folder`` under $RECFORGE_DATA, or skip."""
    root = os.environ.get("RECFORGE_DATA")
    if not root:
        pytest.skip("RECFORGE_DATA is not set")
    path = Path(root) / folder
    if not path.is_dir():
        pytest.skip(f"{path} is not available")
    return path


def check_conventions(raw: RawDataset) -> None:
    frame = raw.interactions
    assert list(frame.columns[:2]) == ["user", "item"]
    for col in ("rating", "weight"):
        if col in frame:
            assert frame[col].dtype == np.float32
    if "timestamp" in frame:
        assert frame["timestamp"].dtype == np.int64
    assert not frame[["user", "item"]].isna().any().any()
    if raw.item_info is not None:
        assert raw.item_info.index.name == "item"
        assert raw.item_info.index.is_unique
    if raw.user_info is not None:
        assert raw.user_info.index.name == "user"
        assert raw.user_info.index.is_unique


# ------------------------------------------------------------------------------------ official-format fixtures


def test_movielens_100k_fixture() -> None:
    raw = read_movielens_100k(FIXTURES / "ml-100k")
    check_conventions(raw)
    assert raw.name == "ml-100k"
    assert len(raw.interactions) == 4
    assert raw.interactions["user"].dtype == np.int64
    assert raw.interactions.iloc[0].tolist() == [196, 242, 3.0, 881250949]
    items = raw.item_info
    assert items.loc[73, "title"] == "Misérables, Les (1995)"  # Latin-1 byte 0xE9
    assert items.loc[73, "genres"] == ["Drama", "Musical"]
    assert items.loc[302, "genres"] == ["Crime", "Film-Noir", "Mystery", "Thriller"]
    assert items.loc[267, "genres"] == []
    assert items.loc[242, "year"] == 1996
    assert pd.isna(items.loc[267, "year"])
    users = raw.user_info
    assert users.loc[186].tolist() == [39, "F", "executive", "00000"]


def test_movielens_100k_fold_fixture() -> None:
    train, test = read_movielens_100k_fold(FIXTURES / "ml-100k", "u1")
    assert (len(train), len(test)) == (3, 1)
    assert test.iloc[0].tolist() == [196, 73, 5.0, 881251000]
    with pytest.raises(ValueError, match="u1, u2, u3, u4, u5, ua, ub"):
        read_movielens_100k_fold(FIXTURES / "ml-100k", "u6")


def test_movielens_1m_fixture() -> None:
    raw = read_movielens_1m(FIXTURES / "ml-1m")
    check_conventions(raw)
    frame = raw.interactions
    assert len(frame) == 5
    assert frame.iloc[0].tolist() == [1, 1193, 5.0, 978300760]
    assert frame["item"].dtype == np.int64
    items = raw.item_info
    assert items.loc[73, "title"] == "Misérables, Les (1995)"
    assert items.loc[260, "title"] == "Star Wars: Episode IV - A New Hope (1977)"
    assert items.loc[260, "genres"] == ["Action", "Adventure", "Fantasy", "Sci-Fi"]
    assert items.loc[661, "genres"] == ["Animation", "Children's", "Musical"]
    assert items.loc[914, "year"] == 1964
    users = raw.user_info
    assert users.loc[1, "gender"] == "F"
    assert users.loc[2, "age"] == 56
    assert users.loc[1, "occupation"] == "K-12 student"
    assert users.loc[2, "occupation_code"] == 16
    assert users.loc[2, "zip"] == "70072"


def test_movielens_10m_fixture() -> None:
    raw = read_movielens_10m(FIXTURES / "ml-10M100K")
    check_conventions(raw)
    assert raw.interactions["rating"].tolist() == [5.0, 4.5, 0.5, 3.5]
    items = raw.item_info
    assert items.loc[8606, "genres"] == []
    assert items.loc[185, "tags"] == ["hackers", "Sandra Bullock"]  # most used first
    assert items.loc[65130, "tags"] == ["mood: bleak"]
    assert items.loc[122, "tags"] == []
    assert raw.user_info is None


def test_movielens_csv_fixture() -> None:
    raw = read_movielens_csv(FIXTURES / "ml-20m")
    check_conventions(raw)
    assert raw.name == "ml-20m"
    assert raw.interactions.iloc[3].tolist() == [3, 2, 0.5, 1084485217]
    items = raw.item_info
    assert items.loc[11, "title"] == "American President, The (1995)"
    assert items.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert items.loc[108548, "title"] == '"Great Performances" Cats (1998)'
    assert items.loc[131262, "genres"] == []
    assert items.loc[29, "year"] == 1995
    assert items.loc[29, "tags"] == ["dark", "Mark Caro"]
    assert items.loc[11, "tags"] == ["politics, romance"]
    assert items.loc[2, "tags"] == []


def test_movielens_csv_without_side_files(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "ml-20m" / "ratings.csv", tmp_path / "ratings.csv")
    raw = read_movielens_csv(tmp_path, name="mine")
    assert raw.name == "mine" and raw.item_info is None and len(raw.interactions) == 4


def test_lastfm_fixture() -> None:
    raw = read_lastfm_hetrec(FIXTURES / "hetrec2011-lastfm-2k")
    check_conventions(raw)
    assert "rating" not in raw.interactions
    assert raw.interactions["weight"].tolist() == [13883.0, 11690.0, 228.0]
    items = raw.item_info
    assert items.loc[1686, "name"] == '"Weird Al" Yankovic'
    assert items.loc[6366, "name"] == "Anders Matthesen´s"
    assert items.loc[51, "tags"] == ["new wave", "synthpop"]  # tag 13 used twice
    assert items.loc[1686, "tags"] == ["música"]  # Latin-1 tags.dat
    assert items.loc[6366, "tags"] == []


def test_goodreads_json_plain_and_gz(tmp_path: Path) -> None:
    plain = FIXTURES / "goodreads" / "goodreads_interactions_poetry.json"
    gz = tmp_path / "goodreads_interactions_poetry.json.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, gz):
        raw = read_goodreads(path)
        check_conventions(raw)
        assert raw.name == "goodreads_interactions_poetry"
        frame = raw.interactions
        assert frame["item"].tolist() == ["1384", "1376", "1384"]
        assert frame["user"].iloc[0] == "8842281e1d1347389f2ab93d60773d4d"
        assert frame["rating"].tolist() == [4.0, 0.0, 5.0]
        assert frame["is_read"].tolist() == [True, False, True]
        # Mon Aug 01 13:41:57 -0700 2016 == 2016-08-01 20:41:57 UTC
        assert frame["timestamp"].iloc[0] == 1470084117
        assert frame["timestamp"].iloc[2] == 1325376000


def test_goodreads_csv_forms(tmp_path: Path) -> None:
    raw = read_goodreads(FIXTURES / "goodreads" / "goodreads_interactions.csv")
    check_conventions(raw)
    frame = raw.interactions
    assert frame["user"].dtype == np.int64
    assert frame[["user", "item", "rating"]].values.tolist() == [[0, 948, 5], [0, 947, 5], [1, 946, 0]]
    assert frame["is_read"].tolist() == [True, True, False]
    short = tmp_path / "goodreads_interactions.csv"
    short.write_text("user_id,book_id,rating\n7,11,3\n8,12,4\n")
    assert read_goodreads(short).interactions.values.tolist() == [[7, 11, 3.0], [8, 12, 4.0]]
    bad = tmp_path / "other.csv"
    bad.write_text("user,book,rating\n1,2,3\n")
    with pytest.raises(DataFormatError, match=r"user_id, book_id.*user, book, rating"):
        read_goodreads(bad)


def test_playcount_triplets_fixture(tmp_path: Path) -> None:
    raw = read_playcount_triplets(FIXTURES / "msd" / "train_triplets.txt")
    check_conventions(raw)
    assert raw.name == "train_triplets"
    assert raw.interactions["item"].tolist() == ["SOAKIMP12A8C130995", "SOAPDEY12A81C210A9", "SOAKIMP12A8C130995"]
    assert raw.interactions["weight"].tolist() == [1.0, 2.0, 17.0]
    gz = tmp_path / "train_triplets.txt.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "msd" / "train_triplets.txt").read_bytes()))
    assert read_playcount_triplets(gz).interactions.equals(raw.interactions)


def test_amazon_fixture_both_generations() -> None:
    raw = read_amazon_reviews(FIXTURES / "amazon" / "reviews_Tiny_5.json")
    check_conventions(raw)
    frame = raw.interactions
    assert frame["item"].tolist() == ["1384719342", "B0000530HU"]  # digit-only asins stay strings
    assert frame["rating"].tolist() == [5.0, 3.0]
    assert frame["timestamp"].tolist() == [1393545600, 1472688000]
    assert frame["review_text"].tolist() == ["Not much to write about here, but it works.", ""]
    assert frame["summary"].tolist() == ["good", "Three Stars"]


def test_generic_table_mapping(tmp_path: Path) -> None:
    path = FIXTURES / "table" / "events.tsv"
    raw = read_table(
        path, user_col="visitor", item_col="product id", rating_col="score", timestamp_col="when", extra_cols=["clicks"]
    )
    check_conventions(raw)
    frame = raw.interactions
    assert list(frame.columns) == ["user", "item", "rating", "timestamp", "clicks"]
    assert frame["rating"].tolist() == [4.5, 2.0, 1.0]
    assert frame["timestamp"].iloc[0] == 1577934245  # 2020-01-02T03:04:05Z
    parquet = tmp_path / "events.parquet"
    pd.read_csv(path, sep="\t").to_parquet(parquet)
    again = read_table(parquet, user_col="visitor", item_col="product id", weight_col="clicks")
    assert again.interactions["weight"].tolist() == [3.0, 1.0, 7.0]
    assert again.interactions["weight"].dtype == np.float32
    colons = tmp_path / "events.dat"
    colons.write_text("u::i::r\n1::2::3\n4::5::6\n")
    third = read_table(colons, user_col="u", item_col="i", rating_col="r", sep="::")
    assert third.interactions.values.tolist() == [["1", "2", 3.0], ["4", "5", 6.0]]  # ids as written


# ---------------------------------------------------------------------------------------------------- errors


def test_missing_file_names_path_and_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MovieLens 1M") as info:
        read_movielens_1m(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / "ratings.dat") in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"u1\.test"):
        shutil.copy(FIXTURES / "ml-100k" / "u1.base", tmp_path / "u1.base")
        read_movielens_100k_fold(tmp_path, "u1")
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        read_amazon_reviews(tmp_path / "nope.json")


def test_bad_rating_in_colon_file_names_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n1::914::x::978301968\n")
    with pytest.raises(DataFormatError) as info:
        read_movielens_1m(tmp_path)
    err = info.value
    assert (err.line, err.field) == (3, "rating")
    assert str(tmp_path / "ratings.dat") in str(err) and "line 3" in str(err) and "'x'" in str(err)


@pytest.mark.parametrize(
    ("content", "line", "field", "text"),
    [
        ("1::2::3::4\n1::2::3\n", 2, None, "expected 4 fields"),
        ("1::2::3::4\n1:2::3::4::5\n", 2, "user", "'1:2' is not an integer"),
        ("1::2::3::4\n1::2::3::4::5\n", 2, None, "expected 4 fields"),
        ("1::2::3::4\n1::2::::4\n", 2, "rating", "missing value"),
        ("1::2::3::4\n\n5::b::3::4\n", 3, "item", "not an integer"),
    ],
)
def test_malformed_colon_lines(tmp_path: Path, content: str, line: int, field: str | None, text: str) -> None:
    (tmp_path / "ratings.dat").write_text(content)
    with pytest.raises(DataFormatError, match=text) as info:
        read_movielens_10m(tmp_path)
    assert (info.value.line, info.value.field) == (line, field)


def test_bad_csv_header_and_values(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("user,movie,rating,timestamp\n1,2,3,4\n")
    with pytest.raises(DataFormatError, match="userId,movieId,rating,timestamp") as info:
        read_movielens_csv(tmp_path)
    assert info.value.line == 1
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,3.5,4\n1,3,,5\n")
    with pytest.raises(DataFormatError, match="line 3, field 'rating': missing value"):
        read_movielens_csv(tmp_path)
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n1\t2\t3\t4.5\n")
    with pytest.raises(DataFormatError, match="line 2, field 'timestamp'"):
        read_movielens_100k(tmp_path)


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    path.write_text('{"reviewerID": "a", "asin": "b", "overall": 5.0, "unixReviewTime": 1}\n{"reviewerID": "a", \n')
    with pytest.raises(DataFormatError, match="line 2") as info:
        read_amazon_reviews(path)
    assert str(path) in str(info.value)
    path.write_text('{"reviewerID": "a", "asin": "b", "overall": 5.0, "unixReviewTime": 1}\n{"asin": "b"}\n')
    with pytest.raises(DataFormatError, match="line 2, field 'reviewerID': missing value"):
        read_amazon_reviews(path)


def test_generic_table_missing_column_lists_columns(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as info:
        read_table(FIXTURES / "table" / "events.tsv", user_col="user", item_col="product id")
    message = str(info.value)
    assert "'user'" in message and "'visitor', 'product id', 'score', 'when', 'clicks'" in message
    path = tmp_path / "t.csv"
    path.write_text("u,i,r\n1,2,3\n1,3,bad\n")
    with pytest.raises(DataFormatError, match="line 3, field 'r'"):
        read_table(path, user_col="u", item_col="i", rating_col="r")


# ---------------------------------------------------------------------------------------------------- real data


def test_real_movielens_100k() -> None:
    raw = read_movielens_100k(real_data("ml-100k"))
    check_conventions(raw)
    frame = raw.interactions
    assert len(frame) == 100_000
    assert frame["user"].nunique() == 943 and frame["item"].nunique() == 1682
    assert frame["rating"].min() == 1 and frame["rating"].max() == 5
    assert raw.item_info.loc[50, "title"] == "Star Wars (1977)"
    assert raw.item_info.loc[50, "genres"] == ["Action", "Adventure", "Romance", "Sci-Fi", "War"]
    assert len(raw.item_info) == 1682 and len(raw.user_info) == 943
    assert raw.user_info.loc[1, "occupation"] == "technician"


def test_real_movielens_100k_folds() -> None:
    path = real_data("ml-100k")
    train, test = read_movielens_100k_fold(path, "u1")
    assert (len(train), len(test)) == (80_000, 20_000)
    train, test = read_movielens_100k_fold(path, "ua")
    assert len(test) == 9430 and (test.groupby("user").size() == 10).all()


def test_real_movielens_latest_small() -> None:
    raw = read_movielens_csv(real_data("ml-latest-small"))
    check_conventions(raw)
    frame = raw.interactions
    assert len(frame) == 100_836
    assert frame["user"].nunique() == 610 and frame["item"].nunique() == 9724
    assert frame["rating"].min() == 0.5 and frame["rating"].max() == 5.0
    assert raw.item_info.loc[1, "title"] == "Toy Story (1995)"
    assert "pixar" in raw.item_info.loc[1, "tags"]


def test_real_lastfm() -> None:
    raw = read_lastfm_hetrec(real_data("hetrec2011-lastfm-2k"))
    check_conventions(raw)
    frame = raw.interactions
    assert len(frame) == 92_834
    assert frame["user"].nunique() == 1892 and frame["item"].nunique() == 17_632
    assert (raw.item_info["tags"].str.len() > 0).sum() > 10_000
    assert raw.item_info.loc[289, "name"] == "Britney Spears"
    assert raw.item_info.loc[289, "tags"][0] == "pop"


def test_real_amazon() -> None:
    path = real_data("amazon-2014-5core-musical-instruments") / "reviews_Musical_Instruments_5.json"
    raw = read_amazon_reviews(path)
    check_conventions(raw)
    frame = raw.interactions
    assert len(frame) == 10_261
    assert frame["user"].nunique() == 1429 and frame["item"].nunique() == 900
    assert (frame["review_text"].str.len() > 0).mean() > 0.99
    beauty = read_amazon_reviews(real_data("amazon-2018-5core-all-beauty") / "All_Beauty_5.json.gz")
    assert len(beauty.interactions) == 5269
    assert beauty.interactions["user"].nunique() == 991 and beauty.interactions["item"].nunique() == 85


# ---------------------------------------------------------------------------------------------------- ids, text


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["1", "2", "-3", "0"], [1, 2, -3, 0]),  # canonical integers: int64
        (["1", "99999999999999999999"], ["1", "99999999999999999999"]),  # above int64: all kept as written
        (["1", "6.5"], ["1", "6.5"]),  # one decimal: text, never floats
        (["1", "1.0"], ["1", "1.0"]),  # 1 and 1.0 stay two ids
        (["007", "7"], ["007", "7"]),  # leading zeros are part of the id
        (["+5", "5"], ["+5", "5"]),
        (["9223372036854775807", "-9223372036854775808"], [9223372036854775807, -9223372036854775808]),
        (["9223372036854775808", "1"], ["9223372036854775808", "1"]),
        (["1e5", "2"], ["1e5", "2"]),
        (["u1", "u2"], ["u1", "u2"]),
    ],
)
def test_id_columns_are_int64_or_exactly_as_written(tmp_path: Path, ids: list[str], expected: list) -> None:
    """``ids="auto"`` (the official formats with integer ids, e.g. the Goodreads CSV; read_table's former default)."""
    path = tmp_path / "t.csv"
    path.write_text("u,i,r\n" + "".join(f"{u},{n},4\n" for n, u in enumerate(ids)))
    frame = read_table(path, user_col="u", item_col="i", rating_col="r", ids="auto").interactions
    assert frame["user"].tolist() == expected
    if isinstance(expected[0], int):
        assert frame["user"].dtype == np.int64
    else:
        assert all(isinstance(u, str) for u in frame["user"])
    assert frame["item"].dtype == np.int64
    # read_table's default (issue 20): every id exactly as written, whatever it looks like
    as_written = read_table(path, user_col="u", item_col="i", rating_col="r").interactions
    assert as_written["user"].tolist() == ids and as_written["item"].tolist() == [str(n) for n in range(len(ids))]
    csv_form = tmp_path / "goodreads_interactions.csv"
    csv_form.write_text("user_id,book_id,rating\n" + "".join(f"{u},{n},4\n" for n, u in enumerate(ids)))
    assert read_goodreads(csv_form).interactions["user"].tolist() == expected


def test_parquet_ids_never_become_floats(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pd.DataFrame({"u": [1.0, 2.0], "i": [1.5, 2.0], "j": ["a", "b"], "r": [3, 4]}).to_parquet(path)
    frame = read_table(path, user_col="u", item_col="i", rating_col="r", ids="auto").interactions
    assert frame["user"].tolist() == [1, 2] and frame["user"].dtype == np.int64  # integral floats
    assert frame["item"].tolist() == ["1.5", "2"]  # not integral: their text
    assert read_table(path, user_col="j", item_col="u").interactions["user"].tolist() == ["a", "b"]
    default = read_table(path, user_col="u", item_col="i", rating_col="r").interactions  # ids as text
    assert default["user"].tolist() == ["1", "2"] and default["item"].tolist() == ["1.5", "2"]
    assert read_table(path, user_col="u", item_col="u", ids="int").interactions["user"].tolist() == [1, 2]


def test_latin1_file_gives_text_ids_not_bytes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("u,i,r\nJosé,Zoë,3\nbob,x,4\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"t\.csv is not valid UTF-8; reading it as Latin-1"):
        frame = read_table(path, user_col="u", item_col="i", rating_col="r").interactions
    assert frame["user"].tolist() == ["José", "bob"] and frame["item"].tolist() == ["Zoë", "x"]
    triplets = tmp_path / "triplets.txt"
    triplets.write_bytes("José\tb\t3\n".encode("latin-1"))
    with pytest.warns(UserWarning, match="Latin-1"):
        assert read_playcount_triplets(triplets).interactions["user"].tolist() == ["José"]
    header = tmp_path / "h.csv"
    header.write_bytes("usér,i\n1,2\n".encode("latin-1"))  # a Latin-1 header names its columns too
    with pytest.warns(UserWarning, match="Latin-1"):
        assert read_table(header, user_col="usér", item_col="i").interactions["user"].tolist() == ["1"]


def test_official_latin1_files_read_without_warnings(recwarn: pytest.WarningsRecorder) -> None:
    read_movielens_100k(FIXTURES / "ml-100k")  # u.item is Latin-1 by definition
    read_lastfm_hetrec(FIXTURES / "hetrec2011-lastfm-2k")  # tags.dat too
    assert [str(w.message) for w in recwarn] == []


def test_density_of_a_raw_dataset() -> None:
    raw = read_movielens_1m(FIXTURES / "ml-1m")
    stats = raw.stats()
    users, items, events = raw.n_users, raw.n_items, raw.n_interactions
    assert (stats["users"], stats["items"], stats["interactions"]) == (users, items, events)
    assert raw.density == pytest.approx(stats["pairs"] / (users * items)) and 0 < raw.density <= 1
    empty = RawDataset("empty", raw.interactions.iloc[:0])
    assert empty.density == 0.0 and empty.stats()["density"] == 0.0


def test_real_density_of_movielens_100k() -> None:
    raw = read_movielens_100k(real_data("ml-100k"))
    assert raw.density == pytest.approx(100_000 / (943 * 1682))  # 6.3%
    assert raw.stats()["density"] == pytest.approx(0.06304669)
