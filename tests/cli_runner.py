"""Running the ``recforge`` command line in-process for tests: its exit status, stdout and stderr."""

from __future__ import annotations

import sys

from recforge.cli import main


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``recforge ARGS...`` through the console entry point (its error boundary included)."""
    monkeypatch.setattr(sys, "argv", ["recforge", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
