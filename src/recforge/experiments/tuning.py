"""Hyper-parameter search with Optuna (the ``tune`` extra): ``recforge tune EXPERIMENT.toml --trials N``.

The experiment file's ``[tune]`` section names the search space with the dotted keys of ``--set`` and the
objective, a metric of the **validation** part::

    [tune]
    metric = "ndcg@100"            # default: the first of evaluation.metrics
    direction = "maximize"         # default: maximize (minimize for rmse / mae)
    sampler = "tpe"                # or "random"
    pruner = "median"              # or "none"; prunes neural models through a Trainer callback
    model.l2 = {log_uniform = [1, 1e4]}
    model.hidden_dims = {choice = [[600, 200], [200]]}
    model.dropout = {uniform = [0.1, 0.7]}
    model.batch_size = {int = [100, 500], step = 100}     # or log_int = [lo, hi]

Every trial is a normal run (``<study>-t0007``) in the output folder and its registry, tagged with the study
(``run.study``) and evaluated on the validation part only. The study lives in ``<output_dir>/optuna.sqlite``:
running the same command again continues it (trials killed half-way are run again), and a larger ``--trials``
adds trials. At the end the best configuration is written to ``<output_dir>/<study>.best.toml`` (ready for
``recforge run``) and run once more as ``<study>-best-t0007``: the one run of the search that looks at the test
part.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from recforge.experiments.config import ConfigError, ExperimentConfig, config_error
from recforge.experiments.pipeline import check_config, run_experiment
from recforge.experiments.runs import RunRegistry, process_alive
from recforge.training.callbacks import Callback

if TYPE_CHECKING:
    import optuna

    from recforge.training.trainer import Trainer

STORAGE_FILE = "optuna.sqlite"
"""The studies of an output folder (SQLite, Optuna's schema)."""

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "log_int", "choice")
"""The forms of a search dimension: ``{log_uniform = [lo, hi]}``, ``{uniform = [lo, hi]}``, ``{int = [lo, hi]}``
(optional ``step``), ``{log_int = [lo, hi]}``, ``{choice = [a, b, ...]}``."""

_SETTINGS = ("metric", "direction", "sampler", "pruner", "seed", "startup_trials", "warmup_epochs")
_SECTIONS = ("data", "split", "model", "evaluation")  # what a search may vary; never run/training/tune
_ERROR_METRICS = ("rmse", "mae")


# ---------------------------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class Dimension:
    """One searched key: a float or int range (log-scaled or not, with a step) or a list of choices."""

    key: str
    kind: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value (Optuna's own parameter is named by the dotted key)."""
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            step = int(self.step) if self.step is not None else 1
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=step)
        encoded = [_encode_choice(c) for c in self.choices]
        return _decode_choice(trial.suggest_categorical(self.key, encoded))

    def first(self) -> Any:
        """A value of the dimension (its low end, its first choice): what the config is checked with."""
        if self.kind == "choice":
            return self.choices[0]
        return int(self.low) if self.kind == "int" else float(self.low)


def _encode_choice(value: Any) -> Any:
    """Optuna's categorical values are scalars: a list or table choice travels as its JSON text."""
    return value if value is None or isinstance(value, bool | int | float | str) else "json:" + json.dumps(value)


def _decode_choice(value: Any) -> Any:
    return json.loads(value[5:]) if isinstance(value, str) and value.startswith("json:") else value


@dataclass(frozen=True)
class TuneSettings:
    """The ``[tune]`` section: the objective (a validation metric and its direction), the sampler, the pruner
    and the search space."""

    metric: str
    direction: Literal["maximize", "minimize"]
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "none"] = "median"
    seed: int = 0
    startup_trials: int = 5
    warmup_epochs: int = 1
    space: dict[str, Dimension] = field(default_factory=dict)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables to dotted keys down to a distribution table (``{log_uniform = [...]}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if not isinstance(value, Mapping):
            out[dotted] = value
            continue
        section = not prefix and key in _SECTIONS  # [tune.model] or model.x = ...: always a section
        nested = bool(value) and all(isinstance(v, Mapping) for v in value.values())
        if section or (nested and not set(value) & set(DISTRIBUTIONS)):
            out.update(_flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _dimension(key: str, spec: Any) -> Dimension:
    where = f"tune.{key}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: a search dimension is a table, e.g. {{log_uniform = [1, 1e4]}}; got {spec!r}")
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    extra = [k for k in spec if k not in (*DISTRIBUTIONS, "step")]
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{where}: give exactly one of {', '.join(DISTRIBUTIONS)} (and optionally step); got {spec}")
    kind, value = kinds[0], spec[kinds[0]]
    step = spec.get("step")
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: choice needs a non-empty list, got {value!r}")
        if step is not None:
            raise ConfigError(f"{where}: step applies to int and uniform ranges, not to choice")
        return Dimension(key, "choice", choices=tuple(value))
    numeric = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
    if not numeric or not value[0] < value[1]:
        raise ConfigError(f"{where}: {kind} needs [low, high] with low < high, got {value!r}")
    low, high = value
    if kind in ("log_uniform", "log_int") and low <= 0:
        raise ConfigError(f"{where}: {kind} needs low > 0, got {low}")
    if step is not None and (kind.startswith("log") or not isinstance(step, int | float) or step <= 0):
        raise ConfigError(f"{where}: step must be a positive number of an int or uniform range, got {step!r}")
    if kind in ("int", "log_int"):
        if not all(isinstance(v, int) for v in value) or (step is not None and not isinstance(step, int)):
            raise ConfigError(f"{where}: {kind} needs integer bounds and step, got {spec}")
        return Dimension(key, "int", low, high, log=kind == "log_int", step=step)
    return Dimension(key, "float", float(low), float(high), log=kind == "log_uniform", step=step)


def parse_tune(cfg: ExperimentConfig) -> TuneSettings:
    """The validated ``[tune]`` section of an experiment (errors name the key: ``tune.model.l2: ...``)."""
    if not cfg.tune:
        raise ConfigError(
            "tune: the experiment has no [tune] section; add one naming the search space, e.g. "
            "[tune] model.l2 = {log_uniform = [1, 1e4]}"
        )
    raw = dict(cfg.tune)
    settings = {k: raw.pop(k) for k in _SETTINGS if k in raw}
    space: dict[str, Dimension] = {}
    for key, spec in _flatten(raw).items():
        section = key.split(".")[0]
        if section not in _SECTIONS or "." not in key:
            raise ConfigError(
                f"tune.{key}: not a searchable key; settings are {', '.join(_SETTINGS)}, searched keys are dotted "
                f"keys of the sections {', '.join(_SECTIONS)} (as with --set)"
            )
        space[key] = _dimension(key, spec)
    if not space:
        raise ConfigError("tune: the search space is empty; add e.g. model.l2 = {log_uniform = [1, 1e4]}")
    metric = str(settings.get("metric", cfg.evaluation.metrics[0] if cfg.evaluation.metrics else "ndcg@100"))
    if metric not in cfg.evaluation.metrics and metric not in ("rmse", "mae", "rounded_accuracy"):
        raise ConfigError(f"tune.metric: {metric!r} is not among evaluation.metrics {cfg.evaluation.metrics}")
    direction = settings.get("direction", "minimize" if metric in _ERROR_METRICS else "maximize")
    choices: dict[str, tuple[Any, ...]] = {
        "direction": ("maximize", "minimize"),
        "sampler": ("tpe", "random"),
        "pruner": ("median", "none"),
    }
    values = {
        "direction": direction,
        "sampler": settings.get("sampler", "tpe"),
        "pruner": settings.get("pruner", "median"),
    }
    for key, allowed in choices.items():
        if values[key] not in allowed:
            raise ConfigError(f"tune.{key}: {values[key]!r} is not one of {', '.join(allowed)}")
    numbers: dict[str, int] = {}
    for key, default in (("seed", cfg.run.seed), ("startup_trials", 5), ("warmup_epochs", 1)):
        value = settings.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"tune.{key}: must be an integer >= 0, got {value!r}")
        numbers[key] = value
    return TuneSettings(metric=metric, space=space, **values, **numbers)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- configs
def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    for part in sections:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"tune.{key}: {part} is not a section")
        tree = node
    tree[last] = value


def config_tree(cfg: ExperimentConfig, params: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment as a TOML-ready tree with ``params`` (dotted keys) set, without its ``[tune]`` section: the
    keys the experiment gave (defaults stay defaults)."""
    tree = cfg.model_dump(mode="json", exclude_none=True, exclude_unset=True)
    tree.pop("tune", None)
    for key, value in params.items():
        _set_dotted(tree, key, value)
    return tree


def trial_config(cfg: ExperimentConfig, params: Mapping[str, Any], *, name: str, study: str) -> ExperimentConfig:
    """The run of one trial (or of the best configuration): ``params`` set, named ``name``, tagged ``study``."""
    tree = config_tree(cfg, params)
    tree.setdefault("run", {}).update(name=name, study=study)
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise config_error(exc, f"study {study}, parameters {dict(params)}: ") from None


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"{value!r} cannot be written to TOML")


def to_toml(tree: Mapping[str, Any], header: str = "") -> str:
    """A config tree (sections of scalars, lists and inline tables) as TOML text, with ``header`` as comments."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in tree.items():
        if not isinstance(values, Mapping):
            lines.append(f"{_toml_key(section)} = {_toml_value(values)}")
            continue
        lines += ["", f"[{_toml_key(section)}]"]
        lines += [f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in values.items() if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------- pruning
class PruningCallback(Callback):
    """Median pruning from inside the Trainer: reports ``monitor`` (a logged validation value, e.g.
    ``valid_ndcg@100``) to the trial after every epoch and stops the training when Optuna says to prune.

    The training then ends normally (its best checkpoint restored, its run written), :attr:`pruned_at` holds the
    epoch (1-based), and the tuner marks the trial pruned. A model that does not log ``monitor`` is never pruned
    (:attr:`missing` says so).
    """

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None
        self.missing = False

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self.monitor not in logs:
            self.missing = True
            return
        value = logs[self.monitor]
        if not math.isfinite(value):
            return
        self.trial.report(value, trainer.epoch)
        if self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = trainer.epoch + 1
            trainer.should_stop = True
            logs["pruned"] = 1.0


# ---------------------------------------------------------------------------------------------- the search
@dataclass(frozen=True)
class TrialReport:
    """One finished trial, as the progress line shows it."""

    number: int
    state: Literal["complete", "pruned", "failed"]
    value: float | None
    params: dict[str, Any]
    run: str | None
    epochs: int | None
    seconds: float
    best_value: float | None
    best_number: int | None
    done: int
    target: int
    message: str = ""

    def line(self, metric: str) -> str:
        """``trial 7/30  model.l2=251.2  valid ndcg@100 0.4521  best 0.4602 (trial 3)  (1.2s)``."""
        params = "  ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        if self.state == "failed":
            what = f"failed: {self.message}"
        else:
            what = f"valid {metric} {self.value:.4f}" if self.value is not None else f"valid {metric} -"
            if self.state == "pruned":
                what += f"  pruned at epoch {self.epochs}"
        best = f"best {self.best_value:.4f} (trial {self.best_number})" if self.best_value is not None else "best -"
        return f"trial {self.done}/{self.target} (#{self.number})  {params}  {what}  {best}  ({self.seconds:.1f}s)"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


@dataclass(frozen=True)
class TuneResult:
    study: str
    storage: Path
    settings: TuneSettings
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_toml: Path | None
    final_run: Path | None
    final_metrics: dict[str, Any] | None


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ValueError("recforge tune needs Optuna, the tune extra: pip install 'recforge[tune]'") from None
    return optuna


def quiet_optuna() -> None:
    """Optuna's own log lines off (errors stay): the command line prints one line per trial itself, failures
    included."""
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def storage_url(output_dir: str | Path) -> str:
    return f"sqlite:///{(Path(output_dir) / STORAGE_FILE).resolve()}"


def default_study_name(config_path: str | Path | None, cfg: ExperimentConfig) -> str:
    """``tune-<file stem>``, else ``tune-<dataset>-<model>`` (a safe folder-name prefix)."""
    stem = Path(config_path).stem if config_path else f"{cfg.data.dataset or 'table'}-{cfg.model.name}"
    return "tune-" + "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in stem)[:80]


def _open_study(optuna: Any, settings: TuneSettings, study_name: str, output_dir: Path) -> Any:
    """The study ``study_name`` of ``<output_dir>/optuna.sqlite``, created or continued, with the section's sampler
    and pruner; one made for another direction or metric is refused."""
    output_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(storage_url(output_dir))
    # a continued study draws on from where it is (the same seed again would repeat the first draws)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    seed = settings.seed + next((s.n_trials for s in summaries if s.study_name == study_name), 0)
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings.startup_trials)
        if settings.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials, n_warmup_steps=settings.warmup_epochs)
        if settings.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=settings.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != settings.direction:
        raise ConfigError(
            f"tune.direction: study {study_name!r} in {output_dir / STORAGE_FILE} was made to "
            f"{study.direction.name.lower()}; use another --study for {settings.direction}"
        )
    stored = study.user_attrs.get("metric")
    if stored is not None and stored != settings.metric:
        raise ConfigError(
            f"tune.metric: study {study_name!r} optimises {stored}, not {settings.metric}; use another --study"
        )
    study.set_user_attr("metric", settings.metric)
    return study


