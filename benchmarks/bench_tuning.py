"""Hyper-parameter search and paired comparison on ML-100K, liang2018 protocol (100 + 100 held-out users).

    python benchmarks/bench_tuning.py all               # the three stages below, then the summary
    python benchmarks/bench_tuning.py ease --trials 30  # one stage

Stages (each in this process, its runs and Optuna study under benchmarks/out/tuning/):
    ease      `recforge tune` of EASE's l2 (log-uniform in [1, 1e4]), TPE: wall time, best validation NDCG@100,
              test metrics of the chosen configuration (its one test evaluation)
    multivae  the same for Mult-VAE (learning rate, dropout, hidden layers, KL cap), TPE + median pruning,
              at most 100 epochs a trial: wall time, trials pruned, epochs trained
    compare   EASE (the tuned l2), Mult-VAE (the tuned configuration), Mult-DAE and item-kNN (defaults) on the
              same split, compared per user with EASE as the reference (`recforge compare --markdown`)

RECFORGE_DATA must point at the folder holding ml-100k/. Results: JSON lines in benchmarks/out/ and a Markdown
summary on stdout (what benchmarks/RESULTS.md shows).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from common import machine, peak_rss_gb

OUT = Path(__file__).resolve().parent / "out"
RUNS = OUT / "tuning"

BASE = {
    "data": {"dataset": "ml-100k"},
    "split": {"protocol": "liang2018", "heldout_users": 100},
    "run": {"output_dir": str(RUNS), "seed": 0},
}
SPACES = {
    "ease": {
        "model": {"name": "ease"},
        "tune": {"metric": "ndcg@100", "model": {"l2": {"log_uniform": [1.0, 1e4]}}},
    },
    "multivae": {
        "model": {"name": "multivae", "max_epochs": 100, "patience": 10},
        "tune": {
            "metric": "ndcg@100",
            "startup_trials": 5,
            "warmup_epochs": 5,
            "model": {
                "learning_rate": {"log_uniform": [3e-4, 1e-2]},
                "dropout": {"uniform": [0.2, 0.7]},
                "hidden_dims": {"choice": [[600, 200], [200, 100], [200]]},
                "beta": {"uniform": [0.0, 0.4]},
            },
        },
    },
}


def _config(name: str) -> object:
    from recforge.experiments.config import ExperimentConfig

    return ExperimentConfig.model_validate({**BASE, **SPACES[name]})


def stage_tune(name: str, trials: int) -> dict:
    from recforge.experiments.tuning import quiet_optuna, tune

    quiet_optuna()
    study = f"bench-{name}"
    lines: list[str] = []

    def on_trial(report: object) -> None:
        line = report.line("ndcg@100")  # type: ignore[attr-defined]
        lines.append(line)
        print(line, flush=True)

    t0 = time.perf_counter()
    result = tune(_config(name), trials=trials, study_name=study, on_trial=on_trial, log=print)  # type: ignore[arg-type]
    seconds = time.perf_counter() - t0
    states = [r["state"] for r in result.trials]
    epochs = [r["epochs"] for r in result.trials if r["epochs"] is not None]
    assert result.best is not None and result.final_metrics is not None
    return {
        "stage": name,
        "trials": len(result.trials),
        "complete": states.count("complete"),
        "pruned": states.count("pruned"),
        "failed": states.count("failed"),
        "seconds": seconds,
        "epochs_total": sum(epochs),
        "best_trial": result.best["number"],
        "best_params": result.best["params"],
        "best_valid_ndcg@100": result.best["value"],
        "test": result.final_metrics["test"]["metrics"],
        "final_run": str(result.final_run),
        "best_toml": str(result.best_toml),
        "peak_rss_gb": peak_rss_gb(),
    }


def stage_compare() -> dict:
    from recforge.experiments.compare import compare_runs
    from recforge.experiments.config import ExperimentConfig
    from recforge.experiments.pipeline import run_experiment
    from recforge.experiments.runs import RunRegistry

    best = {n: json.loads((OUT / f"bench_tuning-{n}.json").read_text()) for n in ("ease", "multivae")}
    runs = [Path(best["ease"]["final_run"]), Path(best["multivae"]["final_run"])]
    for name, params in (("multidae", {"max_epochs": 200}), ("itemknn", {})):
        run_name = f"bench-{name}"
        if (RUNS / run_name).exists():
            RunRegistry(RUNS).delete(run_name)
        cfg = ExperimentConfig.model_validate(
            {**BASE, "model": {"name": name, **params}, "run": {**BASE["run"], "name": run_name}}
        )
        runs.append(run_experiment(cfg).run_dir)
    comparison = compare_runs(runs)
    return {"stage": "compare", "markdown": comparison.to_markdown(), "comparison": comparison.to_json()}


def summary(results: dict[str, dict]) -> str:
    out = [
        "| search | trials: complete / pruned | wall time | epochs trained | best valid NDCG@100 | chosen "
        "| test NDCG@100 | test Recall@20 | test Recall@50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("ease", "multivae"):
        r = results.get(name)
        if r is None:
            continue
        chosen = ", ".join(
            f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
            for k, v in r["best_params"].items()
        )
        t = r["test"]
        out.append(
            f"| {name} | {r['trials']}: {r['complete']} / {r['pruned']} | {r['seconds']:.0f} s | "
            f"{r['epochs_total'] or '-'} | {r['best_valid_ndcg@100']:.4f} | {chosen} | {t['ndcg@100']:.4f} | "
            f"{t['recall@20']:.4f} | {t['recall@50']:.4f} |"
        )
    if "compare" in results:
        out += ["", results["compare"]["markdown"]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["all", "ease", "multivae", "compare", "summary"])
    parser.add_argument("--trials", type=int, default=None, help="trials of a search (default: 30 EASE, 20 VAE)")
    parser.add_argument("--fresh", action="store_true", help="remove the earlier study and runs first")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.fresh and RUNS.exists():
        shutil.rmtree(RUNS)
    OUT.mkdir(parents=True, exist_ok=True)
    stages = ["ease", "multivae", "compare"] if args.stage == "all" else [args.stage]
    results: dict[str, dict] = {}
    for stage in stages:
        if stage == "summary":
            continue
        trials = args.trials or (30 if stage == "ease" else 20)
        r = stage_compare() if stage == "compare" else stage_tune(stage, trials)
        r["machine"] = machine()
        (OUT / f"bench_tuning-{stage}.json").write_text(json.dumps(r, indent=2, default=str))
        results[stage] = r
    for stage in ("ease", "multivae", "compare"):
        path = OUT / f"bench_tuning-{stage}.json"
        if stage not in results and path.exists():
            results[stage] = json.loads(path.read_text())
    print(summary(results))


if __name__ == "__main__":
    main()
