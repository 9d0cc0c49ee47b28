"""Maps between raw ids (whatever the data files use) and contiguous indices 0..n-1."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd


class UnknownIdError(KeyError):
    """Raised when raw ids are not in an :class:`IdMap`; ``missing`` lists them."""

    def __init__(self, kind: str, missing: Sequence[Any]):
        self.kind = kind
        self.missing = list(missing)
        shown = ", ".join(map(str, self.missing[:10])) + (" ..." if len(self.missing) > 10 else "")
        super().__init__(f"unknown {kind} id(s): {shown}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class IdMap:
    """Raw id <-> contiguous index, in both directions, in a stable order.

    The order is the order of ``ids`` as given; :meth:`from_values` sorts the distinct values
    so that the same data always gives the same indices.

    >>> m = IdMap(["b", "a", "c"])
    >>> m.index(["c", "b"]).tolist()
    [2, 0]
    >>> m.ids_of([1]).tolist()
    ['a']
    """

    def __init__(self, ids: Iterable[Any], *, kind: str = "item"):
        self._index = pd.Index(list(ids) if not isinstance(ids, np.ndarray | pd.Index) else ids)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][:5].tolist()
            raise ValueError(f"{kind} ids must be unique; duplicated: {dup}")
        self.kind = kind

    @classmethod
    def from_values(cls, values: Any, *, kind: str = "item") -> tuple[IdMap, np.ndarray]:
        """Build a map of the sorted distinct ``values`` and return it with the index of every value."""
        codes, uniques = pd.factorize(pd.Series(values), sort=True)
        return cls(uniques, kind=kind), codes.astype(np.int64)

    def __len__(self) -> int:
        return len(self._index)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and self._index.equals(other._index)

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"IdMap({self.kind}, n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """The raw ids in index order."""
        return self._index.to_numpy()

    def index(self, raw_ids: Any, *, missing: str = "raise") -> np.ndarray:
        """Indices of ``raw_ids``; unknown ids raise :class:`UnknownIdError` or map to -1 (``missing="minus_one"``)."""
        raw = pd.Index(np.atleast_1d(np.asarray(raw_ids, dtype=object if self._is_object else None)))
        idx = self._index.get_indexer(raw).astype(np.int64)
        if missing == "raise" and (idx < 0).any():
            raise UnknownIdError(self.kind, raw[idx < 0].tolist())
        return idx

    def coerce(self, raw_ids: Sequence[str]) -> list[Any]:
        """Convert ids typed as text (CLI, JSON) to this map's id type where they look like its ids."""
        if self._index.dtype.kind in "iu":
            out: list[Any] = []
            for r in raw_ids:
                try:
                    out.append(int(r))
                except (TypeError, ValueError):
                    out.append(r)
            return out
        return [str(r) for r in raw_ids]

    def ids_of(self, indices: Any) -> np.ndarray:
        """Raw ids of ``indices``."""
        return self._index.to_numpy()[np.asarray(indices, dtype=np.int64)]

    def subset(self, indices: Any) -> IdMap:
        """A new map holding the ids at ``indices`` (in that order)."""
        return IdMap(self.ids_of(indices), kind=self.kind)

    @property
    def _is_object(self) -> bool:
        return self._index.dtype == object

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"kind", "dtype", "ids"}``."""
        ids = self._index.tolist()
        dtype = "int" if self._index.dtype.kind in "iu" else "str"
        return {"kind": self.kind, "dtype": dtype, "ids": ids}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdMap:
        """Inverse of :meth:`to_json`."""
        ids = data["ids"]
        arr = np.asarray(ids, dtype=np.int64) if data.get("dtype") == "int" else np.asarray(ids, dtype=object)
        return cls(arr, kind=data.get("kind", "item"))
