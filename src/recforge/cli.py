"""`recforge` command line: parses arguments, builds objects through the library, prints results.

Every failure the user can fix (a missing or malformed file, an unknown dataset, model, parameter or id, an
out-of-range value, an unwritable folder) ends in one line on stderr naming the culprit and exit status 2.
An error that is a bug in recforge itself ends in a short line saying so and exit status 1; ``--debug``
shows the traceback of either. Ctrl-C ends with exit status 130.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import traceback
import types
import typing
import zipfile
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import recforge
from recforge import distributed
from recforge.analysis.plots import plot_training_curves
from recforge.data.datasets import DATASETS, dataset_info, get_spec, load_dataset
from recforge.data.download import DownloadError
from recforge.data.ids import IdMap, UnknownIdError
from recforge.experiments.config import ConfigError, config_keys, load_config, parse_override
from recforge.experiments.pipeline import (
    check_config,
    evaluate_run,
    looks_like_a_file,
    reload_run,
    run_experiment,
    split_protocols,
)
from recforge.experiments.runs import RunRegistry
from recforge.models.base import BaseRecommender, NotFittedError
from recforge.models.registry import MODELS, model_class
from recforge.training.options import resolve_device

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
datasets_app = typer.Typer(no_args_is_help=True, help="List, describe and fetch the registered datasets.")
models_app = typer.Typer(no_args_is_help=True, help="List the registered models and their hyper-parameters.")
splits_app = typer.Typer(no_args_is_help=True, help="The split protocols and their parameters.")
runs_app = typer.Typer(no_args_is_help=True, help="The run registry.")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(splits_app, name="splits")
app.add_typer(runs_app, name="runs")

out = Console(width=None if sys.stdout.isatty() else 160)  # piped output: wide tables, no truncated headers
err = Console(stderr=True, soft_wrap=True)  # log and error lines are never hard-wrapped (piped or not)

_state = {"debug": False}

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
    _state["debug"] = debug


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
    """Official address, folder, checksums and presence of one dataset."""
    info = dict(dataset_info(name, data_dir=data_dir))
    spec = get_spec(name)
    for key in ("sha256", "check_file", "check_sha256"):  # what a download and the key file are verified against
        info.setdefault(key, getattr(spec, key, None))
    out.print_json(json.dumps(info, default=str))


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
    """A model's description and hyper-parameters: type, allowed values and default ("required" when none)."""
    cls = model_class(name)
    rows = []
    for pname, p in cls.param_specs().items():
        default = "required" if p.default is p.empty else repr(p.default)
        rows.append([pname, describe_annotation(p.annotation), default])
    out.print(readable_docstring(cls.__doc__ or ""), markup=False, highlight=False)  # [brackets] are not markup
    if not rows:
        out.print(f"\n{cls.name} has no hyper-parameters.")
        return
    out.print(_table(f"{cls.name} hyper-parameters", ["name", "type", "default"], rows))
    out.print(f"set them with --set model.NAME=VALUE (e.g. --set model.{rows[0][0]}=...)", highlight=False)


_LIMITS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "length >="))


def _limits(metadata: Any) -> list[str]:
    found = []
    for m in metadata:
        for item in (m, *getattr(m, "metadata", ())):
            found += [f"{op} {getattr(item, a)}" for a, op in _LIMITS if getattr(item, a, None) is not None]
    return found


