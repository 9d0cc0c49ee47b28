"""The explicit-feedback family (CoFiMF, ClassicMF, BiasedMF, GMF/MLP/NeuMF, HybridNeuMF): accuracy and epoch times.

Each figure comes from a fresh process; the driver prints one JSON line per figure, writes them all to
``benchmarks/out/bench_explicit-<date>.json`` and prints a Markdown summary to paste into RESULTS.md.

    RECFORGE_DATA=/path/to/data python benchmarks/bench_explicit.py all              # everything
    python benchmarks/bench_explicit.py folds biasedmf                               # one figure, here
    python benchmarks/bench_explicit.py all --skip-20m                               # without the slow part

Stages (every model with its default hyper-parameters unless said; ``seed=0``, on the CPU):
    folds MODEL   ML-100K official folds u1-u5 (``read_movielens_100k_fold`` + ``predefined_split``); 10% of each
                  training fold (random, seed 0) is carved out for early stopping on the validation RMSE, and the
                  test part is scored once, from the best validation checkpoint: RMSE/MAE per fold, mean and spread.
                  MODEL: cofimf, classicmf, biasedmf, gmf, mlp, neumf (loss="mse"), and classicmf-gibbs,
                  biasedmf-gibbs (``inference="gibbs"``, 10 factors, 200 sweeps, burn-in 50: no early stopping,
                  so they train on the whole training fold). For biasedmf the figure also holds a refit on the
                  whole training fold for the best number of epochs (for reference only).
    mls MODEL     ml-latest-small, random 90/10 (seed 0), 10% of the 90 carved out (seed 0) for early stopping
                  (the -gibbs models train on the whole 90).
    loo MODEL     ML-100K leave-one-out by timestamp (He et al. 2017): last rating of each user to test, the one
                  before to validation, each with 99 sampled negatives (seed 0); HR@10 / NDCG@10 among the 100.
                  MODEL: gmf, mlp, neumf, neumf-pre (NeuMF from the pretrained GMF and MLP, alpha 0.5, Adam at
                  1e-4), dot (GMF with 64 factors: a learned-weight dot product) -- all loss="bce", 4 negatives,
                  at most 50 epochs, early stopping on validation NDCG@10 (patience 5) -- and biasedmf (trained on
                  the ratings, early stopping on validation RMSE, ranking by predicted rating).
    hybrid EMB    HybridNeuMF on ML-100K u1-u5 (same protocol as ``folds``) with item embeddings EMB: genre (the 18
                  u.item genre flags), itemfactors (16 leading eigenvectors of the training item co-occurrence
                  X^T X, scaled by sqrt(eigenvalue)), random (16 standard normal values per item), none (plain
                  NeuMF with the same settings).
    epoch SIZE [DIM [gibbs]]  BiasedMF (DIM factors, default 128; Adam) seconds per training epoch, no validation,
                  3 epochs: ml100k (ML-100K u.data, batch 1024, the default) or 20m (synthetic, 138,493 users x 26,744
                  items x 20,000,263 ratings drawn with the ML-20M rating distribution; batch 65,536); with
                  ``gibbs``: seconds per Gibbs sweep of BiasedMF(inference="gibbs").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import epoch_timer, machine, markdown_table, peak_rss_gb, run_in_fresh_process

OUT = Path(__file__).resolve().parent / "out"
FOLDS = ("u1", "u2", "u3", "u4", "u5")
RATING_MODELS = ("cofimf", "classicmf", "biasedmf", "classicmf-gibbs", "biasedmf-gibbs", "gmf", "mlp", "neumf")
#: the "-gibbs" models: posterior sampling (BPMF), settings chosen on a 90/10 split of u1.base only
GIBBS = {"inference": "gibbs", "embedding_dim": 10, "max_epochs": 200, "burn_in": 50}
LOO_MODELS = ("gmf", "mlp", "neumf", "neumf-pre", "dot", "biasedmf")
EMBEDDINGS = ("genre", "itemfactors", "random", "none")


def data_dir() -> Path:
    root = os.environ.get("RECFORGE_DATA")
    if not root:
        raise SystemExit("set RECFORGE_DATA to the folder holding ml-100k/ and ml-latest-small/")
    return Path(root)


def rating_model(name: str, **params: Any) -> Any:
    from recforge.models.cofi import CoFiMF
    from recforge.models.mf import BiasedMF, ClassicMF
    from recforge.models.ncf import GMF, MLP, NeuMF

    classes = {"cofimf": CoFiMF, "classicmf": ClassicMF, "biasedmf": BiasedMF, "gmf": GMF, "mlp": MLP, "neumf": NeuMF}
    if name.endswith("-gibbs"):
        return classes[name.removesuffix("-gibbs")](seed=0, **{**GIBBS, **params})
    return classes[name](seed=0, **params)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def ml100k_fold(fold: str) -> tuple[Any, Any]:
    """(official split of ``fold``, inner split: 90% train / 10% validation of its training part)."""
    from recforge.data.readers import read_movielens_100k_fold
    from recforge.data.splits import predefined_split, random_split

    train, test = read_movielens_100k_fold(data_dir() / "ml-100k", fold)
    split = predefined_split(train, test)
    return split, random_split(split.train, test=0.1, seed=0)


def fit_and_test(model: Any, inner: Any, test_part: Any, whole_train: Any) -> dict[str, Any]:
    """Fit on ``inner.train`` with early stopping on ``inner.test``, or, for Gibbs sampling (no early stopping),
    on the whole training part; score ``test_part`` once."""
    from recforge.evaluation.evaluate import evaluate_ratings
    from recforge.metrics import MAE, RMSE

    t0 = time.perf_counter()
    if getattr(model, "inference", "map") == "gibbs":
        model.fit(whole_train)
    else:
        model.fit(inner.train, valid=inner.test)
    fit_s = time.perf_counter() - t0
    log = model.training_log_
    metrics = evaluate_ratings(model, test_part, [RMSE(), MAE()]).metrics
    return {
        "rmse": metrics["rmse"],
        "mae": metrics["mae"],
        "epochs": len(log),
        "best_epoch": int(log[-1].get("best_epoch", len(log) - 1)),
        "valid_rmse": min((e["valid_rmse"] for e in log if "valid_rmse" in e), default=None),
        "fit_s": fit_s,
    }


# ---------------------------------------------------------------------- (a) ML-100K folds
def stage_folds(name: str) -> dict:
    from recforge.evaluation.evaluate import evaluate_ratings
    from recforge.metrics import MAE, RMSE

    per_fold = {}
    for fold in FOLDS:
        split, inner = ml100k_fold(fold)
        model = rating_model(name)
        result = fit_and_test(model, inner, split.test, split.train)
        if name == "biasedmf":  # reference only: the same model refit on the whole fold for the best epoch count
            refit = rating_model(name, max_epochs=result["best_epoch"] + 1).fit(split.train)
            m = evaluate_ratings(refit, split.test, [RMSE(), MAE()]).metrics
            result.update(refit_rmse=m["rmse"], refit_mae=m["mae"])
        per_fold[fold] = result
    out: dict[str, Any] = {"model": name, "params": rating_model(name).get_params(), "folds": per_fold}
    for key in ("rmse", "mae", "refit_rmse", "refit_mae"):
        if key in per_fold["u1"]:
            out[key] = summary([r[key] for r in per_fold.values()])
    out["fit_s_total"] = sum(r["fit_s"] for r in per_fold.values())
    return out


# ---------------------------------------------------------------------- (b) ml-latest-small
def stage_mls(name: str) -> dict:
    from recforge.data.interactions import Interactions
    from recforge.data.readers import read_movielens_csv
    from recforge.data.splits import random_split

    raw = read_movielens_csv(data_dir() / "ml-latest-small")
    data = Interactions.from_frame(raw.interactions)
    outer = random_split(data, test=0.1, seed=0)
    inner = random_split(outer.train, test=0.1, seed=0)
    model = rating_model(name)
    result = fit_and_test(model, inner, outer.test, outer.train)
    return {"model": name, "params": model.get_params(), "ratings": len(data), **result}


# ---------------------------------------------------------------------- (c) leave-one-out, 99 negatives
def stage_loo(name: str) -> dict:
    from recforge.data.interactions import Interactions
    from recforge.data.readers import read_movielens_100k
    from recforge.data.splits import leave_last_out
    from recforge.evaluation.evaluate import evaluate_sampled
    from recforge.models.ncf import NeuMF

    raw = read_movielens_100k(data_dir() / "ml-100k")
    data = Interactions.from_frame(raw.interactions)
    split = leave_last_out(data, n_valid=1, n_test=1, n_negatives=99, seed=0)
    bce = {"loss": "bce", "n_negatives": 4, "patience": 5, "max_epochs": 50}

    def fit(model: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        model.fit(split.train, valid=split.valid)
        return model, time.perf_counter() - t0

    fit_s = 0.0
    if name == "neumf-pre":
        gmf, t_gmf = fit(rating_model("gmf", **bce))
        mlp, t_mlp = fit(rating_model("mlp", **bce))
        model = NeuMF.from_pretrained(gmf, mlp, alpha=0.5, learning_rate=1e-4, seed=0, patience=5)
        model.set_params(max_epochs=50)
        model, fit_s = fit(model)
        fit_s += t_gmf + t_mlp
        parts = {
            f"pretrained_{n}": evaluate_sampled(m, split.test, ks=(10,)).metrics
            for n, m in (("gmf", gmf), ("mlp", mlp))
        }
    else:
        if name == "biasedmf":
            model = rating_model("biasedmf")
        elif name == "dot":
            model = rating_model("gmf", embedding_dim=64, **bce)
        else:
            model = rating_model(name, **bce)
        model, fit_s = fit(model)
        parts = {}
    res = evaluate_sampled(model, split.test, ks=(10,))
    log = model.training_log_
    return {
        "model": name,
        "params": model.get_params(),
        "test_users": res.n_users,
        **{f"test_{k}": v for k, v in res.metrics.items()},
        **parts,
        "epochs": len(log),
        "best_epoch": int(log[-1].get("best_epoch", len(log) - 1)),
        "fit_s": fit_s,
    }


# ---------------------------------------------------------------------- (d) HybridNeuMF embeddings
def write_embeddings(kind: str, train: Any, path: Path) -> Path:
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from recforge.data.readers import read_movielens_100k

    ids = train.items.ids
    if kind == "genre":
        info = read_movielens_100k(data_dir() / "ml-100k").item_info
        genres = sorted({g for gs in info["genres"] for g in gs})
        flags = np.array([[g in set(gs) for g in genres] for gs in info["genres"]], dtype=np.float32)
        frame = pd.DataFrame(flags, columns=genres).assign(item=info.index.to_numpy())
    elif kind == "itemfactors":
        x = sp.csr_array(train.binary)
        gram = (x.T @ x).toarray().astype(np.float64)
        values, vectors = np.linalg.eigh(gram)
        top = np.argsort(values)[::-1][:16]
        factors = vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))
        factors /= factors.std() or 1.0
        frame = pd.DataFrame(factors.astype(np.float32), columns=[f"f{k}" for k in range(16)]).assign(item=ids)
    elif kind == "random":
        rng = np.random.default_rng(0)
        frame = pd.DataFrame(rng.standard_normal((len(ids), 16)).astype(np.float32)).assign(item=ids)
        frame.columns = [*(f"r{k}" for k in range(16)), "item"]
    else:
        raise ValueError(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def stage_hybrid(kind: str) -> dict:
    from recforge.models.ncf import HybridNeuMF

    per_fold = {}
    coverage = []
    for fold in FOLDS:
        split, inner = ml100k_fold(fold)
        if kind == "none":
            model = rating_model("neumf")
        else:
            path = write_embeddings(kind, inner.train, OUT / "embeddings" / f"{kind}-{fold}.csv")
            model = HybridNeuMF(item_embeddings=str(path), seed=0)
        per_fold[fold] = fit_and_test(model, inner, split.test)
        coverage.append(getattr(model, "item_embedding_coverage_", float("nan")))
    return {
        "embeddings": kind,
        "folds": per_fold,
        "rmse": summary([r["rmse"] for r in per_fold.values()]),
        "mae": summary([r["mae"] for r in per_fold.values()]),
        "item_coverage": statistics.fmean(coverage),
    }


# ---------------------------------------------------------------------- (e) epoch time
def synthetic_ratings(n_users: int, n_items: int, n_ratings: int) -> Any:
    import numpy as np
    from scipy.special import ndtri

    from recforge.data.synthetic import ML20M_RATING_DISTRIBUTION, make_implicit

    data = make_implicit(n_users, n_items, n_ratings, seed=0, timestamps=False)
    rng = np.random.default_rng(1)
    score = (
        math.sqrt(0.3) * rng.standard_normal(n_users)[data.user_idx]
        + math.sqrt(0.2) * rng.standard_normal(n_items)[data.item_idx]
        + math.sqrt(0.5) * rng.standard_normal(len(data))
    )
    labels = np.array(list(ML20M_RATING_DISTRIBUTION), dtype=np.float32)
    cuts = ndtri(np.cumsum(list(ML20M_RATING_DISTRIBUTION.values()))[:-1])
    return data.with_values(labels[np.searchsorted(cuts, score)], explicit=True)


def stage_epoch(size: str, dim: str = "128", inference: str = "map") -> dict:
    import torch

    from recforge.data.interactions import Interactions
    from recforge.data.readers import read_movielens_100k
    from recforge.training.options import TrainingOptions

    t0 = time.perf_counter()
    if size == "ml100k":
        data = Interactions.from_frame(read_movielens_100k(data_dir() / "ml-100k").interactions)
        batch_size = 1024
    else:
        data = synthetic_ratings(138_493, 26_744, 20_000_263)
        batch_size = 65_536
    gen_s = time.perf_counter() - t0
    if inference == "gibbs":  # three sweeps, all kept
        model = rating_model("biasedmf-gibbs", max_epochs=3, burn_in=0, embedding_dim=int(dim))
    else:
        model = rating_model("biasedmf", batch_size=batch_size, max_epochs=3, embedding_dim=int(dim))
    timer = epoch_timer()
    t0 = time.perf_counter()
    model.fit(data, options=TrainingOptions(callbacks=[timer]))
    fit_s = time.perf_counter() - t0
    return {
        "size": size,
        "inference": inference,
        "users": data.n_users,
        "items": data.n_items,
        "ratings": len(data),
        "batch_size": batch_size,
        "embedding_dim": model.embedding_dim,
        "batches_per_epoch": math.ceil(len(data) / batch_size),
        "epoch_s": timer.seconds,
        "epoch_s_median": statistics.median(timer.seconds),
        "train_log_last": model.training_log_[-1],
        "data_s": gen_s,
        "fit_s": fit_s,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------- driver
def run_stage(args: list[str]) -> dict:
    stage = args[0]
    funcs = {"folds": stage_folds, "mls": stage_mls, "loo": stage_loo, "hybrid": stage_hybrid, "epoch": stage_epoch}
    return funcs[stage](*args[1:])


def _ms(s: dict[str, float]) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f} ({s['min']:.4f}-{s['max']:.4f})"


def markdown(results: list[dict], info: dict, command: str) -> str:
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in info["lscpu"] if ":" in line}
    cpu = f"{fields.get('Model name', '?')}, {fields.get('CPU(s)', '?')} CPUs, python {info['python']}"
    lines = [f"### Explicit-feedback family ({info['date']})", "", f"Command: `{command}`  ", f"Machine: {cpu}", ""]
    by_stage: dict[str, list[dict]] = {}
    for r in results:
        by_stage.setdefault(r["stage"], []).append(r)
    if "folds" in by_stage:
        rows = []
        for r in by_stage["folds"]:
            rows.append(
                [r["model"], _ms(r["rmse"]), _ms(r["mae"]), str(r["folds"]["u1"]["epochs"]), f"{r['fit_s_total']:.0f}"]
            )
            if "refit_rmse" in r:
                refit = f"{r['model']} refit on the whole fold for the best epoch count (reference)"
                rows.append([refit, _ms(r["refit_rmse"]), _ms(r["refit_mae"]), "-", "-"])
        lines += markdown_table(
            "(a) ML-100K official folds u1-u5, 10% of each training fold for early stopping, test from the best "
            "validation checkpoint; -gibbs models on the whole fold (mean ± std (min-max) over the 5 folds):",
            ["model", "RMSE", "MAE", "epochs (u1)", "fit s (5 folds)"],
            rows,
        )
    if "mls" in by_stage:
        lines += markdown_table(
            "(b) ml-latest-small, random 90/10 (seed 0), 10% of the 90 for early stopping (-gibbs: all the 90):",
            ["model", "RMSE", "MAE", "epochs", "fit (s)"],
            [
                [r["model"], f"{r['rmse']:.4f}", f"{r['mae']:.4f}", str(r["epochs"]), f"{r['fit_s']:.0f}"]
                for r in by_stage["mls"]
            ],
        )
    if "loo" in by_stage:
        lines += markdown_table(
            "(c) ML-100K leave-one-out (last rating to test, previous to validation), 99 sampled negatives:",
            ["model", "HR@10", "NDCG@10", "epochs", "fit (s)"],
            [
                [
                    r["model"],
                    f"{r['test_hr@10']:.4f}",
                    f"{r['test_ndcg@10']:.4f}",
                    str(r["epochs"]),
                    f"{r['fit_s']:.0f}",
                ]
                for r in by_stage["loo"]
            ],
        )
    if "hybrid" in by_stage:
        lines += markdown_table(
            "(d) HybridNeuMF on ML-100K u1-u5 (protocol of (a)), by item embedding:",
            ["item embeddings", "RMSE", "MAE"],
            [[r["embeddings"], _ms(r["rmse"]), _ms(r["mae"])] for r in by_stage["hybrid"]],
        )
    if "epoch" in by_stage:
        lines += markdown_table(
            "(e) BiasedMF seconds per training epoch (Adam) or Gibbs sweep on this CPU:",
            [
                *("data", "inference", "ratings", "factors", "batch", "batches"),
                *("s/epoch (median of 3)", "threads", "load avg"),
            ],
            [
                [
                    r["size"],
                    r.get("inference", "map"),
                    f"{r['ratings']:,}",
                    str(r["embedding_dim"]),
                    f"{r['batch_size']:,}",
                    str(r["batches_per_epoch"]),
                    f"{r['epoch_s_median']:.2f}",
                    str(r["threads"]),
                    f"{r['load_avg_1min_start']:.1f}-{r['load_avg_1min_end']:.1f}",
                ]
                for r in by_stage["epoch"]
            ],
        )
    return "\n".join(lines).rstrip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "stage", nargs="+", help="all | report FILE... | folds M | mls M | loo M | hybrid EMB | epoch SIZE [DIM]"
    )
    parser.add_argument("--only", default=None, help="with all: comma-separated stage names to run (e.g. loo,epoch)")
    parser.add_argument("--json", action="store_true", help="print the stage's result as one JSON line")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--epoch-threads", type=int, default=None, help="with all: threads of the epoch-time stages")
    parser.add_argument("--skip-20m", action="store_true", help="with all: leave out the 20M-rating epoch time")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stage[0] == "report":  # merge result files (later figures replace earlier ones) and print Markdown
        merged: dict[str, dict] = {}
        infos = []
        for name in args.stage[1:]:
            data = json.loads(Path(name).read_text())
            infos.append(data["machine"])
            for r in data["results"]:
                key = (
                    r["stage"] + ":" + str(r.get("model", r.get("embeddings", (r.get("size"), r.get("embedding_dim")))))
                )
                merged[key] = r
        order = {s: i for i, s in enumerate(("folds", "mls", "loo", "hybrid", "epoch"))}
        results = sorted(merged.values(), key=lambda r: order[r["stage"]])  # stable: plan order within a stage
        command = "python benchmarks/bench_explicit.py report " + " ".join(args.stage[1:])
        print(markdown(results, {**infos[-1], "date": " / ".join(i["date"] for i in infos)}, command))
        return
    if args.stage[0] != "all":
        load0 = os.getloadavg()[0]
        result = {"stage": args.stage[0], **run_stage(args.stage)}
        result.update(peak_rss_gb=peak_rss_gb(), load_avg_1min_start=load0, load_avg_1min_end=os.getloadavg()[0])
        print(json.dumps(result))
        return
    OUT.mkdir(exist_ok=True)
    info = machine()
    plan = (
        [["folds", m] for m in RATING_MODELS]
        + [["mls", m] for m in RATING_MODELS]
        + [["loo", m] for m in LOO_MODELS]
        + [["hybrid", e] for e in EMBEDDINGS]
        + [["epoch", "ml100k"]]
    )
    if not args.skip_20m:
        plan += [["epoch", "20m"], ["epoch", "20m", "64"]]
    if args.only:
        plan = [stage for stage in plan if stage[0] in args.only.split(",")]
    results = []
    path = OUT / f"bench_explicit-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for stage in plan:
        threads = args.epoch_threads if stage[0] == "epoch" and args.epoch_threads else args.threads
        result = run_in_fresh_process(__file__, stage, threads)
        print(json.dumps(result), flush=True)
        results.append(result)
        path.write_text(json.dumps({"machine": info, "results": results}, indent=2))  # partial results survive
    command = "python benchmarks/bench_explicit.py " + " ".join(sys.argv[1:])
    print(markdown(results, info, command))
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    main()
