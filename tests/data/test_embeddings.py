"""Pretrained item embeddings read from files (numpy, the data layer): every format, alignment to the id map, and
errors that name the file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recforge.data.embeddings import read_item_embeddings
from recforge.data.ids import IdMap


@pytest.fixture
def items() -> IdMap:
    return IdMap(np.arange(100, 110))


def _table(n_dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
    ids = np.arange(100, 110)[::-1]  # not in index order
    return ids, np.arange(10 * n_dims, dtype=np.float32).reshape(10, n_dims) / 10


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npy", ".npz"])
def test_item_embedding_formats(items, tmp_path, suffix):
    ids, table = _table()
    path = tmp_path / f"emb{suffix}"
    frame = pd.DataFrame(table, columns=["a", "b", "c"]).assign(movie=ids)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".npy":
        np.save(path, np.column_stack([ids, table]))
    else:
        np.savez(path, ids=ids, embeddings=table)
    got, known = read_item_embeddings(path, items, id_column="movie")
    assert known.all() and got.shape == (10, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got[items.index([109])[0]], table[0])
    np.testing.assert_allclose(got[items.index([100])[0]], table[9])


def test_items_missing_from_the_file_get_zero_rows(items, tmp_path):
    ids, table = _table()
    path = tmp_path / "emb.npz"
    np.savez(path, ids=np.append(ids[2:], 999), embeddings=np.vstack([table[2:], np.ones((1, 3), np.float32)]))
    got, known = read_item_embeddings(path, items)  # 109 and 108 missing; 999 is not a training item
    missing = items.index([109, 108])
    assert not known[missing].any() and known.sum() == 8
    np.testing.assert_array_equal(got[missing], 0.0)


def test_item_embedding_errors_name_the_file(items, tmp_path):
    ids, table = _table()
    frame = pd.DataFrame(table, columns=["a", "b", "c"]).assign(item=ids)
    cases = {
        "bad_dim.csv": (frame, {"dim": 4}, "3 dimensions, but item_embedding_dim=4"),
        "no_match.csv": (frame.assign(item=ids + 1000), {}, "none of its 10 item ids"),
        "no_id.csv": (frame.drop(columns="item"), {}, "no item id column 'item'"),
        "repeated.csv": (frame.assign(item=[100] * 10), {}, "item ids repeat"),
        "nan.csv": (frame.assign(a=np.nan), {}, "NaN"),
        "text.csv": (frame.assign(b="x"), {}, "must be numeric"),
    }
    for name, (f, kwargs, message) in cases.items():
        f.to_csv(tmp_path / name, index=False)
        with pytest.raises(ValueError, match=message) as err:
            read_item_embeddings(tmp_path / name, items, **kwargs)
        assert name in str(err.value)
    (tmp_path / "emb.json").write_text("{}")
    with pytest.raises(ValueError, match=r"emb\.json.*unknown item embeddings format"):
        read_item_embeddings(tmp_path / "emb.json", items)
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_item_embeddings(tmp_path / "missing.csv", items)
