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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from recforge import distributed
from recforge.data import filters
from recforge.data.datasets import dataset_info, load_dataset
from recforge.data.interactions import Interactions
from recforge.data.readers import RawDataset, read_movielens_100k_fold, read_table
from recforge.data.splits import PRESETS, SPLITS, EvalPart, Split, liang2018, predefined_split, random_split
from recforge.evaluation.evaluate import EvaluationResult, evaluate_ranking, evaluate_ratings, evaluate_sampled
from recforge.experiments.config import ConfigError, ExperimentConfig
from recforge.experiments.runs import RunRegistry, new_run_id, run_directory
from recforge.metrics import parse_metric
from recforge.metrics.rating import MAE, RMSE, RoundedAccuracy
from recforge.models.base import BaseRecommender, InvalidParameterError
from recforge.models.registry import create_model, load_model, model_class
from recforge.training.options import TrainingOptions

PREDEFINED_PARAMS = ("fold", "train_path", "test_path", "valid_path", "valid_fraction", "seed")
"""Parameters of the ``predefined`` protocol: an official ML-100K fold or train/test(/valid) files."""

Progress = Callable[[str, int, int], None]
"""Called as ``progress(task, done, total)`` while evaluating."""


@dataclass(frozen=True)
class ExperimentResult:
    run_dir: Path
    split: dict[str, Any]
    metrics: dict[str, dict[str, Any]]


def check_config(cfg: ExperimentConfig) -> None:
    """Validate the split and model parameters and the metric names against what they configure."""
    split_fn, params = _split_call(cfg)
    accepted = list(PREDEFINED_PARAMS) if split_fn is predefined_split else _keyword_params(split_fn)
    for key in params:
        if key not in accepted:
            raise ConfigError(f"split.{key}: unknown parameter of split {cfg.split.protocol!r}; known: {accepted}")
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


def _split_call(cfg: ExperimentConfig) -> tuple[Callable[..., Split], dict[str, Any]]:
    """The split function and its parameters; a preset name expands to its protocol and defaults."""
    protocol, params = cfg.split.protocol, cfg.split.params
    if protocol in PRESETS:
        protocol, defaults = PRESETS[protocol]
        params = {**defaults, **params}
    if protocol not in SPLITS:
        known = ", ".join([*SPLITS, *PRESETS])
        raise ConfigError(f"split.protocol: unknown protocol {protocol!r}; known: {known}")
    return SPLITS[protocol], params


def _keyword_params(fn: Callable[..., Any]) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]


def load_raw(cfg: ExperimentConfig) -> RawDataset:
    """Read the configured data source (a registered dataset or a table with a column mapping)."""
    d = cfg.data
    if d.dataset is not None:
        return load_dataset(d.dataset, data_dir=d.data_dir, download=d.download)
    assert d.path is not None
    return read_table(
        d.path, user_col=d.user_col, item_col=d.item_col, rating_col=d.rating_col, timestamp_col=d.timestamp_col
    )


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
    if fn is liang2018:
        return fn(frame, **params)
    if fn is predefined_split:
        return _predefined(cfg, params)
    if "seed" in _keyword_params(fn):
        params.setdefault("seed", cfg.run.seed)
    data = Interactions.from_frame(frame, item_info=raw.item_info, user_info=raw.user_info)
    return fn(data, **params)


def _predefined(cfg: ExperimentConfig, params: dict[str, Any]) -> Split:
    """An official ML-100K fold (``fold="u1"``) or ``train_path``/``test_path`` files read like ``data.path``.

    ``valid_fraction`` carves a seeded random validation part out of the training events (for early
    stopping) when no ``valid_path`` is given. The configured filters apply to every file.
    """
    d = cfg.data
    if "fold" in params:
        if d.dataset != "ml-100k":
            raise ConfigError("split.fold: official folds exist for data.dataset = 'ml-100k' only")
        load_dataset(d.dataset, data_dir=d.data_dir, download=d.download)
        train, test = read_movielens_100k_fold(dataset_info(d.dataset, data_dir=d.data_dir)["path"], params["fold"])
        valid = None
    elif "train_path" in params and "test_path" in params:
        columns = {"user_col": d.user_col, "item_col": d.item_col, "rating_col": d.rating_col}
        columns["timestamp_col"] = d.timestamp_col
        train, test = (read_table(params[k], **columns).interactions for k in ("train_path", "test_path"))
        valid = read_table(params["valid_path"], **columns).interactions if "valid_path" in params else None
    else:
        raise ConfigError("split: 'predefined' needs split.fold (ML-100K) or split.train_path and split.test_path")
    frames = [
        prepare_events(cfg, RawDataset(d.dataset or "table", f)) if f is not None else None
        for f in (train, test, valid)
    ]
    train, test, valid = frames
    fraction = float(params.get("valid_fraction", 0.0))
    if valid is None and fraction > 0:
        carved = random_split(Interactions.from_frame(train), test=fraction, seed=params.get("seed", cfg.run.seed))
        in_valid = carved.test.target.to_frame()[["user", "item"]]
        marked = train.merge(in_valid.assign(_valid=True), on=["user", "item"], how="left")
        is_valid = marked["_valid"].fillna(False).to_numpy(dtype=bool)
        train, valid = train[~is_valid], train[is_valid]
    split = predefined_split(train, test, valid_frame=valid)
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


def training_options(cfg: ExperimentConfig, *, log: Callable[[str], None] | None = None) -> TrainingOptions:
    """The :class:`TrainingOptions` of the ``[training]`` section; ``log`` receives a line per epoch."""
    t = cfg.training
    return TrainingOptions(
        device=t.device,
        amp=t.amp,
        checkpoint_dir=checkpoint_dir(cfg) if t.checkpoints else None,
        resume=t.resume,
        log=log,
    )


RATING_METRICS = {"rmse": RMSE, "mae": MAE, "rounded_accuracy": RoundedAccuracy}


def evaluate_part(
    model: BaseRecommender, part: EvalPart, cfg: ExperimentConfig, *, progress: Progress | None = None, task: str = ""
) -> dict[str, EvaluationResult]:
    """Every evaluation that applies: full ranking always, rating errors for explicit targets of rating
    models, and the sampled-negatives protocol when the part carries negatives."""
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


def run_experiment(
    cfg: ExperimentConfig, *, progress: Progress | None = None, log: Callable[[str], None] | None = None
) -> ExperimentResult:
    """Run one experiment and write its run directory (atomically) and registry entry.

    In several processes (``torchrun``) every rank reads the data, trains its share and evaluates its share of
    the users; rank 0 alone writes the run directory and the registry row and reports progress.
    """
    check_config(cfg)
    rank = distributed.world()
    label = f"{cfg.data.dataset or Path(str(cfg.data.path)).stem}-{cfg.model.name}"
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
        t0 = time.perf_counter()
        raw = load_raw(cfg)
        frame = prepare_events(cfg, raw)
        note(f"read {len(raw.interactions):,} events, {len(frame):,} after filters ({time.perf_counter() - t0:.1f}s)")
        split = make_split(cfg, raw, frame)
        summary = split.summary()
        note(f"split {cfg.split.protocol}: {json.dumps(summary)}")
        model = build_model(cfg)
        options = training_options(cfg, log=note)
        if rank.parallel:
            note(f"training on {rank.size} processes (global batch = {rank.size} x batch_size)")
        t0 = time.perf_counter()
        model.fit(split.train, valid=split.valid, options=options)
        fit_seconds = time.perf_counter() - t0
        note(f"fitted {model!r} in {fit_seconds:.1f}s")
        results: dict[str, dict[str, Any]] = {}
        for name, part in (("valid", split.valid), ("test", split.test)):
            if part is None:
                continue
            t0 = time.perf_counter()
            res = evaluate_part(model, part, cfg, progress=progress, task=f"evaluating {name}")
            results[name] = {**_merge(res), "seconds": round(time.perf_counter() - t0, 3)}
            note(f"{name}: {json.dumps(results[name]['metrics'])}")
            if writer is not None:
                for kind, r in res.items():
                    suffix = "" if kind == "ranking" else f"_{kind}"
                    r.per_user.to_csv(writer.path / f"per_user_{name}{suffix}.csv", index=False)
        results["fit"] = {"seconds": round(fit_seconds, 3)}
        if writer is not None:
            writer.write_json("split.json", summary)
            model.save(writer.path / "model")
            log_rows = getattr(model, "training_log_", None)
            if log_rows:
                pd.DataFrame(log_rows).to_csv(writer.path / "training_log.csv", index=False)
            writer.write_json("metrics.json", results)
    run_dir = Path(cfg.run.output_dir) / run_id
    if rank.is_main:
        shutil.rmtree(checkpoint_dir(cfg), ignore_errors=True)
        RunRegistry(cfg.run.output_dir).add(
            run_id,
            dataset=label,
            split=cfg.split.protocol,
            model=cfg.model.name,
            metrics=results.get("test", {}).get("metrics", {}),
            path=run_dir,
        )
    return ExperimentResult(run_dir, summary, results)


def reload_run(run_dir: str | Path, *, device: str = "auto") -> tuple[ExperimentConfig, BaseRecommender]:
    """The validated config and the saved model of a run directory, loaded onto ``device``."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a recforge run directory (no config.json)")
    cfg = ExperimentConfig.model_validate(json.loads(config_path.read_text()))
    return cfg, load_model(run_dir / "model", device=device)


def evaluate_run(run_dir: str | Path, *, progress: Progress | None = None, device: str = "auto") -> dict[str, Any]:
    """Rebuild the run's split (deterministic under its seed) and evaluate the saved model on the test part."""
    cfg, model = reload_run(run_dir, device=device)
    raw = load_raw(cfg)
    split = make_split(cfg, raw, prepare_events(cfg, raw))
    return _merge(evaluate_part(model, split.test, cfg, progress=progress, task="evaluating test"))
