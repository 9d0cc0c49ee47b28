"""Validated experiment configuration, read from TOML and/or ``section.key=value`` overrides.

An experiment is: a data source with filters, a split protocol, a model, how it is trained
(``[training]``: device, precision, checkpoints) and the metrics to report. Split and model
parameters are free-form here and are checked against the split function's and the model's own
signatures when the experiment is built, so that an unknown or out-of-range value is reported
by its dotted name (``model.l2``) before any work starts.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """The experiment configuration is invalid; the message names the field."""


AUTO = "auto"
"""``data.rating_col`` / ``data.timestamp_col = "auto"``: the file's ``rating`` / ``timestamp`` column when it has one
(resolved when the run starts and recorded in the run's ``config.json``)."""

#: A run name is a folder name inside ``run.output_dir``: letters, digits, ``-``, ``_`` and ``.``, no leading dot.
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def is_safe_run_name(name: str) -> bool:
    """A run name is one folder name inside the output folder: ASCII letters, digits, ``-_.``, no leading dot."""
    return RUN_NAME.fullmatch(name) is not None


def config_error(exc: ValidationError, where_prefix: str = "") -> ConfigError:
    """The first validation error as one line naming its dotted key (after ``where_prefix``, e.g. a file)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    return ConfigError(f"{where_prefix}{where}: {first['msg'].removeprefix('Value error, ')}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataConfig(_Section):
    """Where the events come from and how they are filtered before the split."""

    dataset: str | None = Field(None, description="registered dataset name, e.g. ml-100k (recforge datasets list)")
    path: Path | None = Field(
        None, description="a CSV/TSV/Parquet file, or Amazon reviews as JSON lines (.json[.gz]), instead of a dataset"
    )
    bad_lines: Literal["error", "skip"] = Field(
        "error",
        description="data.path JSON lines reviews: refuse a bad line (error: file, line, field) or skip bad lines "
        "with a count in the log (skip)",
    )
    user_col: str | int = Field("user", description="data.path: the user id column (a name, or a position 1, 2...)")
    item_col: str | int = Field("item", description="data.path: the item id column")
    ids: Literal["str", "int", "auto"] = Field(
        "str",
        description='data.path: ids as written ("str": 0012 and 12 are two ids), "int" (integers), '
        '"auto" (int when all are canonical integers)',
    )
    header: bool | None = Field(
        None,
        description="data.path: whether the first line names the columns (default: yes, unless data.columns is "
        "given); false without data.columns: columns named by position, 1, 2, ...",
    )
    columns: list[str] | None = Field(
        None, description='data.path: the column names of a file without a header line, e.g. ["user", "item", "rating"]'
    )
    sep: str | None = Field(None, description='data.path: the separator (default: by suffix, else sniffed; " " too)')
    rating_col: str | None = Field(
        AUTO, description='data.path: the rating column; "auto": the column "rating" if the file has one; "": none'
    )
    timestamp_col: str | None = Field(
        AUTO, description='data.path: the time column (unix seconds or dates); "auto": "timestamp" if present; "": none'
    )
    data_dir: Path | None = Field(None, description="dataset cache; default $RECFORGE_DATA or ~/.cache/recforge")
    download: bool = Field(True, description="download a registered dataset that is not in data_dir")
    min_rating: float | None = Field(None, description="keep events with rating >= this")
    binarize: bool = Field(False, description="turn ratings/weights into 1.0 (implicit feedback)")
    min_user_interactions: int = Field(0, ge=0, description="keep users with at least this many events (k-core)")
    min_item_interactions: int = Field(0, ge=0, description="keep items with at least this many events (k-core)")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.dataset is not None and self.path is not None:
            raise ValueError("give exactly one of data.dataset or data.path")
        return self


class SplitConfig(BaseModel):
    """The split protocol's name and its keyword parameters (checked against the protocol)."""

    model_config = ConfigDict(extra="allow")
    protocol: str = "random"

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ModelConfig(BaseModel):
    """The registered model name and its hyper-parameters (checked against the model)."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EvaluationConfig(_Section):
    metrics: list[str] = Field(
        default_factory=lambda: ["ndcg@100", "recall@20", "recall@50"], description="ranking metrics, name@k"
    )
    rating_metrics: list[Literal["rmse", "mae", "rounded_accuracy"]] = Field(
        default_factory=lambda: ["rmse", "mae", "rounded_accuracy"], description="for explicit targets"
    )
    sampled_ks: list[int] = Field(default_factory=lambda: [10], description="cut-offs of the sampled protocol")
    batch_size: int | None = Field(None, gt=0, description="users per scoring block; default from free memory")
    coverage: bool = Field(False, description="also report catalogue coverage of the top-k lists")
    test_input: Literal["train+valid", "train"] = Field(
        "train+valid",
        description="what the model scores test users from: their training and validation events (default), or "
        "their training events only",
    )
    test_exclude: Literal["input", "train+valid"] = Field(
        "input",
        description="what is removed from the test rankings: the input (default), or the training and validation "
        'events whatever the input ("train" input + "train+valid": the protocol of most other libraries)',
    )


class TrainingConfig(_Section):
    """How the model is trained: not hyper-parameters, never saved with the model (``--set training.device=cuda``)."""

    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    amp: bool = Field(False, description="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    checkpoints: bool = Field(True, description="checkpoint every epoch so that a rerun resumes an interrupted run")
    checkpoint_dir: Path | None = Field(None, description="default: <output_dir>/.checkpoints/<config hash>")
    resume: Literal["auto", "never", "strict"] = Field(
        "auto", description="auto: resume a matching checkpoint, else start afresh; strict: refuse a mismatch"
    )
    max_time: float | None = Field(
        None, gt=0, description="a time budget in seconds: no epoch starts after it is spent (the best epoch is kept)"
    )


class RunConfig(_Section):
    output_dir: Path = Field(Path("runs"), description="where run folders and registry.sqlite go")
    name: str | None = Field(
        None, description="the run folder's name (letters, digits, -_.); default: time-dataset-model-random"
    )
    seed: int = Field(0, description="seed of the split and the model unless they set their own")
    study: str | None = Field(None, description="the hyper-parameter search this run belongs to (set by recforge tune)")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not is_safe_run_name(value):
            raise ValueError(
                f"{value!r} is not a safe folder name: use letters, digits, '-', '_' and '.', not starting with "
                "a dot, no path separators (the run folder is always made inside run.output_dir)"
            )
        return value


class ExperimentConfig(_Section):
    """One experiment: data -> split -> model -> evaluation -> run directory."""

    data: DataConfig = Field(default_factory=DataConfig)  # none for a predefined split given as files
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    tune: dict[str, Any] | None = Field(
        None, description="search space and objective of `recforge tune` (recforge.experiments.tuning); run ignores it"
    )

    @model_validator(mode="after")
    def _a_source(self) -> ExperimentConfig:
        """data.dataset or data.path, except for a predefined split given as files (split.train_path and
        split.test_path), which are the data themselves."""
        if self.data.dataset is None and self.data.path is None and not self.split_files():
            raise ValueError(
                "give exactly one of data.dataset or data.path (or, for --split predefined, the files "
                "split.train_path and split.test_path, and optionally split.valid_path)"
            )
        return self

    def split_files(self) -> bool:
        """Whether the data are predefined split files (``split.train_path`` and ``split.test_path``)."""
        params = self.split.params
        return self.split.protocol == "predefined" and "train_path" in params and "test_path" in params

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"model.l2=300"`` -> (["model", "l2"], 300); the value is read as a TOML literal, else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip().split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set {'.'.join(path)}: {part} is not a section")
        tree = node
    tree[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a TOML file (optional), apply ``section.key=value`` overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            tree = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is a folder, not a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for text in overrides:
        _set_path(tree, *parse_override(text))
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise config_error(exc) from None


def config_keys() -> list[tuple[str, str, str]]:
    """``(dotted key, default, description)`` of every fixed key of the sections, for ``recforge run --help``."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("data", DataConfig),
        ("evaluation", EvaluationConfig),
        ("training", TrainingConfig),
        ("run", RunConfig),
    ]
    out: list[tuple[str, str, str]] = []
    for name, model in sections:
        for key, info in model.model_fields.items():
            default = info.get_default(call_default_factory=True)
            shown = "" if default is None else json_default(default)
            out.append((f"{name}.{key}", shown, info.description or ""))
    return out


def json_default(value: Any) -> str:
    """A default as it is written in TOML / ``--set`` (strings quoted, booleans lower case)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(json_default(v) for v in value) + "]"
    return str(value)
