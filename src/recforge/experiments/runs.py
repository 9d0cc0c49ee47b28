"""Run directories (everything one experiment produced) and the SQLite registry that lists them.

A run directory is built under a hidden temporary name beside its final place. When it is complete, its
registry row is written and the folder renamed into place in one registry transaction: both happen or
neither does (a failed rename rolls the row back; a process killed in between leaves an uncommitted
transaction that SQLite rolls back, and a temporary folder that the next run removes). A run folder
without a row (an older recforge, a copied folder) is registered when the next run starts.

Layout::

    <output_dir>/<run_id>/
        config.json        resolved experiment configuration
        split.json         split sizes and where the data came from (``data_source``)
        metrics.json       mean metrics per evaluated part, with user counts and timings
        per_user_test.csv  per-user metric values on the test part (for significance tests)
        model/             the saved model (config.json, ids.json, weights.safetensors)
        items.csv          item titles, when the dataset has them (``recforge recommend`` shows them)
        heldout_users.json users held out of training by the split (strong generalisation protocols)
        log.txt            what happened, with times
    <output_dir>/registry.sqlite   one row per finished run
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recforge.experiments.config import is_safe_run_name

REGISTRY_FILE = "registry.sqlite"
_COLUMNS = ("id", "created", "dataset", "split", "model", "metrics", "path", "study")


class RegistryError(ValueError):
    """The run registry file cannot be read or written; the message names the file."""


class OutputFolderError(OSError):
    """A run folder cannot be written (permission denied, read-only or full disk); the message names the folder."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


def new_run_id(label: str) -> str:
    """A sortable, unique id: UTC time, the label, and a short random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "-" for c in label)[:100]
    return f"{stamp}-{safe}-{os.urandom(2).hex()}"


_GENERATED_ID = re.compile(r"\d{8}-\d{6}-(.+)")


def short_id(run_id: str) -> str:
    """A run id without its time stamp (``20261201-183344-ml-100k-ease-3f2a`` -> ``ml-100k-ease-3f2a``); a chosen
    ``run.name`` is shown as it is. Commands accept either."""
    match = _GENERATED_ID.fullmatch(run_id)
    return match.group(1) if match else run_id


def resolve_run(ref: str | Path, output_dir: str | Path = "runs") -> Path:
    """The run folder ``ref`` names: a run folder's path, or a run id in ``output_dir`` -- full, short
    (:func:`short_id`) or a unique prefix. An unknown or ambiguous reference raises naming the candidates."""
    path = Path(ref)
    if (path / "config.json").is_file():
        return path
    output_dir = Path(output_dir)
    text = str(ref)
    if (output_dir / text / "config.json").is_file():
        return output_dir / text
    runs = (
        sorted(p.name for p in output_dir.iterdir() if not p.name.startswith(".") and (p / "config.json").is_file())
        if output_dir.is_dir()
        else []
    )
    found = [r for r in runs if short_id(r) == text] or [
        r for r in runs if r.startswith(text) or short_id(r).startswith(text)
    ]
    if len(found) == 1:
        return output_dir / found[0]
    if found:
        shown = ", ".join(short_id(r) for r in found[:5]) + (" ..." if len(found) > 5 else "")
        raise ValueError(f"run {text!r} is ambiguous in {output_dir}: {len(found)} runs match ({shown})")
    raise FileNotFoundError(f"no run {text!r} in {output_dir} (recforge runs list --output-dir {output_dir})")


def _check_run_id(run_id: str) -> None:
    """A run id is one folder name inside the output folder, never a path (defence behind the config check)."""
    if not is_safe_run_name(run_id):
        raise ValueError(f"run.name: {run_id!r} is not a safe folder name (letters, digits, '-', '_', '.')")


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (another user's counts)."""
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
        if len(parts) == 4 and parts[1].isdigit() and tmp.is_dir() and not process_alive(int(parts[1])):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _cannot_write(folder: Path, exc: OSError) -> OutputFolderError:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(folder) else ""
    error = OutputFolderError(f"cannot write the run into {folder}: {reason}{where}")
    error.errno = exc.errno
    return error


