"""One experiment end to end: data -> filters -> split -> model -> evaluation -> run directory.

Every step is a plain function of the validated :class:`ExperimentConfig`, so the CLI, the tuner
and notebooks build the same objects. Invalid split or model parameters are reported by their
dotted name before any data is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from recforge import distributed
from recforge.data import filters
from recforge.data.datasets import DATASETS, dataset_info, get_spec, load_dataset
from recforge.data.interactions import Interactions
from recforge.data.readers import RawDataset, read_amazon_reviews, read_movielens_100k_fold, read_table
from recforge.data.readers.msd import TRIPLET_FILES, read_msd_taste_profile
from recforge.data.readers.tables import table_columns
from recforge.data.splits import PRESETS, SPLITS, EvalPart, Split, liang2018, predefined_split, random_split
from recforge.evaluation.evaluate import EvaluationResult, evaluate_ranking, evaluate_ratings, evaluate_sampled
from recforge.evaluation.protocol import (
    FOLD_IN_PROTOCOL,
    VALID_PROTOCOL,
    ProtocolPart,
    TestProtocol,
    apply_protocol,
)
from recforge.experiments.config import AUTO, ConfigError, ExperimentConfig, config_error
from recforge.experiments.runs import new_run_id, run_directory
from recforge.metrics import parse_metric
from recforge.metrics.rating import MAE, RMSE, RoundedAccuracy
from recforge.models.base import BaseRecommender, InvalidParameterError
from recforge.models.registry import create_model, load_model, model_class
from recforge.training.callbacks import Callback
from recforge.training.options import TrainingOptions, resolve_device

PREDEFINED_PARAMS = ("fold", "train_path", "test_path", "valid_path", "valid_fraction", "seed")
"""Parameters of the ``predefined`` protocol: an official ML-100K fold or train/test(/valid) files."""

DEFAULT_VALID = 0.1
"""The validation fraction the ``random`` split gets when ``split.valid`` is not set and the model stops early."""

EVENT_COLUMNS = ("review_text",)
"""Per-event columns of the raw data carried through the split into every part (``Interactions.extra``)."""

_TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".dat", ".parquet", ".pq", ".json", ".jsonl", ".gz", ".bz2")

Progress = Callable[[str, int, int], None]
"""Called as ``progress(task, done, total)`` while evaluating."""


@dataclass(frozen=True)
class ExperimentResult:
    run_dir: Path
    split: dict[str, Any]
    metrics: dict[str, dict[str, Any]]


def check_config(cfg: ExperimentConfig) -> None:
    """Validate the data source, the split and model parameters, the metric names and the training device
    against what they configure, before any data is read."""
    if cfg.data.dataset is not None and cfg.data.dataset.strip().lower() not in DATASETS:
        name = cfg.data.dataset
        if looks_like_a_file(name):
            raise ConfigError(
                f"data.dataset: {name!r} is not a registered dataset but looks like a file: "
                f"use --set data.path='{name}' (or --dataset {name})"
            )
        try:
            get_spec(name)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"data.dataset: {exc}") from None
    split_fn, params = _split_call(cfg)
    accepted = list(PREDEFINED_PARAMS) if split_fn is predefined_split else _keyword_params(split_fn)
    for key in params:
        if key not in accepted:
            raise ConfigError(f"split.{key}: unknown parameter of split {cfg.split.protocol!r}; known: {accepted}")
    if split_fn is not predefined_split:
        for key in _required_params(split_fn):
            if key not in params:
                raise ConfigError(
                    f"split.{key}: split {cfg.split.protocol!r} needs it (e.g. --set split.{key}=...); "
                    f"see recforge splits list"
                )
    try:
        model_class(cfg.model.name).validate_params(cfg.model.params)
    except InvalidParameterError as exc:
        raise ConfigError(f"model.{exc.param}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"model.name: {exc}") from None
    for spec in cfg.evaluation.metrics:
        try:
            parse_metric(spec)
        except ValueError as exc:
            raise ConfigError(f"evaluation.metrics: {exc}") from None
    try:
        resolve_device(cfg.training.device)
    except ValueError as exc:
        raise ConfigError(f"training.device: {exc}") from None


def looks_like_a_file(name: str) -> bool:
    """Whether a ``--dataset`` value is a file path rather than a registered dataset name."""
    return "/" in name or "\\" in name or name.lower().endswith(_TABLE_SUFFIXES) or Path(name).is_file()


def _split_call(cfg: ExperimentConfig) -> tuple[Callable[..., Split], dict[str, Any]]:
    """The split function and its parameters; a preset name expands to its protocol and defaults. TOML has no
    null: the text ``none`` stands for Python's None (``--set split.min_rating=none``)."""
    protocol = cfg.split.protocol
    params = {k: None if isinstance(v, str) and v.lower() == "none" else v for k, v in cfg.split.params.items()}
    if protocol in PRESETS:
        protocol, defaults = PRESETS[protocol]
        params = {**defaults, **params}
    if protocol not in SPLITS:
        known = ", ".join([*SPLITS, *PRESETS])
        raise ConfigError(f"split.protocol: unknown protocol {protocol!r}; known: {known}")
    return SPLITS[protocol], params


def _keyword_params(fn: Callable[..., Any]) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]


def _required_params(fn: Callable[..., Any]) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY and p.default is p.empty]


def split_protocols() -> list[dict[str, Any]]:
    """Every split protocol and preset with its parameters: ``{"name", "summary", "params": {name: default}}``;
    a required parameter's default is ``inspect.Parameter.empty``. What ``recforge splits list`` shows."""
    out = []
    for name, fn in SPLITS.items():
        if fn is predefined_split:
            params: dict[str, Any] = dict.fromkeys(PREDEFINED_PARAMS, None)
            params["valid_fraction"] = 0.0
            summary = (
                "an official ML-100K fold (fold='u1') or train_path/test_path(/valid_path) files (they are the data: "
                "no data.path; or --train-file/--valid-file/--test-file)"
            )
        else:
            sig = inspect.signature(fn).parameters
            params = {n: sig[n].default for n in _keyword_params(fn)}
            summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        out.append({"name": name, "summary": summary, "params": params, "preset_of": None})
    for name, (protocol, defaults) in PRESETS.items():
        out.append({"name": name, "summary": f"{protocol} with {defaults}", "params": defaults, "preset_of": protocol})
    return out


def _early_stops(cfg: ExperimentConfig) -> bool:
    """Whether the configured model stops early on a validation part (so it needs one)."""
    patience = getattr(build_model(cfg), "early_stopping_patience", None)
    return callable(patience) and patience() is not None


def _table_columns(path: Path, cfg: ExperimentConfig | None = None) -> list[str] | None:
    """The columns of a CSV/TSV/Parquet file (its header, ``data.columns`` or positions when ``data.header`` is
    false), or None when it cannot be read here (the reader will say why)."""
    d = cfg.data if cfg is not None else None
    try:
        if d is None:
            return table_columns(path)
        return table_columns(path, d.sep, header=d.header is not False, columns=d.columns)
    except (OSError, ValueError, EOFError):
        return None


def _auto_column(cfg: ExperimentConfig, name: str) -> str | None:
    """``name`` when the table read (the predefined ``split.train_path``, else ``data.path``) has that column."""
    source = cfg.split.params.get("train_path") or cfg.data.path
    columns = _table_columns(Path(str(source)), cfg) if source is not None else None
    return name if columns is not None and name in columns else None


