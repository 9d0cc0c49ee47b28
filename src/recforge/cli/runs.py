"""`recforge runs`: the run registry (the figures of a run: `recforge plot`, in :mod:`recforge.cli.plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from recforge.cli.common import (
    app,
    err,
    out,
    runs_app,
)
from recforge.experiments.runs import RunRegistry, resolve_run, short_id

# ---------------------------------------------------------------------------------------------- runs
RunsDir = Annotated[Path, typer.Option("--output-dir", help="run output directory")]


def _metrics_text(metrics: dict[str, Any], names: list[str] | None = None) -> str:
    keys = names if names is not None else list(metrics)
    shown = [(k, metrics[k]) for k in keys if k in metrics]
    return "\n".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in shown) or "-"


app.add_typer(runs_app, name="runs", rich_help_panel="Catalogue and registry")


@runs_app.command("list")
def runs_list(
    output_dir: RunsDir = Path("runs"),
    dataset: Annotated[str | None, typer.Option(help="only runs on this dataset")] = None,
    model: Annotated[str | None, typer.Option(help="only runs of this model")] = None,
    study: Annotated[str | None, typer.Option(help="only the trials (and best run) of this tuning study")] = None,
    sort: Annotated[
        str | None, typer.Option(help="sort by this metric, best first (e.g. ndcg@100, valid_ndcg@100)")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="show at most this many runs")] = None,
    full_ids: Annotated[bool, typer.Option("--full-ids", help="show the full run ids (with their time stamp)")] = False,
) -> None:
    """Finished runs with their test metrics (a tuning trial: its validation metrics, valid_*), rounded."""
    runs = RunRegistry(output_dir).list()
    if dataset is not None:
        runs = [r for r in runs if str(r["dataset"]).lower() == dataset.lower()]
    if model is not None:
        runs = [r for r in runs if str(r["model"]).lower() == model.lower()]
    if study is not None:
        runs = [r for r in runs if r.get("study") == study]
    if sort is not None:
        lower_better = sort.split("_")[-1] in ("rmse", "mae")
        with_value = [r for r in runs if isinstance(r["metrics"].get(sort), int | float)]
        if runs and not with_value:
            raise ValueError(f"--sort {sort}: no listed run has this metric")
        with_value.sort(key=lambda r: r["metrics"][sort], reverse=not lower_better)
        runs = with_value + [r for r in runs if r not in with_value]
    total = len(runs)
    if limit is not None:
        runs = runs[: max(0, limit)]
    names = list(dict.fromkeys(k for r in runs for k in r["metrics"]))
    if sort is not None and sort in names:
        names.remove(sort)
        names.insert(0, sort)
    shown_ids = [r["id"] if full_ids else short_id(r["id"]) for r in runs]
    columns = ["dataset", "split", "model", *(["study"] if any(r.get("study") for r in runs) else [])]
    texts = [[shown, *(str(r.get(c) or "") for c in columns)] for shown, r in zip(shown_ids, runs, strict=True)]
    widths = [max([len(h), *(len(t[i]) for t in texts)]) for i, h in enumerate(["run", *columns])]
    # a column per metric when the terminal is wide enough, else one column of "name value" lines
    wide = sum(w + 3 for w in widths) + sum(max(len(n), 6) + 3 for n in names) + 1 <= out.width
    table = Table(title=f"runs in {escape(str(output_dir))} ({len(runs)} of {total})" if limit else None)
    table.add_column("run", no_wrap=True, min_width=widths[0])
    for column in columns:
        table.add_column(column)
    for name in names if wide else ["metrics"]:
        table.add_column(escape(name), justify="right" if wide else "left", no_wrap=not wide)
    for text, r in zip(texts, runs, strict=True):
        cells = [escape(t) for t in text]
        if wide:
            cells += [f"{r['metrics'][n]:.4f}" if isinstance(r["metrics"].get(n), float) else "" for n in names]
        else:
            cells.append(escape(_metrics_text(r["metrics"], names)))
        table.add_row(*cells)
    out.print(table)
    if not runs:
        err.print(f"no runs in {escape(str(output_dir))}" + (" matching the filters" if total == 0 else ""))


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(help="a run: folder, id or short id")],
    output_dir: RunsDir = Path("runs"),
) -> None:
    """A run's config, split, metrics and files."""
    import json

    path = resolve_run(run, output_dir)
    out.print(f"[bold]{escape(path.name)}[/bold]  ({escape(str(path))})", highlight=False)
    config = json.loads((path / "config.json").read_text())
    table = Table(title="config")
    for column in ("key", "value"):
        table.add_column(column)
    for section, values in config.items():
        if isinstance(values, dict):
            for key, value in values.items():
                table.add_row(escape(f"{section}.{key}"), escape(json.dumps(value)))
    out.print(table)
    split_file = path / "split.json"
    if split_file.is_file():
        split = json.loads(split_file.read_text())
        table = Table(title="split")
        for column in ("", "value"):
            table.add_column(column)
        for key, value in split.items():
            shown = (
                f"{value:.6g}"
                if isinstance(value, float)
                else (json.dumps(value) if isinstance(value, dict) else str(value))
            )
            table.add_row(escape(key), escape(shown))
        out.print(table)
    metrics_file = path / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        parts = [p for p in ("valid", "test") if p in metrics]
        names = list(dict.fromkeys(k for p in parts for k in metrics[p]["metrics"]))
        table = Table(title="metrics")
        for column in ("part", "users", *names):
            table.add_column(escape(column), justify="left" if column == "part" else "right")
        for p in parts:
            values = metrics[p]["metrics"]
            cells = [f"{values[n]:.4f}" if isinstance(values.get(n), float) else str(values.get(n, "")) for n in names]
            table.add_row(p, str(metrics[p].get("n_users", "")), *cells)
        out.print(table)
        if "fit" in metrics:
            out.print(f"fit: {metrics['fit'].get('seconds', 0):.1f}s", highlight=False)
    table = Table(title="files")
    for column in ("file", "size"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        table.add_row(escape(str(f.relative_to(path))), _size(f.stat().st_size))
    out.print(table)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@runs_app.command("rm")
def runs_rm(
    runs: Annotated[list[str], typer.Argument(help="runs to delete: folders, ids or short ids")],
    output_dir: RunsDir = Path("runs"),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
) -> None:
    """Delete runs: each run's folder and its registry row, together."""
    paths = [resolve_run(r, output_dir) for r in runs]
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise ValueError(f"recforge runs rm: pass --yes to delete {len(paths)} run(s) without a terminal to ask")
        names = ", ".join(short_id(p.name) for p in paths)
        if not typer.confirm(f"delete {len(paths)} run(s): {names}?"):
            raise typer.Exit(1)
    for path in paths:
        RunRegistry(path.parent).delete(path.name)
        out.print(f"deleted {escape(short_id(path.name))} ({escape(str(path))})", highlight=False)
