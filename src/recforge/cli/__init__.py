"""`recforge` command line: parses arguments, builds objects through the library, prints results.

Every failure the user can fix (a missing or malformed file, an unknown dataset, model, parameter or id, an
out-of-range value, an unwritable folder) ends in one line on stderr naming the culprit and exit status 2.
An error that is a bug in recforge itself ends in a short line saying so and exit status 1; ``--debug``
shows the traceback of either. Ctrl-C ends with exit status 130.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import traceback
import typing
import zipfile
from pathlib import Path

import torch
import typer
from rich.markup import escape

from recforge.cli.common import app, err, state
from recforge.data.download import DownloadError
from recforge.data.ids import UnknownIdError
from recforge.models.base import NotFittedError

#: The modules whose commands ``recforge --help`` lists, in this order (each registers its commands on import).
COMMAND_MODULES = ("train", "recommend", "serve", "plot", "words", "experiments", "catalog", "runs")
for _module in COMMAND_MODULES:
    importlib.import_module(f"recforge.cli.{_module}")

# ---------------------------------------------------------------------------------------------- errors
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # ConfigError, DataFormatError, InvalidParameterError, ModelFileError, RegistryError, ...
    OSError,  # missing, unreadable or unwritable files and folders, full disks
    KeyError,  # UnknownIdError, UnknownDatasetError
    EOFError,  # a truncated compressed file
    FloatingPointError,
    MemoryError,
    DownloadError,
    NotFittedError,
    sqlite3.Error,
    zipfile.BadZipFile,
    torch.OutOfMemoryError,
)
"""What the command line reports as one line and exit status 2: errors of the input, not of recforge."""


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and not isinstance(exc, UnknownIdError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and str(exc).startswith("[Errno") and exc.strerror:
        text = exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
        if exc.filename2 is not None:
            text += f" ({exc.filename2})"
    elif isinstance(exc, EOFError):
        text = f"a compressed file ended too early (truncated download?): {exc}"
    elif isinstance(exc, MemoryError | torch.OutOfMemoryError):
        text = f"out of memory ({str(exc).splitlines()[0] if str(exc) else 'MemoryError'}): use a smaller batch_size"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())  # one line, whatever the library wrote


def _fail(exc: BaseException) -> typing.NoReturn:
    if state["debug"]:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, USER_ERRORS):
        err.print(f"[red]error:[/red] {escape(_message(exc))}", highlight=False)
        sys.exit(2)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    hint = "" if state["debug"] else "; rerun with --debug for the traceback"
    err.print(
        f"[red]internal error[/red] (a bug in recforge, please report it): "
        f"{type(exc).__name__}: {escape(_message(exc))}{at}{hint}",
        highlight=False,
    )
    sys.exit(1)


def main() -> None:
    """Console entry point: the one error boundary (see the module docstring)."""
    state["debug"] = "--debug" in sys.argv[1 : sys.argv.index("--") if "--" in sys.argv else None]
    try:
        code = app(standalone_mode=False)
    except typer.Abort as exc:  # click turns EOFError into Abort
        if isinstance(exc.__cause__, EOFError):
            _fail(exc.__cause__)
        err.print("Aborted.")
        sys.exit(1)
    except typer.BadParameter as exc:  # a bad value: one line, like every other bad input
        err.print(f"[red]error:[/red] {escape(' '.join(exc.format_message().split()))}", highlight=False)
        sys.exit(2)
    except typer.TyperException as exc:  # usage errors (unknown option, missing argument): click's own report
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        _fail(exc)
    sys.exit(code if isinstance(code, int) else 0)
