"""`recforge` command line: parses arguments, builds objects through the library, prints results.

Every failure the user can fix (a missing file, an unknown dataset, model, parameter or id, an
out-of-range value) ends in one line on stderr naming the culprit and exit status 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recforge import distributed
from recforge.analysis.plots import plot_training_curves
from recforge.data.datasets import DATASETS, dataset_info, load_dataset
from recforge.data.download import DownloadError
from recforge.data.ids import UnknownIdError
from recforge.data.readers import DataFormatError
from recforge.experiments.config import ConfigError, load_config
from recforge.experiments.pipeline import check_config, evaluate_run, reload_run, run_experiment
from recforge.experiments.runs import RunRegistry
from recforge.models.base import InvalidParameterError
from recforge.models.registry import MODELS, model_class
from recforge.training.options import resolve_device

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
datasets_app = typer.Typer(no_args_is_help=True, help="List, describe and fetch the registered datasets.")
models_app = typer.Typer(no_args_is_help=True, help="List the registered models and their hyper-parameters.")
runs_app = typer.Typer(no_args_is_help=True, help="The run registry.")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")

out = Console(width=None if sys.stdout.isatty() else 160)  # piped output: wide tables, no truncated headers
err = Console(stderr=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="dataset cache (default: $RECFORGE_DATA, else ~/.cache/recforge)")
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    )


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else escape(str(v)) for v in r))
    return table


# ---------------------------------------------------------------------------------------------- datasets
@datasets_app.command("list")
def datasets_list(data_dir: DataDir = None) -> None:
    """Registered datasets, and whether each is already in the data directory."""
    rows = []
    for name in DATASETS:
        info = dataset_info(name, data_dir=data_dir)
        rows.append([name, "yes" if info["present"] else "no", info["description"]])
    out.print(_table("datasets", ["name", "present", "description"], rows))


@datasets_app.command("info")
def datasets_info(name: str, data_dir: DataDir = None) -> None:
    """Official address, folder, checksum and presence of one dataset."""
    out.print_json(json.dumps(dataset_info(name, data_dir=data_dir), default=str))


@datasets_app.command("fetch")
def datasets_fetch(name: str, data_dir: DataDir = None) -> None:
    """Download (if absent), verify and read a dataset; prints its size."""
    raw = load_dataset(name, data_dir=data_dir, download=True)
    frame = raw.interactions
    out.print(f"{name}: {len(frame):,} events, {frame['user'].nunique():,} users, {frame['item'].nunique():,} items")


# ---------------------------------------------------------------------------------------------- models
@models_app.command("list")
def models_list() -> None:
    """Registered model names and their classes."""
    rows = [[name, cls.__name__, (cls.__doc__ or "").strip().splitlines()[0]] for name, cls in MODELS.items()]
    out.print(_table("models", ["name", "class", "summary"], rows))


@models_app.command("info")
def models_info(name: str) -> None:
    """A model's hyper-parameters: type, constraints and default."""
    cls = model_class(name)
    rows = []
    for pname, p in cls.param_specs().items():
        rows.append([pname, _describe_annotation(p.annotation), repr(p.default)])
    out.print((cls.__doc__ or "").strip(), markup=False)  # docstrings hold [brackets] that are not rich markup
    out.print(_table(f"{name} hyper-parameters", ["name", "type", "default"], rows))


def _describe_annotation(annotation: Any) -> str:
    metadata = getattr(annotation, "__metadata__", ())
    base = getattr(annotation, "__origin__", annotation)
    text = getattr(base, "__name__", str(base))
    limits = [
        f"{op} {getattr(m, attr)}"
        for m in metadata
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if getattr(m, attr, None) is not None
    ]
    for m in metadata:
        for sub in getattr(m, "metadata", ()):
            limits += [
                f"{op} {getattr(sub, a)}"
                for a, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                if getattr(sub, a, None) is not None
            ]
    return text + (f" ({', '.join(limits)})" if limits else "")


