"""What a run directory says about its items and users, beyond the model: titles, genres and tags
(``items.csv``), the users the split held out of training (``heldout_users.json``), and raw ids checked
against the model's id maps.

Shared by ``recforge recommend`` and ``recforge serve``; no web framework here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recforge.data.ids import IdMap, UnknownIdError

__all__ = ["ItemCatalog", "heldout_users", "known_ids", "unknown_users_hint"]


def known_ids(ids: IdMap, raw: Sequence[Any]) -> list[Any]:
    """The raw ids typed like the map's (``"50"`` is 50 in an integer map), raising
    :class:`~recforge.data.ids.UnknownIdError` that lists only the unknown ones (each once, in order)."""
    coerced = ids.coerce(list(raw))
    found = ids.index(coerced, missing="minus_one") if coerced else np.empty(0, dtype=np.int64)
    missing = list(dict.fromkeys(c for c, i in zip(coerced, found, strict=True) if i < 0))
    if missing:
        raise UnknownIdError(ids.kind, missing)
    return coerced


def heldout_users(run_dir: Path) -> dict[str, str]:
    """``{str(user): part}`` of the users the run's split held out of training (empty when none or unreadable)."""
    path = Path(run_dir) / "heldout_users.json"
    if not path.is_file():
        return {}
    try:
        heldout = json.loads(path.read_text())
        return {str(u): str(part) for part, users in heldout.items() for u in users}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def unknown_users_hint(heldout: dict[str, str], missing: Sequence[Any], how: str) -> str | None:
    """A sentence saying that some of the ``missing`` users were held out of training by the split (None when
    none were); ``how`` says how to recommend for them instead."""
    held = [u for u in missing if str(u) in heldout]
    if not held:
        return None
    which = ", ".join(f"{u} ({heldout[str(u)]} part)" for u in held[:10])
    verb = "user {} was" if len(held) == 1 else "users {} were"
    return f"{verb.format(which)} held out of training by the split; {how}"


@dataclass(frozen=True)
class ItemCatalog:
    """Titles and tags (genres, then tags) of the model's items, aligned with its item index."""

    titles: np.ndarray  # object: str or None, one per item index
    tags: list[list[str]]  # one list per item index

    @classmethod
    def empty(cls, n_items: int) -> ItemCatalog:
        return cls(np.full(n_items, None, dtype=object), [[] for _ in range(n_items)])

    @classmethod
    def read(cls, run_dir: Path, items: IdMap) -> ItemCatalog:
        """From the run's ``items.csv`` (``item, title[, genres][, tags]``; lists ``|``-separated); an absent or
        unreadable file gives an empty catalogue."""
        path = Path(run_dir) / "items.csv"
        catalog = cls.empty(len(items))
        if not path.is_file():
            return catalog
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError):
            return catalog
        if "item" not in frame.columns:
            return catalog
        index = items.index(items.coerce(frame["item"].tolist()), missing="minus_one")
        ok = index >= 0
        frame, index = frame[ok], index[ok]
        if "title" in frame.columns:
            titles = frame["title"].to_numpy(dtype=object)
            catalog.titles[index] = np.where(titles == "", None, titles)
        for column in ("genres", "tags"):
            if column in frame.columns:
                for i, text in zip(index, frame[column].tolist(), strict=True):
                    catalog.tags[i].extend(t for t in text.split("|") if t and t not in catalog.tags[i])
        return catalog

    def titles_by_id(self, items: IdMap) -> dict[str, str]:
        """``{str(raw id): title}`` of the items that have one."""
        return {str(i): t for i, t in zip(items.ids.tolist(), self.titles.tolist(), strict=True) if t is not None}

    @property
    def has_titles(self) -> bool:
        return any(t is not None for t in self.titles)

    def tag_counts(self) -> dict[str, int]:
        """Every tag with its number of items, most common first."""
        counts: dict[str, int] = {}
        for tags in self.tags:
            for t in tags:
                counts[t] = counts.get(t, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def with_tag(self, tag: str) -> np.ndarray:
        """Indices of the items carrying ``tag`` (case-insensitive)."""
        tag = tag.casefold()
        return np.array([i for i, tags in enumerate(self.tags) if any(t.casefold() == tag for t in tags)], np.int64)