def resolve_config(cfg: ExperimentConfig) -> tuple[ExperimentConfig, list[str]]:
    """The config with its automatic choices made explicit (what ``config.json`` records), and a line for each.

    * ``data.rating_col = "auto"`` (``timestamp_col`` likewise): the file's ``rating`` (``timestamp``) column when
      it has one (a generic CSV's ratings are used without asking), else none (``""`` means none);
    * the ``random`` split without ``split.valid`` gets a validation part of :data:`DEFAULT_VALID` when the model
      stops early on one (set ``split.valid = 0`` for none).

    Resolving a resolved config changes nothing.
    """
    notes: list[str] = []
    data = cfg.data
    if data.path is not None and cfg.split_files():
        notes.append(
            f"data.path = {str(data.path)!r} is not read: the predefined split's files (split.train_path, "
            "split.test_path, split.valid_path) are the data; data.path may be left out"
        )
    for key, column in (("rating_col", "rating"), ("timestamp_col", "timestamp")):
        value = getattr(data, key)
        if data.dataset is not None or value == "":
            data = data.model_copy(update={key: None})  # a registered dataset's reader knows its columns
        elif value == AUTO:
            found = _auto_column(cfg, column)
            data = data.model_copy(update={key: found})
            if found:
                notes.append(f"data.{key} = {found!r}: the file's {column} column (set data.{key}='' to ignore it)")
    split = cfg.split
    if split.protocol == "random" and "valid" not in split.params and _early_stops(cfg):
        split = split.model_copy(update={"valid": DEFAULT_VALID})
        notes.append(
            f"split.valid = {DEFAULT_VALID}: a validation part for {cfg.model.name}'s early stopping "
            "(the random split's default for such models; set split.valid=0 to train without one)"
        )
    return cfg.model_copy(update={"data": data, "split": split}), notes


def _no_valid_hint(cfg: ExperimentConfig) -> str:
    fn, _ = _split_call(cfg)
    if fn is predefined_split:
        return "set split.valid_fraction=0.1 (or split.valid_path)"
    params = _keyword_params(fn)
    for key, value in (("valid", "0.1"), ("n_valid", "1")):
        if key in params:
            return f"set split.{key}={value}"
    return "use a split with a validation part (recforge splits list)"


def load_raw(cfg: ExperimentConfig) -> RawDataset:
    """Read the configured data source (a registered dataset or a table with a column mapping); for a predefined
    split given as files, the training file (the split reads the others; a ``data.path`` is not read)."""
    d = cfg.data
    if d.dataset is not None:
        return load_dataset(d.dataset, data_dir=d.data_dir, download=d.download)
    if cfg.split_files():  # predefined split files are the data: the training file (the split reads the rest)
        return read_table(cfg.split.params["train_path"], **_columns(cfg))
    assert d.path is not None
    if Path(str(d.path)).name in TRIPLET_FILES:  # the headerless MSD taste profile (and its tags beside it)
        return read_msd_taste_profile(d.path)
    if is_json_lines(d.path):  # Amazon-format reviews (reviewerID, asin, overall, reviewText...), plain or .gz
        return read_amazon_reviews(d.path, bad_lines=d.bad_lines)
    return read_table(d.path, **_columns(cfg))


def is_json_lines(path: str | Path) -> bool:
    """Whether ``data.path`` names a JSON lines file (``.json``, ``.jsonl``, optionally ``.gz``/``.bz2``)."""
    name = Path(str(path)).name.lower()
    for suffix in (".gz", ".bz2"):
        name = name.removesuffix(suffix)
    return name.endswith((".json", ".jsonl"))


def data_label(cfg: ExperimentConfig) -> str:
    """What a run's data is called in its generated name and tables: the dataset, else the file's stem."""
    if cfg.data.dataset is not None:
        return cfg.data.dataset
    source = cfg.split.params["train_path"] if cfg.split_files() else cfg.data.path
    return Path(str(source)).stem


def _columns(cfg: ExperimentConfig) -> dict[str, Any]:
    """The column mapping and reading options (``data.ids``, ``header``, ``columns``, ``sep``) of ``data.path``
    and of predefined split files, ``rating_col`` resolved."""
    d = cfg.data
    rating = _auto_column(cfg, "rating") if d.rating_col == AUTO else d.rating_col
    timestamp = _auto_column(cfg, "timestamp") if d.timestamp_col == AUTO else d.timestamp_col
    return {
        "user_col": d.user_col,
        "item_col": d.item_col,
        "rating_col": rating or None,
        "timestamp_col": timestamp or None,
        "ids": d.ids,
        "header": d.header,
        "columns": d.columns,
        "sep": d.sep,
    }


def data_source(cfg: ExperimentConfig) -> dict[str, Any]:
    """Where a run's data came from (absolute paths), recorded in its ``split.json``."""
    d = cfg.data
    out: dict[str, Any] = {}
    if d.dataset is not None:
        info = dataset_info(d.dataset, data_dir=d.data_dir)
        out.update(dataset=info["name"], folder=info["path"], files=info["files"])
    elif d.path is not None and not cfg.split_files():
        out["path"] = str(Path(str(d.path)).resolve())
    for key in ("train_path", "test_path", "valid_path"):
        if key in cfg.split.params:
            out[key] = str(Path(str(cfg.split.params[key])).resolve())
    return out


def prepare_events(cfg: ExperimentConfig, raw: RawDataset) -> pd.DataFrame:
    """Apply the configured filters to the raw event frame."""
    d, frame = cfg.data, raw.interactions
    if d.min_rating is not None:
        frame = filters.min_rating(frame, d.min_rating)
    if d.min_user_interactions or d.min_item_interactions:
        frame = filters.k_core(frame, min_user=d.min_user_interactions, min_item=d.min_item_interactions)
    if d.binarize:
        frame = filters.binarize(frame)
    return frame


def make_split(cfg: ExperimentConfig, raw: RawDataset, frame: pd.DataFrame) -> Split:
    """Index the events and run the configured split protocol (its own seed, else the run seed).

    ``liang2018`` receives the raw frame: its item order follows the file's row order, as in the
    reference notebook. It filters ratings itself, so ``data.min_rating`` should stay unset there.
    """
    fn, params = _split_call(cfg)
    if fn is liang2018:  # the filtered frame, with the dataset's side information (tags, genres)
        return fn(RawDataset(raw.name, frame, raw.item_info, raw.user_info), **params)
    if fn is predefined_split:
        files_only = cfg.data.dataset is None and cfg.split_files()  # load_raw read the training file
        return _predefined(cfg, params, raw, train_events=frame if files_only else None)
    if "seed" in _keyword_params(fn):
        params.setdefault("seed", cfg.run.seed)
    extra = tuple(c for c in EVENT_COLUMNS if c in frame.columns)  # review texts travel with their events
    if params.get("order") == "file":  # every_nth in file order (the tutorial's split): each event's line
        frame, extra = frame.assign(source_row=np.arange(len(frame), dtype=np.int64)), (*extra, "source_row")
    data = Interactions.from_frame(frame, item_info=raw.item_info, user_info=raw.user_info, extra_cols=extra)
    return fn(data, **params)


def _predefined(
    cfg: ExperimentConfig,
    params: dict[str, Any],
    raw: RawDataset | None = None,
    *,
    train_events: pd.DataFrame | None = None,
) -> Split:
    """An official ML-100K fold (``fold="u1"``) or ``train_path``/``test_path`` files read like ``data.path``.

    ``valid_fraction`` carves a seeded random validation part out of the training events (for early
    stopping) when no ``valid_path`` is given. The configured filters apply to every file. ``train_events``: the
    training file already read and filtered (:func:`load_raw` reads it: the files are the data).
    """
    d = cfg.data
    if "fold" in params:
        if d.dataset != "ml-100k":
            raise ConfigError("split.fold: official folds exist for data.dataset = 'ml-100k' only")
        load_dataset(d.dataset, data_dir=d.data_dir, download=d.download)
        train, test = read_movielens_100k_fold(dataset_info(d.dataset, data_dir=d.data_dir)["path"], params["fold"])
        valid = None
    elif "train_path" in params and "test_path" in params:
        columns = _columns(cfg)
        train = read_table(params["train_path"], **columns).interactions if train_events is None else None
        test = read_table(params["test_path"], **columns).interactions
        valid = read_table(params["valid_path"], **columns).interactions if "valid_path" in params else None
    else:
        raise ConfigError("split: 'predefined' needs split.fold (ML-100K) or split.train_path and split.test_path")
    frames = [
        prepare_events(cfg, RawDataset(d.dataset or "table", f)) if f is not None else None
        for f in (train, test, valid)
    ]
    train, test, valid = frames
    if train_events is not None:
        train = train_events
    fraction = float(params.get("valid_fraction", 0.0))
    if valid is None and fraction > 0:
        carved = random_split(Interactions.from_frame(train), test=fraction, seed=params.get("seed", cfg.run.seed))
        in_valid = carved.test.target.to_frame()[["user", "item"]]
        marked = train.merge(in_valid.assign(_valid=True), on=["user", "item"], how="left")
        is_valid = marked["_valid"].fillna(False).to_numpy(dtype=bool)
        train, valid = train[~is_valid], train[is_valid]
    info = {"item_info": raw.item_info, "user_info": raw.user_info} if raw is not None else {}
    split = predefined_split(train, test, valid_frame=valid, **info)
    split.params.update({k: v for k, v in params.items() if k != "seed"})
    return split


