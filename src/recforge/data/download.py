"""The data directory, verified downloads and atomic, size-limited archive extraction.

Nothing here touches the network unless a file is missing: :func:`fetch_file` returns a present file
(with a matching checksum) at once. Downloads go to a temporary file next to the destination, are
checked against their sha256 (and an optional content check) and only then renamed into place, so an
interrupted or corrupt download never leaves a file that looks complete and nothing unverified is ever
extracted. Only ``https://`` (and local ``file://``) addresses are fetched, and a redirect to any other
scheme (``http``, ``ftp``) is refused. :func:`extract_zip` refuses unsafe member paths and archives that
unpack to more than a size limit. :func:`data_dir` is the only place that reads the ``RECFORGE_DATA``
environment variable.
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
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO
from urllib.parse import urlparse

__all__ = [
    "ENV_VAR",
    "MAX_EXTRACTED_BYTES",
    "MAX_MEMBER_BYTES",
    "ChecksumError",
    "DownloadError",
    "HttpsOnlyRedirectHandler",
    "check_url",
    "data_dir",
    "extract_zip",
    "fetch_file",
    "sha256_file",
    "umask",
]

ENV_VAR = "RECFORGE_DATA"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0
_USER_AGENT = "recforge (+https://pypi.org/project/recforge)"
_SCHEMES = ("https", "file")  # file:// is a local copy (a mirror, tests); everything remote is https

MAX_EXTRACTED_BYTES = 16 << 30
"""Default limit on the total uncompressed size of an archive (ML-25M, the largest one registered, holds 1.2 GB)."""
MAX_MEMBER_BYTES = 8 << 30
"""Default limit on the uncompressed size of one archive member."""


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
    """Hex sha256 of a file's bytes (of its gunzipped content with ``decompress=True``).

    A truncated or corrupt gzip file raises :class:`ChecksumError` naming it (never EOFError, which
    command-line frameworks take for "input aborted").
    """
    try:
        return _sha256(path, decompress=decompress)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ChecksumError(
            f"{path} is not a complete gzip file ({exc}): the copy is truncated or damaged; delete it to fetch it again"
        ) from None


def _sha256(path: str | Path, *, decompress: bool) -> str:
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
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """Make sure ``dest`` holds the file at ``url`` (with the given sha256, when one is given).

    A present ``dest`` whose checksum matches (or with no checksum to check) is returned with no
    network access. Otherwise the file is downloaded to a temporary file in ``dest``'s folder,
    verified (``sha256``, then ``verify(temporary file)``, which raises to reject it), and atomically
    renamed to ``dest`` with the usual file mode (0666 less the umask). Only ``https://`` and
    ``file://`` addresses are fetched, and redirects to other schemes are refused. On any failure
    the temporary file is removed and a :class:`DownloadError` says which URL to fetch by hand and
    where to put the file (``manual_hint`` replaces the default "save it as <dest>").
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.is_file() and (expected is None or _matches(dest, expected)):
        return dest
    hint = manual_hint or f"save it as {dest}"
    check_url(url, hint=hint)
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
        if verify is not None:
            try:
                verify(tmp)
            except (ChecksumError, ValueError, OSError, EOFError) as exc:
                raise DownloadError(
                    f"the download of {url} failed its check ({exc}); fetch it by hand and {hint}"
                ) from exc
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, dest)
    except DownloadError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        reason = exc.reason if type(exc) is urllib.error.URLError else exc
        raise DownloadError(f"could not download {url} ({reason}); fetch it by hand and {hint}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _matches(path: Path, expected: str) -> bool:
    try:
        return sha256_file(path) == expected
    except ChecksumError:
        return False


def umask() -> int:
    """The process umask (read from /proc where possible: setting it to read it races with other threads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_url(url: str, *, hint: str = "") -> None:
    """Refuse any address that is not ``https://`` (or a local ``file://`` copy) with a :class:`DownloadError`."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in _SCHEMES:
        where = f"; fetch it by hand over https and {hint}" if hint else ""
        raise DownloadError(f"refusing to download {url}: only https:// addresses are allowed, not {scheme}://{where}")


class HttpsOnlyRedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https: a redirect to http, ftp or any other scheme is refused.

    urllib's default handler follows https -> http and https -> ftp, which would let anyone on the
    path serve other bytes (the sha256 check would still catch them, but nothing unverified should
    be fetched over an unauthenticated channel in the first place).
    """

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        scheme = urlparse(newurl).scheme.lower()
        if scheme != "https":
            with contextlib.suppress(Exception):
                fp.close()
            raise DownloadError(
                f"refusing the redirect of {req.full_url} to {newurl} (HTTP {code}): only https:// is allowed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _urlopen(request: urllib.request.Request, timeout: float) -> Any:
    """The one place that touches the network (tests replace it): an opener whose redirects stay on https."""
    opener = urllib.request.build_opener(HttpsOnlyRedirectHandler())
    return opener.open(request, timeout=timeout)


def _download(url: str, out: BinaryIO, *, progress: bool, label: str) -> str:
    """Stream ``url`` into ``out``; return the hex sha256 of the bytes."""
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with _urlopen(request, _TIMEOUT_S) as response:
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


def extract_zip(
    zip_path: str | Path,
    dest_dir: str | Path,
    *,
    max_total_bytes: int = MAX_EXTRACTED_BYTES,
    max_member_bytes: int = MAX_MEMBER_BYTES,
) -> Path:
    """Extract ``zip_path`` so that its files end up in ``dest_dir``, atomically and within size limits.

    The archive is extracted into a temporary folder next to ``dest_dir`` which is then renamed:
    an archive holding a single top-level folder (``ml-100k/...``) has that folder renamed to
    ``dest_dir``; a flat archive (HetRec Last.fm) becomes ``dest_dir`` itself. An existing non-empty
    ``dest_dir`` is never overwritten (:class:`FileExistsError`). Members escaping the folder
    (absolute paths, ``..``) are refused, and so is an archive whose members unpack to more than
    ``max_total_bytes`` in all or ``max_member_bytes`` for one (the sizes the archive declares are
    checked first, then the bytes actually written, so a lying header cannot get past the limit).
    Nothing is left behind on failure.
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    if dest_dir.exists() and (not dest_dir.is_dir() or any(dest_dir.iterdir())):
        raise FileExistsError(f"cannot extract {zip_path.name}: {dest_dir} already exists and is not empty")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".extracting", dir=dest_dir.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                members = archive.infolist()
                _check_members(zip_path, members, max_total_bytes, max_member_bytes)
                written = 0
                for info in members:
                    written = _extract_member(zip_path, archive, info, tmp, max_member_bytes, max_total_bytes, written)
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
            raise DownloadError(f"{zip_path} is not a valid zip archive ({exc}); delete it and retry") from exc
        shutil.rmtree(tmp / "__MACOSX", ignore_errors=True)
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        mode = 0o777 & ~umask()
        os.chmod(root, mode)
        if dest_dir.is_dir():
            dest_dir.rmdir()  # empty (checked above)
        os.replace(root, dest_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


def _too_big(zip_path: Path, what: str, size: int, limit: int) -> DownloadError:
    return DownloadError(
        f"{zip_path}: {what} unpacks to more than {limit:,} bytes ({size:,}); not extracting it "
        f"(a damaged archive or a zip bomb; raise the limit only for an archive you trust)"
    )


def _check_members(zip_path: Path, members: list[zipfile.ZipInfo], max_total: int, max_member: int) -> None:
    """Refuse unsafe member paths and declared sizes above the limits before anything is written."""
    total = 0
    for info in members:
        member = info.filename
        parts = PurePosixPath(member.replace("\\", "/")).parts
        if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DownloadError(f"{zip_path} holds an unsafe member path {member!r}; not extracting")
        if info.file_size > max_member:
            raise _too_big(zip_path, f"member {member!r}", info.file_size, max_member)
        total += info.file_size
    if total > max_total:
        raise _too_big(zip_path, "the archive", total, max_total)


def _extract_member(
    zip_path: Path,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    root: Path,
    max_member: int,
    max_total: int,
    total: int,
) -> int:
    """Write one member under ``root``, counting the bytes really written; return the new ``total``."""
    target = root.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return total
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            total += len(chunk)
            if written > max_member:
                raise _too_big(zip_path, f"member {info.filename!r}", written, max_member)
            if total > max_total:
                raise _too_big(zip_path, "the archive", total, max_total)
            out.write(chunk)
    return total
