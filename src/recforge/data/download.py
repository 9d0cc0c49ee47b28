"""The data directory, verified downloads and atomic archive extraction.

Nothing here touches the network unless a file is missing: :func:`fetch_file` returns a present file
(with a matching checksum) at once. Downloads go to a temporary file next to the destination, are
checked against their sha256 and only then renamed into place, so an interrupted or corrupt download
never leaves a file that looks complete. :func:`data_dir` is the only place that reads the
``RECFORGE_DATA`` environment variable.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

__all__ = [
    "ENV_VAR",
    "ChecksumError",
    "DownloadError",
    "data_dir",
    "extract_zip",
    "fetch_file",
    "sha256_file",
]

ENV_VAR = "RECFORGE_DATA"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_USER_AGENT = "recforge (+https://pypi.org/project/recforge)"


class DownloadError(RuntimeError):
    """A download failed or gave the wrong bytes; the message says where to fetch it by hand and where to put it."""


class ChecksumError(ValueError):
    """A local data file does not have the recorded sha256."""


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` if given, else ``$RECFORGE_DATA``, else ``~/.cache/recforge``.

    Relative paths are taken from the current directory and returned absolute.
    """
    if explicit is not None and str(explicit) != "":
        chosen = Path(explicit)
    elif os.environ.get(ENV_VAR):
        chosen = Path(os.environ[ENV_VAR])
    else:
        chosen = Path.home() / ".cache" / "recforge"
    return Path(os.path.abspath(chosen.expanduser()))


def sha256_file(path: str | Path, *, decompress: bool = False) -> str:
    """Hex sha256 of a file's bytes (of its gunzipped content with ``decompress=True``)."""
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(
    url: str,
    dest: str | Path,
    sha256: str | None = None,
    *,
    progress: bool = True,
    manual_hint: str | None = None,
) -> Path:
    """Make sure ``dest`` holds the file at ``url`` (with the given sha256, when one is given).

    A present ``dest`` whose checksum matches (or with no checksum to check) is returned with no
    network access. Otherwise the file is downloaded to a temporary file in ``dest``'s folder,
    verified, and atomically renamed to ``dest``. On any failure the temporary file is removed and a
    :class:`DownloadError` says which URL to fetch by hand and where to put the file (``manual_hint``
    replaces the default "save it as <dest>").
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file() and (expected is None or sha256_file(dest) == expected):
        return dest
    hint = manual_hint or f"save it as {dest}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise DownloadError(f"cannot write to {dest.parent} ({exc}); fetch {url} by hand and {hint}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _download(url, out, progress=progress, label=dest.name)
        if expected is not None and got != expected:
            raise DownloadError(
                f"the download of {url} has sha256 {got}, expected {expected} (corrupt or changed file); "
                f"fetch it by hand and {hint}"
            )
        os.replace(tmp, dest)
    except DownloadError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = exc.reason if type(exc) is urllib.error.URLError else exc
        raise DownloadError(f"could not download {url} ({reason}); fetch it by hand and {hint}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(url: str, out: BinaryIO, *, progress: bool, label: str) -> str:
    """Stream ``url`` into ``out``; return the hex sha256 of the bytes."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        length = response.headers.get("Content-Length") if response.headers is not None else None
        total = int(length) if length and str(length).isdigit() else None
        with _progress_bar(progress, total, label) as advance:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                advance(len(chunk))
    return digest.hexdigest()


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr when ``enabled`` and stderr is a terminal; a no-op otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress("[progress.description]{task.description}", *columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        yield lambda n: bar.advance(task, n)


def extract_zip(zip_path: str | Path, dest_dir: str | Path) -> Path:
    """Extract ``zip_path`` so that its files end up in ``dest_dir``, atomically.

    The archive is extracted into a temporary folder next to ``dest_dir`` which is then renamed:
    an archive holding a single top-level folder (``ml-100k/...``) has that folder renamed to
    ``dest_dir``; a flat archive (HetRec Last.fm) becomes ``dest_dir`` itself. An existing non-empty
    ``dest_dir`` is never overwritten (:class:`FileExistsError`). Members escaping the folder
    (absolute paths, ``..``) are refused.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise FileExistsError(f"cannot extract {zip_path.name}: {dest_dir} already exists and is not empty")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".extracting", dir=dest_dir.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                for member in archive.namelist():
                    parts = PurePosixPath(member.replace("\\", "/")).parts
                    if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                        raise DownloadError(f"{zip_path} holds an unsafe member path {member!r}; not extracting")
                archive.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{zip_path} is not a valid zip archive ({exc}); delete it and retry") from exc
        shutil.rmtree(tmp / "__MACOSX", ignore_errors=True)
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        if dest_dir.is_dir():
            dest_dir.rmdir()  # empty (checked above)
        os.replace(root, dest_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir
