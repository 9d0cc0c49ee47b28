"""Item tags as classes: each item's top tag, each user's play-weighted top tag, and a stable ``class2idx``.

The tags of an item are the list in ``item_info["tags"]`` (most used or heaviest first: HetRec Last.fm artist tags,
Last.fm-MSD song tags, MovieLens genres), row ``i`` describing item ``i`` as in
:class:`~recforge.data.interactions.Interactions`. The song recommender's latent analysis groups users by class:

* an item's class is its **top tag** (the first of its list; ``None`` when it has none);
* a user's class is the class with the largest **play-weighted** sum over the user's items
  (:math:`\\arg\\max_c \\sum_i x_{ui} [\\text{top}(i) = c]`, ``x`` the play counts or 0/1; ties go to the smaller
  class index, users without a tagged item get ``None``);
* ``class2idx`` numbers the classes kept (optionally only the ``top`` most frequent item classes) in sorted
  label order, so the same data always gives the same numbering, whatever the order of its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "class2idx",
    "item_tag_matrix",
    "item_top_tags",
    "items_with_tag",
    "user_class_weights",
    "user_top_tags",
]


def _tag_list(cell: Any) -> list[str]:
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    if isinstance(cell, str):
        return [cell] if cell else []
    return [str(t) for t in cell]


def _tags_column(info: pd.DataFrame | None, n_items: int, column: str) -> pd.Series:
    if info is None or column not in info.columns:
        have = [] if info is None else list(info.columns)
        raise ValueError(f"item_info has no {column!r} column (the item tags); it has {have}")
    if len(info) != n_items:
        raise ValueError(f"item_info has {len(info)} rows for {n_items} items")
    return info[column].reset_index(drop=True)


def item_top_tags(info: pd.DataFrame | None, n_items: int, *, column: str = "tags") -> np.ndarray:
    """Each item's top tag (the first of ``info[column]``), ``None`` for an item without tags (object array)."""
    tags = _tags_column(info, n_items, column)
    out = np.empty(n_items, dtype=object)
    for i, cell in enumerate(tags):
        labels = _tag_list(cell)
        out[i] = labels[0] if labels else None
    return out


def items_with_tag(
    info: pd.DataFrame | None, n_items: int, tag: str, *, depth: int = 1, column: str = "tags"
) -> np.ndarray:
    """Boolean mask of the items with ``tag`` among their first ``depth`` tags (``depth=1``: top tag only)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    tags = _tags_column(info, n_items, column)
    return np.array([tag in _tag_list(cell)[:depth] for cell in tags], dtype=bool)


def class2idx(labels: Iterable[Any], *, top: int | None = None, min_count: int = 1) -> dict[str, int]:
    """Stable class numbering: the distinct non-missing labels (the ``top`` most frequent, each seen at least
    ``min_count`` times; frequency ties by label), numbered in sorted label order."""
    counts = pd.Series([str(x) for x in labels if x is not None and not (isinstance(x, float) and np.isnan(x))])
    if counts.empty:
        return {}
    freq = counts.value_counts()
    freq = freq[freq >= min_count]
    ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    if top is not None:
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        ranked = ranked[:top]
    return {label: i for i, label in enumerate(sorted(label for label, _ in ranked))}


def item_tag_matrix(item_tags: Sequence[Any], classes: Mapping[str, int]) -> sp.csr_array:
    """Items x classes 0/1 CSR: 1 where the item's top tag is the class (items of other classes: empty rows)."""
    idx = np.array([classes.get(str(t), -1) if t is not None else -1 for t in item_tags], dtype=np.int64)
    rows = np.flatnonzero(idx >= 0)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_array((data, (rows, idx[rows])), shape=(len(idx), len(classes)))


def user_class_weights(
    matrix: sp.sparray | sp.spmatrix, item_tags: Sequence[Any], classes: Mapping[str, int]
) -> np.ndarray:
    """Users x classes: the sum of each user's values (play counts, or 1s) over their items of each class."""
    m = sp.csr_array(matrix)
    if m.shape[1] != len(item_tags):
        raise ValueError(f"matrix has {m.shape[1]} item columns, {len(item_tags)} item tags given")
    return np.asarray((m @ item_tag_matrix(item_tags, classes)).toarray(), dtype=np.float64)


def user_top_tags(matrix: sp.sparray | sp.spmatrix, item_tags: Sequence[Any], classes: Mapping[str, int]) -> np.ndarray:
    """Each user's play-weighted top class (object array of labels; ``None`` when no item of theirs has a class)."""
    weights = user_class_weights(matrix, item_tags, classes)
    labels = np.array(sorted(classes, key=classes.__getitem__), dtype=object)
    out = np.full(weights.shape[0], None, dtype=object)
    if len(labels) == 0:
        return out
    has = weights.max(axis=1) > 0
    out[has] = labels[weights[has].argmax(axis=1)]
    return out