def _finished(trial: Any, optuna: Any) -> bool:
    return trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _recover_killed(study: Any, optuna: Any) -> list[int]:
    """Trials of this machine left RUNNING by a killed process are marked failed, and every trial that was
    interrupted (killed, Ctrl-C) is queued to run again with its parameters. Returns the requeued numbers."""
    running = optuna.trial.TrialState.RUNNING
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(running,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") == host and isinstance(pid, int) and not process_alive(pid):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    requeued = []
    for t in trials:
        interrupted = t.state == optuna.trial.TrialState.FAIL and "error" not in t.user_attrs
        if interrupted and t.number not in retried and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            requeued.append(t.number)
    return requeued


def _trial_row(t: Any, optuna: Any, space: Mapping[str, Dimension]) -> dict[str, Any]:
    state = {
        optuna.trial.TrialState.COMPLETE: "complete",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
        optuna.trial.TrialState.RUNNING: "running",
        optuna.trial.TrialState.WAITING: "waiting",
    }[t.state]
    params = t.user_attrs.get("params") or {k: _decode_choice(v) for k, v in t.params.items() if k in space}
    seconds = t.duration.total_seconds() if t.duration is not None else None
    return {
        "number": t.number,
        "state": state,
        "value": t.value if state == "complete" else t.user_attrs.get("value"),
        "params": params,
        "run": t.user_attrs.get("run"),
        "epochs": t.user_attrs.get("epochs"),
        "seconds": seconds,
    }


def tune(
    cfg: ExperimentConfig,
    *,
    trials: int,
    timeout: float | None = None,
    study_name: str,
    on_trial: Callable[[TrialReport], None] | None = None,
    log: Callable[[str], None] | None = None,
    final: bool = True,
) -> TuneResult:
    """Run (or continue) the study ``study_name`` of ``cfg``'s ``[tune]`` section until it holds ``trials``
    finished (complete or pruned) trials, or ``timeout`` seconds have passed.

    Every trial is a run of ``cfg`` with the trial's values, evaluated on the validation part only; the
    pruning callback rides in the training options. With ``final`` (default), the best configuration is written
    to ``<output_dir>/<study>.best.toml`` and run once, evaluated on the test part -- unless that exact best
    trial was already run so by an earlier call (the test part is looked at once per best configuration).
    """
    optuna = _optuna()
    settings = parse_tune(cfg)
    if trials < 0:
        raise ValueError(f"--trials must be >= 0, got {trials}")
    note = log or (lambda _m: None)
    output_dir = Path(cfg.run.output_dir)
    fixed = _fixed_params(cfg, settings)
    # a bad key or value fails now, before any data is read
    first = {**fixed, **{k: d.first() for k, d in settings.space.items()}}
    check_config(trial_config(cfg, first, name=study_name, study=study_name))
    for key, value in fixed.items():
        note(
            f"{key} = {value!r}: early stopping and pruning follow the tuned metric "
            f"(set {key} in the experiment to choose another)"
        )
    study = _open_study(optuna, settings, study_name, output_dir)
    requeued = _recover_killed(study, optuna)
    done = sum(_finished(t, optuna) for t in study.get_trials(deepcopy=False))
    if done or requeued:
        again = f"; interrupted trial(s) {', '.join(map(str, requeued))} run again" if requeued else ""
        note(f"study {study_name}: continuing with {done} finished trial(s) in {output_dir / STORAGE_FILE}{again}")
    monitor = f"valid_{settings.metric}"
    missing_noted = False

    def objective(trial: Any) -> float:
        nonlocal missing_noted
        t0 = time.perf_counter()
        params = {key: dim.suggest(trial) for key, dim in settings.space.items()}
        name = f"{study_name}-t{trial.number:04d}"
        trial.set_user_attr("params", params)
        trial.set_user_attr("run", name)
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        run_cfg = trial_config(cfg, {**fixed, **params}, name=name, study=study_name)
        run_cfg = run_cfg.model_copy(
            update={"training": run_cfg.training.model_copy(update={"checkpoints": False})}  # a trial reruns whole
        )
        pruning = PruningCallback(trial, monitor) if settings.pruner == "median" else None
        try:
            result = run_experiment(run_cfg, callbacks=[pruning] if pruning else [], parts=("valid",))
        except ValueError as exc:
            if "no run was written" not in str(exc):
                raise  # a bad configuration: stop the search
            trial.set_user_attr("error", " ".join(str(exc).split()))
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            return math.nan  # a diverged or unevaluable trial: failed, the search goes on
        if pruning is not None and pruning.missing and not missing_noted:
            missing_noted = True
            note(f"pruning is off: {run_cfg.model.name} does not log {monitor} after each epoch")
        value = result.metrics["valid"]["metrics"].get(settings.metric)
        if value is None:
            raise ConfigError(f"tune.metric: the validation part has no {settings.metric!r}")
        epochs = _epochs(result.run_dir)
        trial.set_user_attr("epochs", epochs)
        trial.set_user_attr("value", value)
        if pruning is not None and pruning.pruned_at is not None:
            trial.set_user_attr("epochs", pruning.pruned_at)
            raise optuna.TrialPruned(f"pruned at epoch {pruning.pruned_at}")
        return float(value)

    def report(study: Any, frozen: Any) -> None:
        if on_trial is None:
            return
        row = _trial_row(frozen, optuna, settings.space)
        try:
            best = study.best_trial
        except ValueError:
            best = None
        state = row["state"] if row["state"] in ("complete", "pruned") else "failed"
        on_trial(
            TrialReport(
                number=frozen.number,
                state=state,  # type: ignore[arg-type]
                value=row["value"],
                params=row["params"],
                run=row["run"],
                epochs=row["epochs"],
                seconds=row["seconds"] or 0.0,
                best_value=best.value if best is not None else None,
                best_number=best.number if best is not None else None,
                done=sum(_finished(t, optuna) for t in study.get_trials(deepcopy=False)),
                target=trials,
                message=frozen.user_attrs.get("error", ""),
            )
        )

    remaining = trials - done
    if remaining > 0:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        study.optimize(
            objective,
            n_trials=remaining + len(requeued),
            timeout=timeout,
            callbacks=[report, optuna.study.MaxTrialsCallback(trials, states=states)],
            gc_after_trial=False,
        )
    rows = [_trial_row(t, optuna, settings.space) for t in study.get_trials(deepcopy=False)]
    complete = [r for r in rows if r["state"] == "complete"]
    best_row = None
    if complete:
        best_number = study.best_trial.number
        best_row = next(r for r in rows if r["number"] == best_number)
    _write_trials(output_dir / f"{study_name}.trials.csv", rows)
    best_toml = final_run = final_metrics = None
    if best_row is not None and final:
        best = {**best_row, "params": {**fixed, **best_row["params"]}}
        best_toml, final_run, final_metrics = _final(cfg, study, study_name, settings, best, note)
    return TuneResult(
        study=study_name,
        storage=output_dir / STORAGE_FILE,
        settings=settings,
        trials=rows,
        best=best_row,
        best_toml=best_toml,
        final_run=final_run,
        final_metrics=final_metrics,
    )


def _fixed_params(cfg: ExperimentConfig, settings: TuneSettings) -> dict[str, Any]:
    """What every trial sets besides the searched values: ``model.monitor`` = the tuned ranking metric, when the
    model validates every epoch on a ``monitor`` the experiment left at its default (so that early stopping, the
    best epoch and pruning follow the objective)."""
    from recforge.models.registry import model_class

    try:
        specs = model_class(cfg.model.name).param_specs()
    except (KeyError, ValueError):
        return {}  # an unknown model: check_config says so
    unset = "monitor" in specs and "monitor" not in cfg.model.params and "model.monitor" not in settings.space
    return {"model.monitor": settings.metric} if unset and "@" in settings.metric else {}


def _epochs(run_dir: Path) -> int | None:
    log = run_dir / "training_log.csv"
    if not log.is_file():
        return None
    with log.open() as f:
        return max(0, sum(1 for _ in f) - 1)


def _write_trials(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {k: v for k, v in r.items() if k != "params"} | {f"param {k}": _short(v) for k, v in r["params"].items()}
            for r in rows
        ]
    )
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def _final(
    cfg: ExperimentConfig,
    study: Any,
    study_name: str,
    settings: TuneSettings,
    best: dict[str, Any],
    note: Callable[[str], None],
) -> tuple[Path, Path | None, dict[str, Any] | None]:
    """Write the best configuration as TOML and run it once on the test part (unless already done)."""
    output_dir = Path(cfg.run.output_dir)
    header = (
        f"best configuration of study {study_name} (trial {best['number']}): "
        f"valid {settings.metric} = {best['value']:.6g}\n"
        f"written by recforge tune; run it with: recforge run {output_dir / (study_name + '.best.toml')}"
    )
    tree = config_tree(cfg, best["params"])
    tree.get("run", {}).pop("name", None)
    toml_path = output_dir / f"{study_name}.best.toml"
    tmp = toml_path.with_name(f".{toml_path.name}.tmp")
    tmp.write_text(to_toml(tree, header), encoding="utf-8")
    os.replace(tmp, toml_path)
    name = f"{study_name}-best-t{best['number']:04d}"
    final_dir = output_dir / name
    metrics_file = final_dir / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        if "test" in metrics:
            note(f"the best trial ({best['number']}) was already evaluated on the test part: {final_dir}")
            study.set_user_attr("final_trial", best["number"])
            study.set_user_attr("final_run", name)
            return toml_path, final_dir, metrics
    note(f"best trial {best['number']}: training it again and evaluating it once on the test part ({name})")
    if final_dir.is_dir():  # a folder of this name without its test evaluation: replace it
        RunRegistry(output_dir).delete(name)
    result = run_experiment(trial_config(cfg, best["params"], name=name, study=study_name))
    study.set_user_attr("final_trial", best["number"])
    study.set_user_attr("final_run", name)
    return toml_path, result.run_dir, result.metrics