def build_model(cfg: ExperimentConfig) -> BaseRecommender:
    """The configured model (its seed defaults to the run seed)."""
    params = dict(cfg.model.params)
    if "seed" in model_class(cfg.model.name).param_specs():
        params.setdefault("seed", cfg.run.seed)
    return create_model(cfg.model.name, **params)


def checkpoint_dir(cfg: ExperimentConfig) -> Path:
    """Where an experiment's training checkpoints live until it finishes: ``training.checkpoint_dir``, else a
    folder named by a hash of the config (without the run name and the training set-up), so that running the same
    experiment again after an interruption resumes where it stopped. What is in it is resumed only when it was
    trained on the same data with the same hyper-parameters (its fingerprint)."""
    if cfg.training.checkpoint_dir is not None:
        return cfg.training.checkpoint_dir
    config = cfg.to_json()
    config["run"].pop("name", None)
    config.pop("training", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cfg.run.output_dir) / ".checkpoints" / digest


def training_options(
    cfg: ExperimentConfig, *, log: Callable[[str], None] | None = None, callbacks: Sequence[Callback] = ()
) -> TrainingOptions:
    """The :class:`TrainingOptions` of the ``[training]`` section; ``log`` receives a line per epoch,
    ``callbacks`` are extra Trainer callbacks (a tuner's pruning)."""
    t = cfg.training
    return TrainingOptions(
        device=t.device,
        amp=t.amp,
        checkpoint_dir=checkpoint_dir(cfg) if t.checkpoints else None,
        resume=t.resume,
        log=log,
        callbacks=tuple(callbacks),
        max_time=t.max_time,
    )


def split_fingerprint(split: Split) -> str:
    """A stable digest of the split's events: training events, and the history and target events of every
    evaluation part (with their id maps and sampled negatives). Two runs are compared per user only when their
    ``split.json`` fingerprints are equal (``recforge compare``)."""
    h = hashlib.sha256(f"{split.protocol}|".encode())
    h.update(split.train.digest().encode())
    for name, part in (("valid", split.valid), ("test", split.test)):
        h.update(f"|{name}:".encode())
        if part is not None:
            h.update(f"{part.history.digest()}/{part.target.digest()}/{int(part.known_users)}".encode())
            if part.negatives is not None:
                h.update(part.negatives.astype("int64").tobytes())
    return h.hexdigest()[:32]


RATING_METRICS = {"rmse": RMSE, "mae": MAE, "rounded_accuracy": RoundedAccuracy}


def configured_test_protocol(cfg: ExperimentConfig) -> TestProtocol:
    """The configured test protocol (``evaluation.test_input``, ``evaluation.test_exclude``)."""
    return TestProtocol(cfg.evaluation.test_input, cfg.evaluation.test_exclude)


def part_protocol(split: Split, name: str, cfg: ExperimentConfig) -> ProtocolPart:
    """Part ``name`` ("valid" or "test") of ``split`` as it is evaluated: the test part under the configured
    protocol, the validation part from the training events (held-out users: from their fold-in events)."""
    if name == "test":
        return apply_protocol(split, configured_test_protocol(cfg))
    part = split.valid
    assert part is not None
    return ProtocolPart(part, None, dict(VALID_PROTOCOL if part.known_users else FOLD_IN_PROTOCOL))


