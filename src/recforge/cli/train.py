"""`recforge run` and `recforge evaluate`: train, evaluate and re-evaluate runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from recforge import distributed
from recforge.cli.common import (
    DataDir,
    LoadDevice,
    app,
    err,
    make_table,
    out,
    progress_bar,
)
from recforge.data.datasets import DATASETS
from recforge.experiments.config import ConfigError, config_keys, load_config, parse_override
from recforge.experiments.pipeline import (
    check_config,
    evaluate_run,
    looks_like_a_file,
    run_experiment,
)
from recforge.training.options import resolve_device


def _run_epilog() -> str:
    lines = ["Config keys (in a TOML file's [section] or as --set section.key=value), with defaults:", ""]
    for key, default, description in config_keys():
        shown = f" = {default}" if default else ""
        lines.append(f"  {key}{shown}  {description}".rstrip())
    lines += [
        '  split.protocol = "random"  plus the protocol\'s parameters: see recforge splits list',
        "  model.name  plus the model's hyper-parameters: see recforge models info NAME",
        "",
        "A CSV file: recforge run --dataset events.csv --model neumf (columns user,item[,rating]; or "
        "--set data.path=events.csv --set data.user_col=... --set data.item_col=...).",
    ]
    return escape("\n".join(lines))


_FLAG_KEYS = {
    "data.dataset": "--dataset",
    "data.path": "--dataset",
    "model.name": "--model",
    "split.protocol": "--split",
    "data.data_dir": "--data-dir",
    "run.output_dir": "--output-dir",
    "run.seed": "--seed",
    "training.device": "--device",
    "split.train_path": "--train-file",
    "split.valid_path": "--valid-file",
    "split.test_path": "--test-file",
}


PARTS = ("train", "valid", "test")


def _check_flags_against_sets(flags: dict[str, Any], sets: list[str]) -> None:
    """A flag and a ``--set`` of the same key that disagree are an error naming both (neither silently wins)."""
    for text in sets:
        path, value = parse_override(text)
        key = ".".join(path)
        if key not in flags:
            continue
        paths = key in ("data.path", "data.data_dir", "run.output_dir", *(f"split.{p}_path" for p in PARTS))
        if Path(str(value)) != Path(str(flags[key])) if paths else str(value) != str(flags[key]):
            flag = _FLAG_KEYS[key]
            raise ConfigError(
                f"{key}: {flag} {flags[key]} and --set {text} disagree; give only one of them",
            )


@app.command(epilog=_run_epilog(), rich_help_panel="Train and evaluate")
def run(
    config: Annotated[Path | None, typer.Argument(help="experiment TOML file")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="registered dataset name (data.dataset), or a CSV/TSV/Parquet file (data.path)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="registered model name (model.name)")] = None,
    split: Annotated[str | None, typer.Option(help="split protocol (split.protocol; recforge splits list)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override: section.key=value (repeatable)")] = None,
    data_dir: DataDir = None,
    output_dir: Annotated[Path | None, typer.Option(help="where run directories go (run.output_dir)")] = None,
    seed: Annotated[int | None, typer.Option(help="run seed (run.seed)")] = None,
    device: Annotated[str | None, typer.Option(help="training device: auto, cpu, cuda, mps (training.device)")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="train data-parallel on N local processes (torchrun)")] = 1,
    train_file: Annotated[
        Path | None, typer.Option("--train-file", help="predefined split: the training file (split.train_path)")
    ] = None,
    valid_file: Annotated[
        Path | None, typer.Option("--valid-file", help="predefined split: the validation file (split.valid_path)")
    ] = None,
    test_file: Annotated[
        Path | None, typer.Option("--test-file", help="predefined split: the test file (split.test_path)")
    ] = None,
) -> None:
    """Train and evaluate one model; writes a run directory and prints the metrics.

    Under torchrun (``torchrun --nproc-per-node N -m recforge run ...``) every process trains its share of each
    batch group and evaluates its share of the users; rank 0 writes the one run directory.
    """
    if nproc < 1:
        raise typer.BadParameter(f"{nproc} is not >= 1", param_hint="'--nproc'")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_relaunch_with_torchrun(nproc))
    data_key = "data.dataset"
    if dataset is not None and dataset.strip().lower() not in DATASETS and looks_like_a_file(dataset):
        data_key = "data.path"  # --dataset events.csv: a file, not a registered name
    files = {"train": train_file, "valid": valid_file, "test": test_file}
    if any(files.values()) and split is None:
        split = "predefined"  # --train-file/--test-file: a predefined split
    flags = {
        key: value
        for key, value in (
            (data_key, dataset),
            ("model.name", model),
            ("split.protocol", split),
            *((f"split.{part}_path", files[part]) for part in PARTS),
            ("data.data_dir", data_dir),
            ("run.output_dir", output_dir),
            ("run.seed", seed),
            ("training.device", device),
        )
        if value is not None
    }
    _check_flags_against_sets(flags, set_ or [])
    overrides = [f"{k}={json.dumps(str(v)) if not isinstance(v, int) else v}" for k, v in flags.items()]
    cfg = load_config(config, [*overrides, *(set_ or [])])
    check_config(cfg)
    world = distributed.init_from_environment(os.environ, resolve_device(cfg.training.device))
    try:
        with progress_bar() as bar:
            tasks: dict[str, Any] = {}

            def progress(task: str, done: int, total: int) -> None:
                if task not in tasks:
                    tasks[task] = bar.add_task(task, total=total)
                bar.update(tasks[task], completed=done)

            result = run_experiment(cfg, progress=progress, log=lambda m: err.print(f"[dim]{escape(m)}[/dim]"))
    finally:
        distributed.shutdown()
    if not world.is_main:
        return
    out.print(make_table("split", ["part", "size"], [[k, v] for k, v in result.split.items()]))
    parts = [p for p in ("valid", "test") if p in result.metrics]
    names = list(result.metrics[parts[-1]]["metrics"])
    rows = [[p, result.metrics[p]["n_users"], *(result.metrics[p]["metrics"][n] for n in names)] for p in parts]
    data = cfg.data.dataset or cfg.data.path or cfg.split.params.get("train_path")
    out.print(make_table(f"{cfg.model.name} on {data}", ["part", "users", *names], rows))
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


@app.command(rich_help_panel="Train and evaluate")
def evaluate(
    run_dir: Path,
    device: LoadDevice = "auto",
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="where the run's registered dataset is now (default: the run's data.data_dir)"),
    ] = None,
) -> None:
    """Re-evaluate a run's saved model on its (re-built) test part."""
    with progress_bar() as bar:
        task = bar.add_task("evaluating test")
        res = evaluate_run(
            run_dir,
            progress=lambda _t, d, n: bar.update(task, completed=d, total=n),
            device=device,
            data_dir=data_dir,
        )
    names = list(res["metrics"])
    out.print(make_table(escape(str(run_dir)), ["users", *names], [[res["n_users"], *res["metrics"].values()]]))
