"""`recforge tune`, `recforge compare` and `recforge report`: searching, comparing and reporting runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from recforge.cli.common import DataDir, app, err, out
from recforge.experiments.compare import compare_runs
from recforge.experiments.config import load_config
from recforge.experiments.runs import resolve_run, short_id

OutputDir = Annotated[Path, typer.Option("--output-dir", help="the runs' output folder (run.output_dir)")]


@app.command(rich_help_panel="Experiments")
def tune(
    config: Annotated[Path, typer.Argument(help="experiment TOML file with a tune section")],
    trials: Annotated[int, typer.Option("--trials", help="finished trials the study should hold (a rerun continues)")],
    timeout: Annotated[float | None, typer.Option("--timeout", help="stop starting trials after S seconds")] = None,
    study: Annotated[str | None, typer.Option("--study", help="study name (default: tune-<file name>)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")] = None,
    data_dir: DataDir = None,
    output_dir: Annotated[Path | None, typer.Option(help="where trial runs and the study go (run.output_dir)")] = None,
    device: Annotated[str | None, typer.Option(help="training device (training.device)")] = None,
) -> None:
    """Search hyper-parameters with Optuna (TPE, median pruning): one run per trial, the best config as TOML.

    The tune section of the experiment names the search space with --set's dotted keys
    (model.l2 = {log_uniform = [1, 1e4]}, model.hidden_dims = {choice = [[600, 200], [200]]}) and the objective
    (metric = "ndcg@100" on the validation part, direction = "maximize"). The study is kept in
    <output_dir>/optuna.sqlite: the same command again continues it; a larger --trials adds trials. At the end
    the best configuration is written to <output_dir>/<study>.best.toml and run once on the test part.
    """
    from recforge.experiments.tuning import default_study_name, parse_tune, quiet_optuna
    from recforge.experiments.tuning import tune as run_tune

    overrides = [*(set_ or [])]
    for key, value in (("data.data_dir", data_dir), ("run.output_dir", output_dir), ("training.device", device)):
        if value is not None:
            overrides.append(f"{key}={json.dumps(str(value))}")
    cfg = load_config(config, overrides)
    name = study or default_study_name(config, cfg)
    if timeout is not None and not timeout > 0:
        raise typer.BadParameter(f"{timeout} is not > 0", param_hint="'--timeout'")
    if trials < 1:
        raise typer.BadParameter(f"{trials} is not >= 1", param_hint="'--trials'")
    quiet_optuna()  # our own line per trial replaces Optuna's log
    metric = parse_tune(cfg).metric
    result = run_tune(
        cfg,
        trials=trials,
        timeout=timeout,
        study_name=name,
        on_trial=lambda r: err.print(escape(r.line(metric)), highlight=False),
        log=lambda m: err.print(f"[dim]{escape(m)}[/dim]", highlight=False),
    )
    counts = {s: sum(r["state"] == s for r in result.trials) for s in ("complete", "pruned", "failed")}
    out.print(
        f"study {escape(result.study)}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed trial(s) in {escape(str(result.storage))}",
        highlight=False,
    )
    ranked = sorted(
        (r for r in result.trials if r["state"] == "complete" and r["value"] is not None),
        key=lambda r: r["value"],
        reverse=result.settings.direction == "maximize",
    )
    if ranked:
        table = Table(title=f"best trials (valid {escape(result.settings.metric)})")
        for column in ("trial", "run", f"valid {result.settings.metric}", "epochs", *result.settings.space):
            table.add_column(escape(column))
        for r in ranked[:10]:
            params = [escape(_value(r["params"].get(k))) for k in result.settings.space]
            epochs = "" if r["epochs"] is None else str(r["epochs"])
            table.add_row(str(r["number"]), escape(short_id(r["run"] or "")), f"{r['value']:.4f}", epochs, *params)
        out.print(table)
    if result.best_toml is not None:
        out.print(f"best configuration: {escape(str(result.best_toml))}", highlight=False)
    if result.final_run is not None and result.final_metrics is not None:
        test = result.final_metrics.get("test", {}).get("metrics", {})
        shown = "  ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
        out.print(f"test of the best configuration ({escape(str(result.final_run))}): {shown}", highlight=False)


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


@app.command(rich_help_panel="Experiments")
def compare(
    runs: Annotated[list[str], typer.Argument(help="runs (folders, ids or short ids); the first is the reference")],
    output_dir: OutputDir = Path("runs"),
    part: Annotated[str, typer.Option(help="the evaluated part to compare: test or valid")] = "test",
    metric: Annotated[list[str] | None, typer.Option("--metric", help="compare only this metric (repeatable)")] = None,
    alpha: Annotated[float, typer.Option(help="significance level of the Holm-corrected p-values")] = 0.05,
    bootstrap: Annotated[int, typer.Option(help="bootstrap resamples of the confidence intervals")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="print a Markdown table (for papers)")] = False,
    plot: Annotated[Path | None, typer.Option(help="write a bar chart of the differences with their intervals")] = None,
) -> None:
    """Paired per-user comparison of runs on the same split, with significance tests.

    For each metric: the difference to the first run, its 95% bootstrap interval over users, and the paired
    t-test and Wilcoxon p-values, Holm-corrected across the runs compared.
    """
    if bootstrap < 100:
        raise typer.BadParameter(f"{bootstrap} is not >= 100", param_hint="'--bootstrap'")
    if as_json and markdown:
        raise typer.BadParameter("give one of --json and --markdown", param_hint="'--json'")
    paths = [resolve_run(r, output_dir) for r in runs]
    comparison = compare_runs(paths, part=part, metrics=metric, alpha=alpha, n_boot=bootstrap)
    if plot is not None:
        from recforge.analysis.plots import plot_comparison

        plot_comparison(comparison.to_json()["rows"], plot)
    if as_json:
        out.print_json(json.dumps(comparison.to_json(), allow_nan=False))
    elif markdown:
        out.print(comparison.to_markdown(), markup=False, highlight=False, soft_wrap=True)
    else:
        header, rows = comparison.table()
        table = Table(title=f"{part} part, paired per user (reference: {escape(short_id(comparison.runs[0]['id']))})")
        for i, h in enumerate(header):
            table.add_column(escape(h), justify="right" if 3 <= i <= 7 else "left", no_wrap=i in (1, 5))
        previous = None
        for row, raw in zip(rows, comparison.rows, strict=True):
            if previous is not None and raw["metric"] != previous:
                table.add_section()
            previous = raw["metric"]
            style = "green" if raw.get("significant") else None
            table.add_row(*(escape(c) for c in row), style=style)
        out.print(table)
        n = sorted({r["n_users"] for r in comparison.rows if not r["reference"]})
        out.print(
            f"{', '.join(map(str, n))} paired users; significant: t-test and Wilcoxon p < {alpha} after Holm's "
            f"correction over {len(paths) - 1} comparison(s)",
            highlight=False,
        )
    if plot is not None and not as_json:
        err.print(f"wrote {escape(str(plot))}", highlight=False)


@app.command(rich_help_panel="Experiments")
def report(
    runs: Annotated[list[str], typer.Argument(help="runs (folders, ids or short ids)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
    output_dir: OutputDir = Path("runs"),
    part: Annotated[str, typer.Option(help="the part compared when the runs share a split")] = "test",
    title: Annotated[str | None, typer.Option(help="the report's title")] = None,
) -> None:
    """Write one self-contained HTML report of runs, to open in any browser.

    Tables, metric and training-curve figures embedded, and the paired comparison when the runs share a split.
    """
    from recforge.analysis.report import write_report

    paths = [resolve_run(r, output_dir) for r in runs]
    comparison, notes = None, []
    if len(paths) > 1:
        try:
            comparison = compare_runs(paths, part=part).to_json()
        except (ValueError, FileNotFoundError) as exc:  # other splits, no per-user values: report without it
            notes.append(f"no comparison: {' '.join(str(exc).split())}")
    path = write_report(paths, output, comparison=comparison, title=title, notes=notes)
    for n in notes:
        err.print(f"[dim]{escape(n)}[/dim]", highlight=False)
    out.print(f"wrote {escape(str(path))}", highlight=False)