def evaluate_part(
    model: BaseRecommender,
    part: EvalPart,
    cfg: ExperimentConfig,
    *,
    progress: Progress | None = None,
    task: str = "",
    exclude: Any = None,
) -> dict[str, EvaluationResult]:
    """Every evaluation that applies: full ranking always, rating errors for explicit targets of rating
    models, and the sampled-negatives protocol when the part carries negatives. ``exclude``: items removed from
    the rankings besides ``part.history`` (the test protocol, :func:`part_protocol`)."""
    metrics = [parse_metric(m) for m in cfg.evaluation.metrics]
    total = part.n_users
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(task, done, total)

    out = {
        "ranking": evaluate_ranking(
            model,
            part,
            metrics,
            batch_size=cfg.evaluation.batch_size,
            coverage=cfg.evaluation.coverage,
            progress=step,
            world=distributed.world(),
            exclude=exclude,
        )
    }
    if part.target.explicit and hasattr(model, "predict_indices") and part.known_users:
        out["rating"] = evaluate_ratings(model, part, [RATING_METRICS[m]() for m in cfg.evaluation.rating_metrics])
    if part.negatives is not None:
        out["sampled"] = evaluate_sampled(model, part, cfg.evaluation.sampled_ks, batch_size=cfg.evaluation.batch_size)
    return out


def _merge(results: dict[str, EvaluationResult]) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    for kind, res in results.items():
        metrics.update(res.metrics if kind == "ranking" else {f"{kind}_{k}": v for k, v in res.metrics.items()})
    return {"n_users": results["ranking"].n_users, "metrics": metrics}


def _check_parts(cfg: ExperimentConfig, split: Split, defaults: list[str]) -> None:
    """Refuse a split that cannot give honest numbers: an empty training part, or an evaluation part without users."""
    protocol = cfg.split.protocol
    if split.train.nnz == 0:
        raise ValueError(
            f"the training part of split {protocol!r} is empty: too few events after the filters "
            "(data.min_rating, data.min_user_interactions, ...) for this split"
        )
    dropped = split.params.get("dropped_test_events")
    if split.test.n_users == 0:
        why = (
            f"{dropped} test events were dropped because their user or item is not in the training part"
            if dropped
            else f"{split.test.target.nnz} test events"
        )
        raise ValueError(
            f"the test part of split {protocol!r} has no users to evaluate ({why}): the data is too small for this "
            "split or its test users are unknown to the training part; no run was written"
        )
    if split.valid is not None and split.valid.n_users == 0:
        by_default = any(n.startswith("split.valid =") for n in defaults)
        hint = " (a default for early stopping: set split.valid=0 for none)" if by_default else ""
        raise ValueError(
            f"the validation part of split {protocol!r}{hint} has no users to evaluate "
            f"({split.valid.target.nnz} validation events); no run was written"
        )


def _check_finite(part: str, metrics: dict[str, Any]) -> None:
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k} = {v}" for k, v in bad.items())
        raise ValueError(
            f"{part} metric(s) not finite: {shown} (infinite or huge values among the ratings, or a diverged model); "
            "no run was written"
        )


#: Columns of ``item_info`` saved in a run's ``items.csv`` as ``|``-separated lists (a ``|`` in a value becomes ``/``).
ITEM_LIST_COLUMNS = ("genres", "tags")


def _item_titles(raw: RawDataset, split: Split) -> pd.DataFrame | None:
    """``item, title[, genres][, tags]`` of the model's items, when the dataset has titles (or names), genres or tags.

    Saved as the run's ``items.csv``, so that ``recforge recommend`` and ``recforge serve`` show them without the
    data folder. Lists are written ``|``-separated.
    """
    info = raw.item_info
    if info is None:
        return None
    title_col = next((c for c in ("title", "name") if c in info.columns), None)
    lists = [c for c in ITEM_LIST_COLUMNS if c in info.columns]
    if title_col is None and not lists:
        return None
    ids = pd.Index(split.train.items.ids)
    frame = pd.DataFrame({"item": ids.to_numpy()})
    frame["title"] = info[title_col].reindex(ids).to_numpy() if title_col else None
    keep = np.array(frame["title"].notna(), dtype=bool)
    for column in lists:
        values = info[column].reindex(ids)
        frame[column] = [
            "|".join(str(v).replace("|", "/") for v in x) if isinstance(x, list | tuple | np.ndarray) else ""
            for x in values
        ]
        keep |= frame[column].to_numpy() != ""
    return frame[keep]


