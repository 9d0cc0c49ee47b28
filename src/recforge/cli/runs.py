"""`recforge plot` and `recforge runs`: what a run left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from recforge.analysis.plots import plot_training_curves
from recforge.cli.common import (
    app,
    out,
    runs_app,
)
from recforge.experiments.runs import RunRegistry


@app.command()
def plot(run_dir: Path) -> None:
    """Write training_curves.png (total loss and its parts, KL on its own axis, validation metric, patience)."""
    log = run_dir / "training_log.csv"
    if not log.is_file():
        raise FileNotFoundError(f"{run_dir} has no training_log.csv (only trained neural models log epochs)")
    path = plot_training_curves(pd.read_csv(log), run_dir / "training_curves.png")
    out.print(f"wrote {escape(str(path))}")


# ---------------------------------------------------------------------------------------------- runs
def _metrics_text(metrics: dict[str, Any]) -> str:
    return "\n".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()) or "-"


@runs_app.command("list")
def runs_list(output_dir: Annotated[Path, typer.Option(help="run output directory")] = Path("runs")) -> None:
    """Finished runs with their test metrics."""
    runs = RunRegistry(output_dir).list()
    table = Table(title=f"runs in {escape(str(output_dir))}")
    table.add_column("id", no_wrap=True, min_width=max((len(r["id"]) for r in runs), default=2))
    for column in ("dataset", "split", "model"):
        table.add_column(column)
    table.add_column("test metrics", no_wrap=True)
    for r in runs:
        table.add_row(*(escape(str(r[c])) for c in ("id", "dataset", "split", "model")), _metrics_text(r["metrics"]))
    out.print(table)