# ---------------------------------------------------------------------------------------------- run
@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="experiment TOML file")] = None,
    dataset: Annotated[str | None, typer.Option(help="registered dataset name (data.dataset)")] = None,
    model: Annotated[str | None, typer.Option(help="registered model name (model.name)")] = None,
    split: Annotated[str | None, typer.Option(help="split protocol (split.protocol)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")] = None,
    data_dir: DataDir = None,
    output_dir: Annotated[Path | None, typer.Option(help="where run directories go (run.output_dir)")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed (run.seed)")] = None,
    device: Annotated[str | None, typer.Option(help="training device: auto, cpu, cuda, mps (training.device)")] = None,
    nproc: Annotated[
        int, typer.Option("--nproc", min=1, help="train data-parallel on N local processes (torchrun shortcut)")
    ] = 1,
) -> None:
    """Train and evaluate one model; writes a run directory and prints the metrics.

    Under torchrun (``torchrun --nproc-per-node N -m recforge run ...``) every process trains its share of each
    batch group and evaluates its share of the users; rank 0 writes the one run directory.
    """
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_relaunch_with_torchrun(nproc))
    overrides = []
    for key, value in (
        ("data.dataset", dataset),
        ("model.name", model),
        ("split.protocol", split),
        ("data.data_dir", data_dir),
        ("run.output_dir", output_dir),
        ("run.seed", seed),
        ("training.device", device),
    ):
        if value is not None:
            overrides.append(f"{key}={json.dumps(str(value)) if not isinstance(value, int) else value}")
    cfg = load_config(config, [*overrides, *(set_ or [])])
    check_config(cfg)
    world = distributed.init_from_environment(os.environ, resolve_device(cfg.training.device))
    try:
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def progress(task: str, done: int, total: int) -> None:
                if task not in tasks:
                    tasks[task] = bar.add_task(task, total=total)
                bar.update(tasks[task], completed=done)

            result = run_experiment(
                cfg, progress=progress, log=lambda m: err.print(f"[dim]{escape(m)}[/dim]", soft_wrap=True)
            )
    finally:
        distributed.shutdown()
    if not world.is_main:
        return
    out.print(_table("split", ["part", "size"], [[k, v] for k, v in result.split.items()]))
    parts = [p for p in ("valid", "test") if p in result.metrics]
    names = list(result.metrics[parts[-1]]["metrics"])
    rows = [[p, result.metrics[p]["n_users"], *(result.metrics[p]["metrics"][n] for n in names)] for p in parts]
    out.print(_table(f"{cfg.model.name} on {cfg.data.dataset or cfg.data.path}", ["part", "users", *names], rows))
    out.print(f"run directory: {escape(str(result.run_dir))}")


def _relaunch_with_torchrun(nproc: int) -> int:
    """Run this same command under ``torchrun --standalone --nproc-per-node N``; its exit status."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            args.append(arg)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    return subprocess.call([*launcher, "-m", "recforge", *args])


LoadDevice = Annotated[str, typer.Option("--device", help="where the saved model runs: auto, cpu, cuda, mps")]


@app.command()
def evaluate(run_dir: Path, device: LoadDevice = "auto") -> None:
    """Re-evaluate a run's saved model on its (re-built) test part."""
    with _progress() as bar:
        task = bar.add_task("evaluating test")
        res = evaluate_run(run_dir, progress=lambda _t, d, n: bar.update(task, completed=d, total=n), device=device)
    names = list(res["metrics"])
    out.print(_table(escape(str(run_dir)), ["users", *names], [[res["n_users"], *res["metrics"].values()]]))


@app.command()
def recommend(
    run_dir: Path,
    user: Annotated[list[str] | None, typer.Option("--user", help="raw user id (repeatable)")] = None,
    items: Annotated[str | None, typer.Option("--items", help="comma-separated raw item ids of a new user")] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="every training user")] = False,
    k: Annotated[int, typer.Option("-k", min=1, help="list length")] = 10,
    output: Annotated[Path | None, typer.Option("--output", help="write JSON lines here instead of stdout")] = None,
    device: LoadDevice = "auto",
) -> None:
    """Top-k recommendations from a run's model, one JSON object per user (raw ids)."""
    if sum([bool(user), items is not None, all_users]) != 1:
        raise typer.BadParameter("give exactly one of --user, --items or --all-users")
    _, model = reload_run(run_dir, device=device)
    if items is not None:
        ids = model.items_.coerce([s.strip() for s in items.split(",") if s.strip()])
        rows = [{"user_id": None, "history": ids, **_lists(model.recommend_for_history(ids, k))}]
    else:
        user_ids = list(model.users_.ids) if all_users else model.users_.coerce(user or [])
        rows = [
            {"user_id": _plain(u), **_lists(rec)} for u, rec in zip(user_ids, model.recommend(user_ids, k), strict=True)
        ]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    if output is None:
        sys.stdout.write(lines)
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        tmp.write_text(lines)
        tmp.replace(output)
        err.print(f"wrote {len(rows)} users to {escape(str(output))}")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _lists(rec: list[tuple[Any, float]]) -> dict[str, list[Any]]:
    return {"items": [_plain(i) for i, _ in rec], "scores": [round(s, 6) for _, s in rec]}


@app.command()
def plot(run_dir: Path) -> None:
    """Write training_curves.png (loss, validation metric, patience) into a run directory."""
    log = run_dir / "training_log.csv"
    if not log.is_file():
        raise FileNotFoundError(f"{run_dir} has no training_log.csv (only trained neural models log epochs)")
    path = plot_training_curves(pd.read_csv(log), run_dir / "training_curves.png")
    out.print(f"wrote {escape(str(path))}")


# ---------------------------------------------------------------------------------------------- runs
@runs_app.command("list")
def runs_list(output_dir: Annotated[Path, typer.Option(help="run output directory")] = Path("runs")) -> None:
    """Finished runs with their test metrics."""
    rows = [
        [r["id"], r["dataset"], r["split"], r["model"], json.dumps(r["metrics"])]
        for r in RunRegistry(output_dir).list()
    ]
    out.print(_table("runs", ["id", "dataset", "split", "model", "test metrics"], rows))


USER_ERRORS = (
    ConfigError,
    DataFormatError,
    DownloadError,
    UnknownIdError,
    InvalidParameterError,
    FileNotFoundError,
    FileExistsError,
    KeyError,
    ValueError,
)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
