"""`recforge datasets|models|splits`: what is registered, and its parameters."""

from __future__ import annotations

import inspect
import json

from recforge.cli.common import (
    DataDir,
    app,
    datasets_app,
    make_table,
    models_app,
    out,
    splits_app,
)
from recforge.cli.text import describe_annotation, inline_text, readable_docstring
from recforge.data.datasets import DATASETS, dataset_info, get_spec, load_dataset
from recforge.experiments.pipeline import (
    split_protocols,
)
from recforge.models.registry import MODELS, model_class

app.add_typer(datasets_app, name="datasets", rich_help_panel="Catalogue and registry")
app.add_typer(models_app, name="models", rich_help_panel="Catalogue and registry")
app.add_typer(splits_app, name="splits", rich_help_panel="Catalogue and registry")


@datasets_app.command("list")
def datasets_list(data_dir: DataDir = None) -> None:
    """Registered datasets, and whether each is already in the data directory."""
    rows = []
    for name in DATASETS:
        info = dataset_info(name, data_dir=data_dir)
        rows.append([name, "yes" if info["present"] else "no", info["description"]])
    out.print(make_table("datasets", ["name", "present", "description"], rows))


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
    out.print(make_table("models", ["name", "class", "summary"], rows))


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
    out.print(make_table(f"{cls.name} hyper-parameters", ["name", "type", "default"], rows))
    out.print(f"set them with --set model.NAME=VALUE (e.g. --set model.{rows[0][0]}=...)", highlight=False)


@splits_app.command("list")
def splits_list() -> None:
    """Every split protocol and preset with its parameters and their defaults (set them with --set split.NAME=V)."""
    rows = []
    for p in split_protocols():
        params = ", ".join(
            f"{k} (required)" if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in p["params"].items()
        )
        summary = inline_text(p["summary"])
        if p["name"] == "random":
            summary += " Models that stop early get valid=0.1 unless split.valid is set."
        rows.append([p["name"], params or "-", summary])
    title = "split protocols (--split NAME, --set split.PARAM=VALUE)"
    out.print(make_table(title, ["name", "parameters", "what"], rows))
