"""`recforge tune`: the [tune] section, resuming a killed search, pruning, and one look at the test part."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pandas as pd
import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")

from recforge.experiments import pipeline, tuning  # noqa: E402
from recforge.experiments.config import ConfigError, ExperimentConfig, load_config  # noqa: E402
from recforge.experiments.runs import RunRegistry  # noqa: E402
from tests.cli_runner import cli  # noqa: E402


def experiment(tmp_path: Path, csv: Path, *, model: str, tune: str, extra: str = "") -> Path:
    """An experiment file on the planted CSV, random split with a validation part, runs in tmp_path/runs."""
    text = f"""
        [data]
        path = "{csv}"
        [split]
        protocol = "random"
        test = 0.2
        valid = 0.2
        [model]
        name = "{model}"
        {extra}
        [evaluation]
        metrics = ["ndcg@10", "recall@10"]
        [run]
        output_dir = "{tmp_path / "runs"}"
        [tune]
        {"" if "metric =" in tune else 'metric = "ndcg@10"'}
        {tune}
    """
    path = tmp_path / "experiment.toml"
    path.write_text(textwrap.dedent(text))
    return path


def storage_trials(out: Path, study: str) -> list:
    return optuna.load_study(study_name=study, storage=tuning.storage_url(out)).get_trials()


# ---------------------------------------------------------------------------------------------- the section
def test_search_space_uses_the_dotted_keys_of_set(tmp_path, planted_csv):
    text = """
        model.l2 = {log_uniform = [1, 1e4]}
        model.hidden_dims = {choice = [[600, 200], [200]]}
        model.dropout = {uniform = [0.1, 0.7], step = 0.1}
        model.batch_size = {int = [100, 500], step = 100}
        split.seed = {log_int = [1, 64]}
        direction = "maximize"
    """
    cfg = load_config(experiment(tmp_path, planted_csv, model="multidae", tune=text))
    settings = tuning.parse_tune(cfg)
    assert settings.metric == "ndcg@10" and settings.direction == "maximize" and settings.sampler == "tpe"
    space = settings.space
    assert list(space) == ["model.l2", "model.hidden_dims", "model.dropout", "model.batch_size", "split.seed"]
    assert (space["model.l2"].kind, space["model.l2"].log, space["model.l2"].low) == ("float", True, 1.0)
    assert space["model.hidden_dims"].choices == ([600, 200], [200])
    assert (space["model.batch_size"].kind, space["model.batch_size"].step) == ("int", 100)
    assert space["split.seed"].log and space["split.seed"].kind == "int"
    # a list choice travels through Optuna as text and comes back as the list
    trial = optuna.create_study().ask()
    assert space["model.hidden_dims"].suggest(trial) in ([600, 200], [200])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("model.l2 = {log_uniform = [0, 10]}", "tune.model.l2: log_uniform needs low > 0"),
        ("model.l2 = {uniform = [5, 1]}", "tune.model.l2: uniform needs [low, high] with low < high"),
        ("model.l2 = {normal = [0, 1]}", "tune.model.l2: give exactly one of"),
        ("model.l2 = 3", "tune.model.l2: a search dimension is a table"),
        ("run.seed = {int = [0, 3]}", "tune.run.seed: not a searchable key"),
        ("model.hidden_dims = {choice = []}", "tune.model.hidden_dims: choice needs a non-empty list"),
        ('sampler = "grid"\nmodel.l2 = {uniform = [1, 2]}', "tune.sampler: 'grid' is not one of tpe, random"),
        ('metric = "ndcg@5"\nmodel.l2 = {uniform = [1, 2]}', "tune.metric: 'ndcg@5' is not among"),
    ],
)
def test_a_bad_tune_section_is_one_line_naming_the_key(tmp_path, planted_csv, line, message):
    cfg = load_config(experiment(tmp_path, planted_csv, model="ease", tune=line))
    with pytest.raises(ConfigError) as info:
        tuning.parse_tune(cfg)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_an_unknown_searched_parameter_fails_before_any_trial(tmp_path, planted_csv):
    cfg = load_config(experiment(tmp_path, planted_csv, model="ease", tune="model.l3 = {uniform = [1, 2]}"))
    with pytest.raises(ConfigError, match=r"model\.l3"):
        tuning.tune(cfg, trials=2, study_name="bad")
    assert not (tmp_path / "runs" / "optuna.sqlite").exists()


def test_run_ignores_the_tune_section(tmp_path, planted_csv):
    cfg = load_config(experiment(tmp_path, planted_csv, model="ease", tune="model.l2 = {uniform = [1, 2]}"))
    result = pipeline.run_experiment(cfg)
    assert {"valid", "test"} <= set(result.metrics)


# ---------------------------------------------------------------------------------------------- the search
def test_search_writes_runs_tagged_with_the_study_and_touches_test_once(tmp_path, planted_csv, monkeypatch):
    parts: list[str] = []
    evaluate = pipeline.evaluate_part

    def counting(model, part, cfg, **kw):
        parts.append(kw.get("task", ""))
        return evaluate(model, part, cfg, **kw)

    monkeypatch.setattr(pipeline, "evaluate_part", counting)
    path = experiment(tmp_path, planted_csv, model="ease", tune="model.l2 = {log_uniform = [0.1, 1000]}")
    cfg = load_config(path)
    lines: list[str] = []
    result = tuning.tune(cfg, trials=3, study_name="s1", on_trial=lambda r: lines.append(r.line("ndcg@10")))
    assert parts.count("evaluating test") == 1, parts  # the final run of the best configuration only
    assert parts.count("evaluating valid") == 4  # three trials and the final run
    out = tmp_path / "runs"
    trial_runs = [out / f"s1-t{i:04d}" for i in range(3)]
    for run in trial_runs:
        assert json.loads((run / "config.json").read_text())["run"]["study"] == "s1"
        assert "test" not in json.loads((run / "metrics.json").read_text())
        assert not (run / "per_user_test.csv").exists() and (run / "per_user_valid.csv").exists()
    rows = {r["id"]: r for r in RunRegistry(out).list()}
    assert {f"s1-t{i:04d}" for i in range(3)} <= set(rows)
    assert all(rows[r.name]["study"] == "s1" and "valid_ndcg@10" in rows[r.name]["metrics"] for r in trial_runs)
    # progress: one line per trial with its value and the best so far
    assert len(lines) == 3 and all("valid ndcg@10 0." in x and "best 0." in x for x in lines)
    assert lines[0].startswith("trial 1/3") and lines[-1].startswith("trial 3/3")
    # the best configuration as TOML, ready for recforge run, and its one test evaluation
    best = result.best
    assert best is not None and result.best_toml == out / "s1.best.toml"
    tree = tomllib.loads(result.best_toml.read_text())
    assert tree["model"]["l2"] == pytest.approx(best["params"]["model.l2"]) and "tune" not in tree
    assert load_config(result.best_toml).model.params["l2"] == pytest.approx(best["params"]["model.l2"])
    final = json.loads((result.final_run / "metrics.json").read_text())
    assert final["valid"]["metrics"]["ndcg@10"] == pytest.approx(best["value"])  # the same training, again
    assert "test" in final and rows[result.final_run.name]["study"] == "s1"
    # asking again, with nothing new to run: no second look at the test part
    tuning.tune(cfg, trials=3, study_name="s1")
    assert parts.count("evaluating test") == 1


_KILLER = """
import os, signal, sys
from recforge.experiments import tuning
from recforge.experiments.config import load_config

