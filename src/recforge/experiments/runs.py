"""Run directories (everything one experiment produced) and the SQLite registry that lists them.

A run directory is built under a hidden temporary name beside its final place and renamed only
when complete, so an interrupted or failed run never leaves a half-written directory behind.

Layout::

    <output_dir>/<run_id>/
        config.json        resolved experiment configuration
        split.json         split sizes
        metrics.json       mean metrics per evaluated part, with user counts and timings
        per_user_test.csv  per-user metric values on the test part (for significance tests)
        model/             the saved model (config.json, ids.json, weights.safetensors)
        log.txt            what happened, with times
    <output_dir>/registry.sqlite   one row per finished run
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REGISTRY_FILE = "registry.sqlite"


def new_run_id(label: str) -> str:
    """A sortable, unique id: UTC time, the label, and a short random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    return f"{stamp}-{safe}-{os.urandom(2).hex()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_abandoned(output_dir: Path) -> list[Path]:
    """Remove the temporary run folders (``.<run>.<pid>.<hex>.tmp``) whose process is gone: runs that were killed.

    A run in progress (its process alive) is left alone. Returns what was removed.
    """
    removed = []
    for tmp in Path(output_dir).glob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # [".<run id>", pid, hex, "tmp"]
        if len(parts) == 4 and parts[1].isdigit() and tmp.is_dir() and not _alive(int(parts[1])):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


class RunWriter:
    """Collects a run's files in a temporary directory; :meth:`commit` renames it into place.

    The temporary name carries the process id, so the next run in the same output folder removes what a killed
    run left (:func:`remove_abandoned`).
    """

    def __init__(self, output_dir: Path, run_id: str):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.output_dir)
        self.run_id = run_id
        self.final_path = self.output_dir / run_id
        if self.final_path.exists():
            raise FileExistsError(f"run directory {self.final_path} already exists")
        # a plain mkdir (not mkdtemp, whose 0o700 mode would survive the rename)
        self.path = self.output_dir / f".{run_id}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        self.path.mkdir()
        self._t0 = time.perf_counter()

    def log(self, message: str) -> None:
        with (self.path / "log.txt").open("a") as f:
            f.write(f"[{time.perf_counter() - self._t0:8.2f}s] {message}\n")

    def write_json(self, name: str, data: Any) -> None:
        (self.path / name).write_text(json.dumps(data, indent=2, default=str) + "\n")

    def commit(self) -> Path:
        os.replace(self.path, self.final_path)
        return self.final_path

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def run_directory(output_dir: Path, run_id: str) -> Iterator[RunWriter]:
    """Context manager: the run directory appears at ``output_dir/run_id`` only if the block succeeds."""
    writer = RunWriter(output_dir, run_id)
    try:
        yield writer
    except BaseException:
        writer.discard()
        raise
    writer.commit()


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config and metrics of a finished run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a recforge run directory (no config.json)")
    out = {"config": json.loads((run_dir / "config.json").read_text())}
    if (run_dir / "metrics.json").is_file():
        out["metrics"] = json.loads((run_dir / "metrics.json").read_text())
    return out


class RunRegistry:
    """An SQLite table of finished runs: id, time, dataset, split, model, metrics and path."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / REGISTRY_FILE

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path)
        con.execute(
            "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, created TEXT, dataset TEXT, "
            "split TEXT, model TEXT, metrics TEXT, path TEXT)"
        )
        return con

    def add(self, run_id: str, *, dataset: str, split: str, model: str, metrics: dict[str, Any], path: Path) -> None:
        with contextlib.closing(self._connect()) as con, con:
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    datetime.now(UTC).isoformat(),
                    dataset,
                    split,
                    model,
                    json.dumps(metrics),
                    str(path),
                ),
            )

    def list(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with contextlib.closing(self._connect()) as con:
            rows = con.execute("SELECT id, created, dataset, split, model, metrics, path FROM runs ORDER BY id")
            keys = ("id", "created", "dataset", "split", "model", "metrics", "path")
            return [dict(zip(keys, (*r[:5], json.loads(r[5]), r[6]), strict=True)) for r in rows]
