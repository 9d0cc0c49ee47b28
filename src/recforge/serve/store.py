"""Interactions added while serving (``POST /users/{user_id}/interactions``), kept in an embedded SQLite file in
the server's state folder -- never in the run folder, which the server only reads.

One file serves every worker process of one server (WAL mode: readers never wait for the writer), so an
interaction added through one worker is seen by the next request whichever worker answers it. The file
records which model it belongs to (a digest of the item id list); a state folder of another model is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["InteractionStore", "StateMismatchError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    item_index INTEGER NOT NULL,
    value REAL NOT NULL,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions (user, seq);
"""


class StateMismatchError(ValueError):
    """The state folder holds the interactions of another model."""


def model_digest(item_ids: Sequence[Any]) -> str:
    """sha256 of the item id list: the item indices stored in the file mean these items."""
    return hashlib.sha256(json.dumps([str(i) for i in item_ids]).encode()).hexdigest()


class InteractionStore:
    """Per-user interactions added while serving: ``(item index, value)`` in the order they were added.

    Thread-safe (one SQLite connection per thread) and process-safe (SQLite's own locking). A user is stored
    under ``str(user id)``.
    """

    FILE_NAME = "interactions.sqlite"

    def __init__(self, folder: Path, item_ids: Sequence[Any]):
        self.path = Path(folder) / self.FILE_NAME
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        digest = model_digest(item_ids)
        con = self._connection()
        with con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT value FROM meta WHERE key = 'items_sha256'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('items_sha256', ?)", (digest,))
            elif row[0] != digest:
                raise StateMismatchError(
                    f"{self.path} holds the added interactions of another model (its item list differs): "
                    "give this run its own --state-dir"
                )

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(_SCHEMA)
            self._local.con = con
        return con

    def add(self, user: Any, item_index: np.ndarray, values: np.ndarray) -> int:
        """Append interactions of ``user``; returns how many the user now has."""
        now = time.time()
        key = str(user)
        rows = [(key, int(i), float(v), now) for i, v in zip(item_index, values, strict=True)]
        con = self._connection()
        with con:
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO interactions (user, item_index, value, added_at) VALUES (?, ?, ?, ?)", rows)
            (count,) = con.execute("SELECT COUNT(*) FROM interactions WHERE user = ?", (key,)).fetchone()
        return int(count)

    def count(self, user: Any) -> int:
        (count,) = (
            self._connection().execute("SELECT COUNT(*) FROM interactions WHERE user = ?", (str(user),)).fetchone()
        )
        return int(count)

    def get(self, users: Iterable[Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{str(user): (item indices, values)}`` in the order added, for the users that have any."""
        keys = list(dict.fromkeys(str(u) for u in users))
        out: dict[str, tuple[list[int], list[float]]] = {}
        con = self._connection()
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            query = f"SELECT user, item_index, value FROM interactions WHERE user IN ({marks}) ORDER BY seq"
            for user, item, value in con.execute(query, part):
                items, values = out.setdefault(user, ([], []))
                items.append(item)
                values.append(value)
        return {u: (np.asarray(i, dtype=np.int64), np.asarray(v, dtype=np.float32)) for u, (i, v) in out.items()}

    def clear(self, user: Any) -> int:
        """Forget the interactions added for ``user``; returns how many there were."""
        con = self._connection()
        with con:
            cur = con.execute("DELETE FROM interactions WHERE user = ?", (str(user),))
        return int(cur.rowcount)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
