"""Pretrained item embeddings read from a file and aligned to a training item id map (numpy; no torch here).

:func:`read_item_embeddings` reads ``.csv``, ``.parquet``, ``.npy`` and ``.npz`` files; models that use the table
(e.g. :class:`~recforge.models.ncf.HybridNeuMF`) convert it to tensors themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recforge.data.ids import IdMap

__all__ = ["read_item_embeddings"]


def read_item_embeddings(
    path: str | Path, items: IdMap, *, id_column: str = "item", dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pretrained item embeddings from a file, aligned to ``items``: ``(table n_items x d float32, known bool)``.

    Formats, by suffix: ``.csv`` / ``.parquet`` (a column ``id_column`` with the raw item ids, every other column a
    numeric dimension), ``.npy`` (a 2-D numeric array whose first column is the integer item id) and ``.npz``
    (arrays ``ids`` and ``embeddings``). File ids that are not training items are ignored; training items absent
    from the file get ``known = False`` (a zero row). Errors name the file: unknown format, missing id column,
    non-numeric or non-finite values, repeated ids, no id in common with ``items``, or ``dim`` given and different.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"item embeddings file {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        if id_column not in frame.columns:
            raise ValueError(f"{path}: no item id column {id_column!r}; columns are {list(frame.columns)}")
        ids = frame[id_column].to_numpy()
        values = frame.drop(columns=[id_column])
        bad = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
        if bad:
            raise ValueError(f"{path}: embedding columns must be numeric; not numeric: {bad[:5]}")
        table = values.to_numpy(dtype=np.float32)
    elif suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] < 2 or array.dtype.kind not in "iuf":
            raise ValueError(
                f"{path}: expected a 2-D numeric array (item id column, then the embedding), got {array.shape}"
            )
        if not np.all(np.isfinite(array[:, 0])) or not np.all(array[:, 0] == np.round(array[:, 0])):
            raise ValueError(f"{path}: the first column must hold integer item ids")
        ids, table = array[:, 0].astype(np.int64), array[:, 1:].astype(np.float32)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if "ids" not in archive or "embeddings" not in archive:
                raise ValueError(f"{path}: an .npz of item embeddings needs arrays 'ids' and 'embeddings'")
            ids, table = archive["ids"], archive["embeddings"].astype(np.float32)
        if table.ndim != 2 or len(table) != len(ids):
            raise ValueError(f"{path}: 'embeddings' must be 2-D with one row per id; shapes {table.shape}, {ids.shape}")
    else:
        raise ValueError(f"{path}: unknown item embeddings format {suffix!r}; use .csv, .parquet, .npy or .npz")
    if table.shape[1] == 0:
        raise ValueError(f"{path}: no embedding columns besides the item id")
    if dim is not None and table.shape[1] != dim:
        raise ValueError(f"{path}: embeddings have {table.shape[1]} dimensions, but item_embedding_dim={dim}")
    if not np.isfinite(table).all():
        raise ValueError(f"{path}: embeddings contain NaN or infinite values")
    if not pd.Index(ids).is_unique:
        raise ValueError(f"{path}: item ids repeat, e.g. {pd.Index(ids)[pd.Index(ids).duplicated()][:3].tolist()}")
    idx = items.index(ids, missing="minus_one")
    if (idx < 0).all() and len(ids):
        idx = items.index(items.coerce([str(i) for i in ids]), missing="minus_one")  # "12" vs 12
    if not (idx >= 0).any():
        shown = ", ".join(map(str, list(ids[:3])))
        raise ValueError(f"{path}: none of its {len(ids)} item ids ({shown}, ...) is an item of the training data")
    out = np.zeros((len(items), table.shape[1]), dtype=np.float32)
    known = np.zeros(len(items), dtype=bool)
    out[idx[idx >= 0]] = table[idx >= 0]
    known[idx[idx >= 0]] = True
    return out, known