def describe_annotation(annotation: Any) -> str:
    """A hyper-parameter's type as a user writes it: ``float (> 0)``, ``one of 'adam', 'sgd'``, ``int | None``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        base, *metadata = args
        limits = _limits(metadata)
        return describe_annotation(base) + (f" ({', '.join(limits)})" if limits else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else describe_annotation(a) for a in args)
    if origin in (tuple, list, dict, set, frozenset):
        inner = ", ".join("..." if a is Ellipsis else describe_annotation(a) for a in args)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    return getattr(annotation, "__name__", str(annotation))


# -- docstrings without reStructuredText and LaTeX noise
_GREEK_AND_SYMBOLS = {
    **dict.fromkeys(("left", "right", "bigl", "bigr", "Bigl", "Bigr", "big", "Big", "displaystyle"), ""),
    **{",": " ", ";": " ", ":": " ", " ": " ", "!": "", "quad": "  ", "qquad": "    "},
    **{"alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "eta": "η"},
    **{"theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "pi": "π", "rho": "ρ", "sigma": "σ"},
    **{"tau": "τ", "phi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Sigma": "Σ", "Lambda": "Λ", "Phi": "Φ"},
    **{"Gamma": "Γ", "Delta": "Δ", "Omega": "Ω", "sum": "Σ", "prod": "Π", "odot": "⊙", "otimes": "⊗"},
    **{"oplus": "⊕", "cdot": "·", "times": "×", "pm": "±", "ne": "≠", "neq": "≠", "le": "≤", "leq": "≤"},
    **{"ge": "≥", "geq": "≥", "approx": "≈", "sim": "~", "in": "∈", "notin": "∉", "mid": "|", "Vert": "‖"},
    **{"lVert": "‖", "rVert": "‖", "vert": "|", "lvert": "|", "rvert": "|", "dots": "…", "ldots": "…"},
    **{"cdots": "⋯", "infty": "∞", "to": "→", "rightarrow": "→", "leftarrow": "←", "top": "ᵀ", "partial": "∂"},
    **{"nabla": "∇", "forall": "∀", "exists": "∃", "cup": "∪", "cap": "∩", "setminus": "∖", "subset": "⊂"},
    **{"langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "circ": "∘"},
    **{"propto": "∝", "ell": "ℓ", "{": "{", "}": "}", "_": "_", "%": "%", "&": "&", "#": "#", "$": "$"},
}
_WRAPPERS = {
    "text",
    "textrm",
    "mathrm",
    "operatorname",
    "mathbf",
    "mathit",
    "mathcal",
    "mathbb",
    "mathsf",
    "boldsymbol",
}
_ACCENTS = {"hat": "\u0302", "tilde": "\u0303", "bar": "\u0304", "dot": "\u0307", "vec": "\u20d7"}
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def _latex_arg(s: str, i: int) -> tuple[str, int]:
    """The argument starting at ``s[i]`` (after spaces): a ``{group}``, a command or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i < len(s) and s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{" and s[j - 1] != "\\":
                depth += 1
            elif s[j] == "}" and s[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return s[i + 1 : j], j + 1
        return s[i + 1 :], len(s)
    m = _COMMAND.match(s, i)
    if m:
        return m.group(0), m.end()
    return s[i : i + 1], i + 1


def _grouped(text: str) -> str:
    text = text.strip()
    return text if re.fullmatch(r"[\w.ᵀ\u0302\u0303]+", text) else f"({text})"


_WORDS = {"log", "exp", "min", "max", "sum", "prod", "sin", "cos", "tanh", "det", "tr", "arg"}
_OPENING = {"lVert", "lvert", "langle", "lfloor", "lceil", "left", "bigl", "Bigl", "big", "Big"}
_CLOSING = {"rVert", "rvert", "rangle", "rfloor", "rceil", "right", "bigr", "Bigr"}


def latex_to_text(s: str) -> str:
    """LaTeX math as plain text: ``\\frac{a}{b}`` -> ``a/b``, Greek letters and operators as symbols."""
    parts: list[str] = []

    def word(text: str, i: int) -> None:  # a word-like operator (log, softmax, Σ): spaced from its neighbours
        if parts and (parts[-1][-1:].isalnum() or parts[-1][-1:] in ")_}'"):
            parts.append(" ")
        parts.append(text)
        if i < len(s) and (s[i].isalnum() or s[i] == "\\"):
            parts.append(" ")

    i = 0
    while i < len(s):
        if s[i] != "\\":
            if s[i] not in "{}":
                parts.append(s[i])
            i += 1
            continue
        m = _COMMAND.match(s, i)
        assert m is not None
        name, i = m.group(1), m.end()
        if name == "frac":
            a, i = _latex_arg(s, i)
            b, i = _latex_arg(s, i)
            word(f"{_grouped(latex_to_text(a))}/{_grouped(latex_to_text(b))}", i)
        elif name == "sqrt":
            a, i = _latex_arg(s, i)
            parts.append("√" + _grouped(latex_to_text(a)))
        elif name in _WRAPPERS:
            a, i = _latex_arg(s, i)
            text = latex_to_text(a)
            word(text, i) if len(text) > 1 else parts.append(text)
        elif name in _ACCENTS:
            a, i = _latex_arg(s, i)
            text = latex_to_text(a)
            parts.append(text + _ACCENTS[name] if len(text) == 1 else text)
        elif name == "top" and parts and parts[-1] == "^":
            parts[-1] = "ᵀ"
        elif name in _WORDS:
            word(_GREEK_AND_SYMBOLS.get(name, name), i)
        else:
            if name in _CLOSING:
                while parts and parts[-1].isspace():
                    parts.pop()
            parts.append(_GREEK_AND_SYMBOLS.get(name, name))
            if name in _OPENING or name in _CLOSING:
                while i < len(s) and s[i] == " " and name in _OPENING:
                    i += 1
    return re.sub(r" {2,}(?=\S)", lambda m: m.group(0) if len(m.group(0)) >= 4 else " ", "".join(parts)).rstrip()


_ROLE = re.compile(r":(?:math|class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]*)`")


def _inline(text: str) -> str:
    def role(m: re.Match[str]) -> str:
        if m.group(0).startswith(":math:"):
            return latex_to_text(" ".join(m.group(2).split()))
        target = m.group(2)
        return target.rsplit(".", 1)[-1] if m.group(1) else target

    text = _ROLE.sub(role, text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"\1", text)


def readable_docstring(doc: str) -> str:
    """A docstring for the terminal: ``.. math::`` blocks and ``:math:`` roles as plain-text formulas, roles and
    ````code```` markers removed."""
    lines = inspect.cleandoc(doc).splitlines()
    result: list[str] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        m = re.match(r"(\s*)\.\. math::\s*(.*)$", lines[i])
        if not m:
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            result += _inline("\n".join(prose)).split("\n")
            prose = []
        indent = len(m.group(1))
        body = [m.group(2)] if m.group(2).strip() else []
        i += 1
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        result += [" " * (indent + 4) + latex_to_text(b.strip()) if b.strip() else "" for b in body]
        result.append("")
    if prose:
        result += _inline("\n".join(prose)).split("\n")
    return "\n".join(result).rstrip()


# ---------------------------------------------------------------------------------------------- splits
@splits_app.command("list")
def splits_list() -> None:
    """Every split protocol and preset with its parameters and their defaults (set them with --set split.NAME=V)."""
    rows = []
    for p in split_protocols():
        params = ", ".join(
            f"{k} (required)" if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in p["params"].items()
        )
        summary = _inline(p["summary"])
        if p["name"] == "random":
            summary += " Models that stop early get valid=0.1 unless split.valid is set."
        rows.append([p["name"], params or "-", summary])
    out.print(_table("split protocols (--split NAME, --set split.PARAM=VALUE)", ["name", "parameters", "what"], rows))


# ---------------------------------------------------------------------------------------------- run
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
}


def _check_flags_against_sets(flags: dict[str, Any], sets: list[str]) -> None:
    """A flag and a ``--set`` of the same key that disagree are an error naming both (neither silently wins)."""
    for text in sets:
        path, value = parse_override(text)
        key = ".".join(path)
        if key not in flags:
            continue
        paths = key in ("data.path", "data.data_dir", "run.output_dir")
        if Path(str(value)) != Path(str(flags[key])) if paths else str(value) != str(flags[key]):
            flag = _FLAG_KEYS[key]
            raise ConfigError(
                f"{key}: {flag} {flags[key]} and --set {text} disagree; give only one of them",
            )


@app.command(epilog=_run_epilog())
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
    flags = {
        key: value
        for key, value in (
            (data_key, dataset),
            ("model.name", model),
            ("split.protocol", split),
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
        with _progress() as bar:
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
def evaluate(
    run_dir: Path,
    device: LoadDevice = "auto",
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="where the run's registered dataset is now (default: the run's data.data_dir)"),
    ] = None,
) -> None:
    """Re-evaluate a run's saved model on its (re-built) test part."""
    with _progress() as bar:
        task = bar.add_task("evaluating test")
        res = evaluate_run(
            run_dir,
            progress=lambda _t, d, n: bar.update(task, completed=d, total=n),
            device=device,
            data_dir=data_dir,
        )
    names = list(res["metrics"])
    out.print(_table(escape(str(run_dir)), ["users", *names], [[res["n_users"], *res["metrics"].values()]]))


def _parse_history(text: str) -> tuple[list[str], list[float] | None]:
    """``"50,172"`` -> ids; ``"50:5,172:4"`` -> ids and ratings (all items rated, or none)."""
    entries = [s.strip() for s in text.split(",") if s.strip()]
    if not entries:
        raise ValueError("--items: no item ids given (e.g. --items 50,172,181, or with ratings --items 50:5,172:4)")
    ids, values = [], []
    for entry in entries:
        head, sep, tail = entry.rpartition(":")
        value = None
        if sep and head:
            try:
                value = float(tail)
            except ValueError:
                value = None
        if value is None:
            ids.append(entry)
        else:
            if not math.isfinite(value):
                raise ValueError(f"--items: the rating of {head} is {tail}, not a finite number")
            ids.append(head.strip())
            values.append(value)
    if values and len(values) != len(ids):
        raise ValueError("--items: give a rating for every item (50:5,172:4) or for none (50,172)")
    return ids, values or None


def _known(ids: IdMap, raw: list[str]) -> list[Any]:
    """The raw ids (typed like the map's), raising :class:`UnknownIdError` that lists only the unknown ones."""
    coerced = ids.coerce(raw)
    missing = [c for c in coerced if ids.index([c], missing="minus_one")[0] < 0]
    if missing:
        raise UnknownIdError(ids.kind, missing)
    return coerced


def _unknown_users_hint(run_dir: Path, exc: UnknownIdError) -> UnknownIdError | ValueError:
    """Say when unknown users were held out of training by the split (``heldout_users.json`` of the run)."""
    path = run_dir / "heldout_users.json"
    if not path.is_file():
        return exc
    try:
        heldout = json.loads(path.read_text())
    except (OSError, ValueError):
        return exc
    parts = {str(u): part for part, users in heldout.items() for u in users}
    held = [u for u in exc.missing if str(u) in parts]
    if not held:
        return exc
    which = ", ".join(f"{u} ({parts[str(u)]} part)" for u in held[:10])
    verb = "user {} was" if len(held) == 1 else "users {} were"
    return ValueError(
        f"{verb.format(which)} held out of training by the split; use --items with their history to recommend for them"
    )


def _titles(run_dir: Path) -> dict[str, str]:
    path = run_dir / "items.csv"
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return {}
    if not {"item", "title"} <= set(frame.columns):
        return {}
    return dict(zip(frame["item"], frame["title"], strict=True))


@app.command()
def recommend(
    run_dir: Path,
    user: Annotated[list[str] | None, typer.Option("--user", help="raw user id (repeatable)")] = None,
    items: Annotated[
        str | None,
        typer.Option("--items", help="a new user's history: raw item ids (50,172) or ids with ratings (50:5,172:4)"),
    ] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="every training user")] = False,
    k: Annotated[int, typer.Option("-k", help="list length (>= 1)")] = 10,
    output: Annotated[Path | None, typer.Option("--output", help="write JSON lines to this file, not stdout")] = None,
    device: LoadDevice = "auto",
) -> None:
    """Top-k recommendations from a run's model, one JSON object per user (raw ids, and titles when known)."""
    if sum([bool(user), items is not None, all_users]) != 1:
        raise typer.BadParameter("give exactly one of --user, --items or --all-users")
    if k < 1:
        raise typer.BadParameter(f"{k} is not >= 1", param_hint="'-k'")
    if output is not None and output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file path (e.g. {output / 'recs.jsonl'})")
    _, model = reload_run(run_dir, device=device)
    rows = _recommendations(run_dir, model, user, items, all_users, k)
    titles = _titles(run_dir)
    if titles:
        for r in rows:
            r["titles"] = [titles.get(str(i)) for i in r["items"]]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    if output is None:
        sys.stdout.write(lines)
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(lines)
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"--output {output}: cannot write it ({exc.strerror or exc})") from exc
    err.print(f"wrote {len(rows)} users to {escape(str(output))}")


