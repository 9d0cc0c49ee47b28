"""Validated experiment configuration, read from TOML and/or ``section.key=value`` overrides.

An experiment is: a data source with filters, a split protocol, a model, how it is trained
(``[training]``: device, precision, checkpoints) and the metrics to report. Split and model
parameters are free-form here and are checked against the split function's and the model's own
signatures when the experiment is built, so that an unknown or out-of-range value is reported
by its dotted name (``model.l2``) before any work starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """The experiment configuration is invalid; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Where the events come from and how they are filtered before the split."""

    dataset: str | None = Field(None, description="registered dataset name, e.g. ml-100k")
    path: Path | None = Field(None, description="a CSV/TSV/Parquet file instead of a registered dataset")
    user_col: str = "user"
    item_col: str = "item"
    rating_col: str | None = None
    timestamp_col: str | None = None
    data_dir: Path | None = Field(None, description="dataset cache; default $RECFORGE_DATA or ~/.cache/recforge")
    download: bool = True
    min_rating: float | None = Field(None, description="keep events with rating >= this")
    binarize: bool = Field(False, description="turn ratings/weights into 1.0 (implicit feedback)")
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.path is None):
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
    metrics: list[str] = Field(default_factory=lambda: ["ndcg@100", "recall@20", "recall@50"])
    rating_metrics: list[Literal["rmse", "mae", "rounded_accuracy"]] = Field(
        default_factory=lambda: ["rmse", "mae", "rounded_accuracy"], description="for explicit targets"
    )
    sampled_ks: list[int] = Field(default_factory=lambda: [10], description="cut-offs of the sampled protocol")
    batch_size: int | None = Field(None, gt=0, description="users per scoring block; default from free memory")
    coverage: bool = False


class TrainingConfig(_Section):
    """How the model is trained: not hyper-parameters, never saved with the model (``--set training.device=cuda``)."""

    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    amp: bool = Field(False, description="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    checkpoints: bool = Field(True, description="checkpoint every epoch so that a rerun resumes an interrupted run")
    checkpoint_dir: Path | None = Field(None, description="default: <output_dir>/.checkpoints/<config hash>")
    resume: Literal["auto", "never", "strict"] = Field(
        "auto", description="auto: resume a matching checkpoint, else start afresh; strict: refuse a mismatch"
    )


class RunConfig(_Section):
    output_dir: Path = Path("runs")
    name: str | None = None
    seed: int = 0


class ExperimentConfig(_Section):
    """One experiment: data -> split -> model -> evaluation -> run directory."""

    data: DataConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    run: RunConfig = Field(default_factory=RunConfig)

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
            tree = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    for text in overrides:
        _set_path(tree, *parse_override(text))
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"{where}: {first['msg']}") from None