calls = []
real = tuning.run_experiment

def run_experiment(cfg, **kw):
    calls.append(cfg.run.name)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # killed half-way, in the middle of the third trial
    return real(cfg, **kw)

tuning.run_experiment = run_experiment
tuning.tune(load_config(sys.argv[1]), trials=5, study_name="killed")
"""


def test_a_killed_search_continues_the_same_study(tmp_path, planted_csv):
    path = experiment(tmp_path, planted_csv, model="ease", tune="model.l2 = {log_uniform = [0.1, 1000]}")
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    out = tmp_path / "runs"
    before = storage_trials(out, "killed")
    assert [t.state.name for t in before] == ["COMPLETE", "COMPLETE", "RUNNING"]
    lines: list[str] = []
    notes: list[str] = []
    result = tuning.tune(load_config(path), trials=5, study_name="killed", on_trial=lambda r: lines.append(r.line("x")))
    after = storage_trials(out, "killed")
    # the same study: the two finished trials kept, the killed one failed and run again with its parameters
    assert [t.value for t in after[:2]] == [t.value for t in before[:2]]
    assert after[2].state.name == "FAIL"
    retry = [t for t in after if t.user_attrs.get("retry_of") == 2]
    assert len(retry) == 1 and retry[0].params == before[2].params and retry[0].state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in after) == 5 and len(lines) == 3
    assert lines[0].startswith("trial 3/5") and result.best is not None
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # the killed trial's folder was cleared
    # --trials adds trials to the same study
    tuning.tune(load_config(path), trials=6, study_name="killed", log=notes.append)
    assert sum(t.state.name == "COMPLETE" for t in storage_trials(out, "killed")) == 6
    assert any("continuing with 5 finished trial(s)" in n for n in notes)


def test_an_interrupted_trial_is_run_again(tmp_path, planted_csv, monkeypatch):
    path = experiment(tmp_path, planted_csv, model="ease", tune="model.l2 = {log_uniform = [0.1, 1000]}")
    real, calls = tuning.run_experiment, []

    def interrupted(cfg, **kw):
        calls.append(cfg.run.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cfg, **kw)

    monkeypatch.setattr(tuning, "run_experiment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune(load_config(path), trials=3, study_name="ctrl-c")
    monkeypatch.setattr(tuning, "run_experiment", real)
    tuning.tune(load_config(path), trials=3, study_name="ctrl-c")
    trials = storage_trials(tmp_path / "runs", "ctrl-c")
    assert [t.state.name for t in trials].count("COMPLETE") == 3
    assert [t.user_attrs.get("retry_of") for t in trials].count(1) == 1


def test_pruned_trials_stop_with_fewer_epochs(tmp_path, planted_csv):
    """Two good learning rates first (enqueued), then hopeless ones: the median pruner stops those early."""
    tune = """
        startup_trials = 2
        warmup_epochs = 1
        model.learning_rate = {choice = [0.01, 1e-7]}
    """
    extra = "max_epochs = 8\npatience = 8\nhidden_dims = [32]\nbatch_size = 64"
    cfg = load_config(experiment(tmp_path, planted_csv, model="multidae", tune=tune, extra=extra))
    out = tmp_path / "runs"
    out.mkdir()
    study = optuna.create_study(study_name="prune", storage=tuning.storage_url(out), direction="maximize")
    for lr in (0.01, 0.01, 1e-7, 1e-7):
        study.enqueue_trial({"model.learning_rate": lr})
    result = tuning.tune(cfg, trials=4, study_name="prune", final=False)
    states = {r["number"]: r for r in result.trials}
    assert [states[i]["state"] for i in range(4)] == ["complete", "complete", "pruned", "pruned"]
    full = [len(pd.read_csv(out / f"prune-t{i:04d}" / "training_log.csv")) for i in (0, 1)]
    pruned = [len(pd.read_csv(out / f"prune-t{i:04d}" / "training_log.csv")) for i in (2, 3)]
    assert full == [8, 8] and max(pruned) < min(full)
    assert [states[i]["epochs"] for i in (2, 3)] == pruned


def test_pruning_callback_stops_the_trainer():
    class Trial:
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= 2

    class FakeTrainer:
        epoch, should_stop = 1, False

    trial, trainer = Trial(), FakeTrainer()
    callback = tuning.PruningCallback(trial, "valid_ndcg@10")
    callback.on_epoch_end(trainer, {"valid_ndcg@10": 0.1})
    assert not trainer.should_stop
    callback.on_epoch_end(trainer, {"valid_ndcg@10": 0.2})
    assert trainer.should_stop and callback.pruned_at == 2
    other = tuning.PruningCallback(trial, "valid_rmse")
    other.on_epoch_end(trainer, {"valid_ndcg@10": 0.2})
    assert other.missing


def test_best_toml_round_trips(tmp_path):
    tree = {
        "data": {"dataset": "ml-100k"},
        "split": {"protocol": "liang2018", "heldout_users": 100},
        "model": {"name": "multivae", "hidden_dims": [600, 200], "dropout": 0.5, "note": 'a "quoted" \\ text'},
        "run": {"output_dir": "runs", "seed": 3},
    }
    text = tuning.to_toml(tree, "header line\nsecond")
    assert text.startswith("# header line\n# second\n")
    assert tomllib.loads(text) == tree
    ExperimentConfig.model_validate({k: v for k, v in tomllib.loads(text).items()} | {"model": {"name": "ease"}})


def test_tune_command_prints_a_line_per_trial(tmp_path, planted_csv, monkeypatch, capsys):
    path = experiment(tmp_path, planted_csv, model="ease", tune="model.l2 = {log_uniform = [0.1, 1000]}")
    code, out, err = cli(monkeypatch, capsys, "tune", str(path), "--trials", "2", "--study", "cli")
    assert code == 0, err
    trial_lines = [x for x in err.splitlines() if x.startswith("trial ")]
    assert len(trial_lines) == 2 and all("valid ndcg@10" in x and "best" in x for x in trial_lines)
    assert "[I " not in err  # Optuna's own log lines are off
    assert "cli.best.toml" in out and "test of the best configuration" in out
    code, out, err = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(tmp_path / "runs"), "--study", "cli")
    assert code == 0 and "cli-t0000" in out and "cli-t0001" in out and "cli-best" in out
    code, _, err = cli(monkeypatch, capsys, "tune", str(path), "--trials", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1
