"""What every command shares: the Typer apps, the two consoles, progress bars and tables."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import recforge

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
datasets_app = typer.Typer(no_args_is_help=True, help="List, describe and fetch the registered datasets.")
models_app = typer.Typer(no_args_is_help=True, help="List the registered models and their hyper-parameters.")
splits_app = typer.Typer(no_args_is_help=True, help="The split protocols and their parameters.")
runs_app = typer.Typer(no_args_is_help=True, help="The run registry.")

out = Console(width=None if sys.stdout.isatty() else 160)  # piped output: wide tables, no truncated headers
err = Console(stderr=True, soft_wrap=True)  # log and error lines are never hard-wrapped (piped or not)

state = {"debug": False}

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="dataset cache (default: $RECFORGE_DATA, else ~/.cache/recforge)")
]


def _version(value: bool) -> None:
    if value:
        try:
            version = importlib.metadata.version("recforge")
        except importlib.metadata.PackageNotFoundError:
            version = recforge.__version__
        out.print(f"recforge {version} (torch {torch.__version__})", highlight=False)
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error (for bug reports)")] = False,
) -> None:
    """recforge: recommender systems from interaction logs to evaluated, saved models.

    Start with `recforge datasets list`, `recforge models list`, `recforge splits list` and `recforge run --help`.
    """
    state["debug"] = debug


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )


def make_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in r))
    return table


LoadDevice = Annotated[str, typer.Option("--device", help="where the saved model runs: auto, cpu, cuda, mps")]