def _heldout_users(split: Split) -> dict[str, list[Any]]:
    """The users of the parts that were held out of training (strong generalisation), by part."""
    out = {}
    for name, part in (("valid", split.valid), ("test", split.test)):
        if part is not None and not part.known_users:
            out[name] = part.history.users.ids.tolist()
    return out


def run_experiment(
    cfg: ExperimentConfig,
    *,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
    callbacks: Sequence[Callback] = (),
    parts: Sequence[str] = ("valid", "test"),
) -> ExperimentResult:
    """Run one experiment and write its run directory and registry row (atomically, as one unit).

    The config is resolved first (:func:`resolve_config`: what was chosen automatically is recorded in
    ``config.json`` and logged). A run that cannot give honest numbers -- no users to evaluate, metrics that
    are NaN or infinite, a diverged training -- raises ``ValueError`` and writes nothing.

    In several processes (``torchrun``) every rank reads the data, trains its share and evaluates its share of
    the users; rank 0 alone writes the run directory and the registry row and reports progress.

    ``callbacks`` are passed to the training (:class:`TrainingOptions`); ``parts`` are the parts evaluated
    (a tuner's trials evaluate ``("valid",)`` only, so that the test part is never looked at during a search).
    """
    check_config(cfg)
    cfg, defaults = resolve_config(cfg)
    rank = distributed.world()
    named = getattr(build_model(cfg), "run_name", None)  # a name from the model's parameters (song models)
    label = f"{data_label(cfg)}-{named() if callable(named) else cfg.model.name}"
    run_id = distributed.broadcast(cfg.run.name or new_run_id(label))
    if not rank.is_main:
        progress = log = None
    writing = run_directory(cfg.run.output_dir, run_id) if rank.is_main else contextlib.nullcontext(None)

    with writing as writer:

        def note(message: str) -> None:
            if writer is not None:
                writer.log(message)
            if log is not None:
                log(message)

        if writer is not None:
            writer.write_json("config.json", cfg.to_json())
        for line in defaults:
            note(line)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:  # the data layer's notices become log lines
            warnings.simplefilter("always", UserWarning)
            raw = load_raw(cfg)
            frame = prepare_events(cfg, raw)
            note(
                f"read {len(raw.interactions):,} events, {len(frame):,} after filters ({time.perf_counter() - t0:.1f}s)"
            )
            split = make_split(cfg, raw, frame)
        for w in caught:
            if issubclass(w.category, UserWarning):
                note(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        summary = split.summary()
        note(f"split {cfg.split.protocol}: {json.dumps(summary)}")
        if split.valid is not None and split.test.known_users:
            shown = configured_test_protocol(cfg).to_json()
            note(
                f"test protocol: scores from {shown['input']}, excludes {shown['exclude']} "
                "(evaluation.test_input, evaluation.test_exclude)"
            )
        _check_parts(cfg, split, defaults)
        if "test" not in parts and split.valid is None:
            raise ValueError(
                f"split {cfg.split.protocol!r} has no validation part to evaluate ({_no_valid_hint(cfg)}); "
                "no run was written"
            )
        if split.valid is None and _early_stops(cfg):
            note(
                f"no validation part: early stopping is off, {cfg.model.name} trains for model.max_epochs epochs "
                f"({_no_valid_hint(cfg)} to turn it on)"
            )
        model = build_model(cfg)
        options = training_options(cfg, log=note, callbacks=callbacks)
        if rank.parallel:
            note(f"training on {rank.size} processes (global batch = {rank.size} x batch_size)")
        t0 = time.perf_counter()
        try:
            model.fit(split.train, valid=split.valid, options=options)
        except FloatingPointError as exc:
            raise ValueError(
                f"model {cfg.model.name} diverged ({exc}): lower model.learning_rate, or look for extreme values "
                "in the data; no run was written"
            ) from exc
        fit_seconds = time.perf_counter() - t0
        note(f"fitted {model!r} in {fit_seconds:.1f}s")
        results: dict[str, dict[str, Any]] = {}
        for name, part in (("valid", split.valid), ("test", split.test)):
            if part is None or name not in parts:
                continue
            t0 = time.perf_counter()
            evaluated = part_protocol(split, name, cfg)
            res = evaluate_part(
                model, evaluated.part, cfg, progress=progress, task=f"evaluating {name}", exclude=evaluated.exclude
            )
            results[name] = {
                **_merge(res),
                "protocol": evaluated.protocol,
                "seconds": round(time.perf_counter() - t0, 3),
            }
            _check_finite(name, results[name]["metrics"])
            note(f"{name}: {json.dumps(results[name]['metrics'])}")
            if writer is not None:
                with writer.writing():
                    for kind, r in res.items():
                        suffix = "" if kind == "ranking" else f"_{kind}"
                        r.per_user.to_csv(writer.path / f"per_user_{name}{suffix}.csv", index=False)
        results["fit"] = {"seconds": round(fit_seconds, 3)}
        if writer is not None:
            fingerprint = split_fingerprint(split)
            writer.write_json("split.json", {**summary, "fingerprint": fingerprint, "data_source": data_source(cfg)})
            with writer.writing():
                model.save(writer.path / "model")
                log_rows = getattr(model, "training_log_", None)
                if log_rows:
                    pd.DataFrame(log_rows).to_csv(writer.path / "training_log.csv", index=False)
                titles = _item_titles(raw, split)
                if titles is not None and len(titles):
                    titles.to_csv(writer.path / "items.csv", index=False)
            heldout = _heldout_users(split)
            if heldout:
                writer.write_json("heldout_users.json", heldout)
            writer.write_json("metrics.json", results)
    # the finished training removed its checkpoint (and the folder, when nothing else is in it) itself
    return ExperimentResult(Path(cfg.run.output_dir) / run_id, summary, results)


def reload_run(run_dir: str | Path, *, device: str = "auto") -> tuple[ExperimentConfig, BaseRecommender]:
    """The validated config and the saved model of a run directory, loaded onto ``device``."""
    return read_config(run_dir), load_model(Path(run_dir) / "model", device=device)


def read_config(run_dir: str | Path) -> ExperimentConfig:
    """The validated ``config.json`` of a run directory (errors name the file)."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a recforge run directory (no config.json)")
    try:
        tree = json.loads(config_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{config_path} is not valid JSON ({exc})") from None
    if isinstance(tree, dict) and isinstance(tree.get("data"), dict):
        for key in ("rating_col", "timestamp_col"):  # runs made before "auto" used no such column unless named
            tree["data"].setdefault(key, None)
        tree["data"].setdefault("ids", "auto")  # runs made before issue 20 typed canonical integer ids as integers
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise config_error(exc, f"{config_path}: ") from None


def evaluate_run(
    run_dir: str | Path,
    *,
    progress: Progress | None = None,
    device: str = "auto",
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Rebuild the run's split (deterministic under its seed) and evaluate the saved model on the test part.

    ``data_dir`` replaces the run's ``data.data_dir`` (the dataset cache moved, or another machine).
    """
    cfg, model = reload_run(run_dir, device=device)
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_dir": Path(data_dir)})})
    split = rebuild_split(cfg)
    evaluated = part_protocol(split, "test", cfg)
    result = _merge(
        evaluate_part(model, evaluated.part, cfg, progress=progress, task="evaluating test", exclude=evaluated.exclude)
    )
    _check_finite("test", result["metrics"])
    return {**result, "protocol": evaluated.protocol}


def rebuild_split(cfg: ExperimentConfig) -> Split:
    """The split of a run's (read) config, rebuilt from its data (deterministic under its seed)."""
    raw = load_raw(cfg)
    split = make_split(cfg, raw, prepare_events(cfg, raw))
    _check_parts(cfg, split, [])
    return split