class RunWriter:
    """Collects a run's files in a temporary directory; :meth:`commit` registers it and renames it into place.

    The temporary name carries the process id, so the next run in the same output folder removes what a killed
    run left (:func:`remove_abandoned`). Failures to write (permission denied, read-only or full disk) raise
    :class:`OutputFolderError` naming the output folder.
    """

    def __init__(self, output_dir: Path, run_id: str):
        _check_run_id(run_id)
        self.output_dir = Path(output_dir)
        self.created_output_dir = not self.output_dir.exists()
        self.run_id = run_id
        self.final_path = self.output_dir / run_id
        # a plain mkdir (not mkdtemp, whose 0o700 mode would survive the rename)
        self.path = self.output_dir / f".{run_id}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        registry = RunRegistry(self.output_dir)
        registry.check()  # a broken registry fails now, not after training
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            remove_abandoned(self.output_dir)
            if any(not p.name.startswith(".") and p.is_dir() for p in self.output_dir.iterdir()):
                registry.reconcile()  # folders of runs killed between rename and commit, or older than the registry
            if self.final_path.exists():
                raise FileExistsError(f"run directory {self.final_path} already exists (choose another run.name)")
            self.path.mkdir()
        except FileExistsError:
            raise
        except OSError as exc:
            raise _cannot_write(self.output_dir, exc) from None
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a failure to write into the run folder into an :class:`OutputFolderError` naming the folder."""
        try:
            yield
        except OutputFolderError:
            raise
        except OSError as exc:
            raise _cannot_write(self.output_dir, exc) from None

    def log(self, message: str) -> None:
        with self.writing(), (self.path / "log.txt").open("a") as f:
            f.write(f"[{time.perf_counter() - self._t0:8.2f}s] {message}\n")

    def write_json(self, name: str, data: Any) -> None:
        """Write strict JSON (``NaN``/``Infinity`` are refused: they are not JSON)."""
        text = json.dumps(data, indent=2, default=str, allow_nan=False) + "\n"
        with self.writing():
            (self.path / name).write_text(text)

    def commit(self) -> Path:
        """Write the registry row and rename the folder into place, as one unit (see the module docstring)."""
        RunRegistry(self.output_dir).commit_run(self.run_id, self.path, self.final_path)
        return self.final_path

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.created_output_dir:  # leave no empty output folder behind a failed first run
            with contextlib.suppress(OSError):
                self.output_dir.rmdir()


@contextlib.contextmanager
def run_directory(output_dir: Path, run_id: str) -> Iterator[RunWriter]:
    """Context manager: the run directory (and its registry row) appear only if the block and the commit succeed."""
    writer = RunWriter(output_dir, run_id)
    try:
        yield writer
        writer.commit()
    except BaseException:
        writer.discard()
        raise


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The resolved config and metrics of a finished run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a recforge run directory (no config.json)")
    out = {"config": _read_json(run_dir / "config.json")}
    if (run_dir / "metrics.json").is_file():
        out["metrics"] = _read_json(run_dir / "metrics.json")
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def registry_row(run_dir: Path) -> dict[str, Any]:
    """The registry columns of a (complete) run folder, read from its ``config.json`` and ``metrics.json``.

    ``metrics`` are the test metrics; a run evaluated on its validation part only (a tuning trial) lists those,
    prefixed ``valid_``. ``study`` is the hyper-parameter search the run belongs to (``run.study``), if any.
    """
    info = read_run(run_dir)
    config, metrics = info["config"], info.get("metrics", {})
    data = config.get("data", {})
    source = config.get("split", {}).get("train_path") or data.get("path") or "table"  # predefined split files first
    label = data.get("dataset") or Path(str(source)).stem
    values = metrics.get("test", {}).get("metrics")
    if values is None:
        values = {f"valid_{k}": v for k, v in metrics.get("valid", {}).get("metrics", {}).items()}
    return {
        "dataset": label,
        "split": config.get("split", {}).get("protocol", ""),
        "model": config.get("model", {}).get("name", ""),
        "metrics": values,
        "study": config.get("run", {}).get("study"),
    }


class RunRegistry:
    """An SQLite table of finished runs: id, time, dataset, split, model, metrics, path and study (the
    hyper-parameter search of a tuning trial; a registry of an older recforge gets the column when opened).

    A file that is not a readable registry raises :class:`RegistryError` naming it (the run folders beside it
    are not affected; moving it away starts a new registry that the next run fills from the folders).
    """

    def __init__(self, output_dir: str | Path):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / REGISTRY_FILE

    def _broken(self, exc: Exception) -> RegistryError:
        return RegistryError(
            f"run registry {self.path} cannot be used ({exc}); move it away to start a new one "
            "(the run folders are not affected)"
        )

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise self._broken(exc) from None
        try:
            con.execute(
                "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, created TEXT, dataset TEXT, "
                "split TEXT, model TEXT, metrics TEXT, path TEXT, study TEXT)"
            )
            if "study" not in {r[1] for r in con.execute("PRAGMA table_info(runs)")}:
                try:
                    con.execute("ALTER TABLE runs ADD COLUMN study TEXT")  # a registry of an older recforge
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):  # another process added it just now
                        raise
        except sqlite3.Error as exc:
            con.close()
            raise self._broken(exc) from None
        return con

    def check(self) -> None:
        """Raise :class:`RegistryError` now if an existing registry file is unreadable (creates nothing)."""
        if not self.path.exists():
            return
        self._known_ids()

    def _known_ids(self) -> set[str]:
        """The ids in the registry, read without writing anything (an absent file: none)."""
        return {r[0] for r in self._rows()}

    def _rows(self) -> list[tuple[Any, ...]]:
        """Every row, by id, read without creating anything (an absent file or table: none)."""
        if not self.path.exists():
            return []
        try:
            # not mode=ro: a plain connection rolls back what a killed run left uncommitted (a hot journal)
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as con:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "runs" not in tables:
                    return []
                present = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
                columns = ", ".join(c if c in present else f"NULL AS {c}" for c in _COLUMNS)
                return con.execute(f"SELECT {columns} FROM runs ORDER BY id").fetchall()
        except (sqlite3.Error, OSError) as exc:
            raise self._broken(exc) from None

    def _insert(self, con: sqlite3.Connection, run_id: str, row: dict[str, Any], path: Path) -> None:
        con.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                datetime.now(UTC).isoformat(),
                row["dataset"],
                row["split"],
                row["model"],
                json.dumps(row["metrics"], allow_nan=False),
                str(path),
                row.get("study"),
            ),
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: other runs wait), committed if the block succeeds."""
        with contextlib.closing(self._connect()) as con:
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._broken(exc) from None
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._broken(exc) from None

    def commit_run(self, run_id: str, tmp: Path, final: Path) -> None:
        """Register the run folder ``tmp`` (complete) and rename it to ``final``: both or neither."""
        row = registry_row(tmp)
        try:
            with self._transaction() as con:
                if final.exists():
                    raise FileExistsError(f"run directory {final} already exists (choose another run.name)")
                self._insert(con, run_id, row, final)
                try:
                    os.replace(tmp, final)
                except OSError as exc:
                    raise _cannot_write(self.output_dir, exc) from None
        except sqlite3.Error as exc:
            raise self._broken(exc) from None

    def delete(self, run_id: str) -> None:
        """Delete a run: its registry row and its folder, together.

        In one registry transaction the row is deleted and the folder renamed to a hidden temporary name (what a
        killed run leaves, which :func:`remove_abandoned` clears); the transaction commits only when the rename
        succeeded, then the renamed folder is removed. Killed half-way, either both stay or both go.
        """
        _check_run_id(run_id)
        folder = self.output_dir / run_id
        if not folder.is_dir():
            raise FileNotFoundError(f"no run {run_id!r} in {self.output_dir}")
        doomed = self.output_dir / f".{run_id}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            with self._transaction() as con:
                con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
                try:
                    os.replace(folder, doomed)
                except OSError as exc:
                    raise _cannot_write(self.output_dir, exc) from None
        except sqlite3.Error as exc:
            raise self._broken(exc) from None
        shutil.rmtree(doomed, ignore_errors=True)

    def reconcile(self) -> list[str]:
        """Register the complete run folders that have no row (e.g. made before the registry existed). Returns them."""
        if not self.output_dir.is_dir():
            return []
        known = self._known_ids()
        candidates = [
            p
            for p in self.output_dir.iterdir()
            if not p.name.startswith(".") and p.name not in known and (p / "metrics.json").is_file()
        ]
        if not candidates:
            return []
        added = []
        try:
            with self._transaction() as con:
                known = {r[0] for r in con.execute("SELECT id FROM runs")}
                for folder in sorted(self.output_dir.iterdir()):
                    if folder.name.startswith(".") or folder.name in known or not folder.is_dir():
                        continue
                    if not ((folder / "config.json").is_file() and (folder / "metrics.json").is_file()):
                        continue
                    try:
                        row = registry_row(folder)
                    except (OSError, ValueError):
                        continue  # not a readable run folder: not ours to list
                    self._insert(con, folder.name, row, folder)
                    added.append(folder.name)
        except sqlite3.Error as exc:
            raise self._broken(exc) from None
        return added

    def add(
        self,
        run_id: str,
        *,
        dataset: str,
        split: str,
        model: str,
        metrics: dict[str, Any],
        path: Path,
        study: str | None = None,
    ) -> None:
        """Write one row (replacing a row with the same id)."""
        try:
            with self._transaction() as con:
                row = {"dataset": dataset, "split": split, "model": model, "metrics": metrics, "study": study}
                self._insert(con, run_id, row, path)
        except sqlite3.Error as exc:
            raise self._broken(exc) from None

    def list(self) -> list[dict[str, Any]]:
        """The rows whose run folder exists, by id (a row whose folder was deleted is not listed)."""
        out = []
        for r in self._rows():
            if not (self.output_dir / r[0]).is_dir():
                continue
            try:
                metrics = json.loads(r[5]) if r[5] else {}
            except json.JSONDecodeError:
                metrics = {}
            out.append(dict(zip(_COLUMNS, (*r[:5], metrics, *r[6:]), strict=True)))
        return out