def _recommendations(
    run_dir: Path, model: BaseRecommender, user: list[str] | None, items: str | None, all_users: bool, k: int
) -> list[dict[str, Any]]:
    if items is not None:
        raw, values = _parse_history(items)
        ids = _known(model.items_, raw)
        rec = model.recommend_for_history(ids, k, values=values)
        history: dict[str, Any] = {"history": [_plain(i) for i in ids]}
        if values is not None:
            history["ratings"] = values
        return [{"user_id": None, **history, **_lists(rec)}]
    if all_users:
        user_ids = list(model.users_.ids)
    else:
        try:
            user_ids = _known(model.users_, user or [])
        except UnknownIdError as exc:
            raise _unknown_users_hint(run_dir, exc) from None
    return [
        {"user_id": _plain(u), **_lists(rec)} for u, rec in zip(user_ids, model.recommend(user_ids, k), strict=True)
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _lists(rec: list[tuple[Any, float]]) -> dict[str, list[Any]]:
    return {"items": [_plain(i) for i, _ in rec], "scores": [round(s, 6) for _, s in rec]}


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
    if _state["debug"]:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, USER_ERRORS):
        err.print(f"[red]error:[/red] {escape(_message(exc))}", highlight=False)
        sys.exit(2)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
    hint = "" if _state["debug"] else "; rerun with --debug for the traceback"
    err.print(
        f"[red]internal error[/red] (a bug in recforge, please report it): "
        f"{type(exc).__name__}: {escape(_message(exc))}{at}{hint}",
        highlight=False,
    )
    sys.exit(1)


def main() -> None:
    """Console entry point: the one error boundary (see the module docstring)."""
    _state["debug"] = "--debug" in sys.argv[1 : sys.argv.index("--") if "--" in sys.argv else None]
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
