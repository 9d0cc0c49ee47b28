"""recforge's iALS beside the ``implicit`` package's AlternatingLeastSquares: accuracy on real data, speed at ML-20M
size. ``implicit`` is a benchmark dependency only (``pip install implicit``), never one of recforge's.

Each figure comes from a fresh process; the driver prints one JSON line per figure.

    RECFORGE_DATA=/path/to/data python benchmarks/bench_ials.py all                  # everything
    python benchmarks/bench_ials.py accuracy lastfm-2k bm25                          # one figure, here
    python benchmarks/bench_ials.py all --skip-speed                                 # without the ML-20M stage

Stages:
    accuracy DATASET WEIGHTING  liang2018 with 100 + 100 held-out users on ``ml-100k`` (ratings > 3.5) or
                           ``lastfm-2k`` (play counts > 0, ``min_rating=None``), the raw values (ratings, play
                           counts) put back on every part; WEIGHTING ``binary`` (every value 1) or ``bm25``
                           (``recforge.data.weighting`` BM25, K1 = 100, B = 0.8, the items as the documents as
                           in implicit's Last.fm example; test and validation histories weighted with the
                           training statistics). Both models get the same weighted matrices; each is tuned on
                           validation NDCG@100 over a grid (iALS: embedding_dim x alpha0 x l2 x alpha0_pairs x solver,
                           the solver exact or 3 CG steps per row as implicit, frequency-scaled regularisation
                           nu = 1, at most 30 sweeps with early stopping; implicit: factors x
                           regularization x alpha, 15 iterations of 3 CG steps); alpha0 goes up to 30
                           because BM25 confidences are in the hundreds (the unobserved weight is relative to
                           them); new users are folded in by each library's
                           own solve (recforge ``score(history, None)``, implicit ``recalculate_user``). Prints
                           test NDCG@100, Recall@20, Recall@50 and the fit time of the chosen setting.
    speed                  ``make_ml20m_like(seed=0)`` split by ``heldout_users_split`` (10,000 + 10,000 users),
                           64 factors, CPU, 3 conjugate-gradient steps per row for both: seconds per iteration
                           (5 rounds of 2 iterations each, the two libraries alternating in one process, so
                           that a load from elsewhere falls on both; implicit with its BLAS pool at 1 thread as
                           it asks) and seconds to fold in the 10,000 test users.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import epoch_timer, machine, peak_rss_gb, run_in_fresh_process

OUT = Path(__file__).resolve().parent / "out"
METRICS = ("ndcg@100", "recall@20", "recall@50")
IALS_GRID = {
    "embedding_dim": [64, 128],
    "alpha0": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
    "l2": [0.003, 0.01, 0.03, 0.1],
    "alpha0_pairs": ["all", "unobserved"],
    "solver": ["cg", "cholesky"],
}
IMPLICIT_GRID = {"factors": [64, 128], "regularization": [0.01, 0.1, 1.0, 10.0, 100.0], "alpha": [1.0, 10.0, 40.0]}


def load_split(dataset: str) -> Any:
    """liang2018 (100 + 100 held-out users) with the raw values (ratings, play counts) back on every part."""
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018

    raw = load_dataset(dataset, download=False).interactions
    value_col = "weight" if dataset == "lastfm-2k" else "rating"
    split = liang2018(raw, heldout_users=100, **({"min_rating": None} if dataset == "lastfm-2k" else {}))
    lookup = raw.groupby(["user", "item"])[value_col].sum()

    def with_values(part: Any) -> Any:
        frame = part.to_frame(raw_ids=True)
        values = lookup.reindex(list(zip(frame["user"], frame["item"], strict=True))).to_numpy(dtype="float32")
        assert not (values != values).any(), "an event without its raw value"
        return part.with_values(values, explicit=False)

    def eval_part(part: Any) -> Any:
        return dataclasses.replace(part, history=with_values(part.history), target=with_values(part.target))

    return dataclasses.replace(
        split, train=with_values(split.train), valid=eval_part(split.valid), test=eval_part(split.test)
    )


class ImplicitScorer:
    """implicit's ALS as a recforge scorer: new users folded in by ``recalculate_user`` on their weighted rows."""

    def __init__(self, model: Any, weighting: Any):
        self.model, self.weighting = model, weighting

    def score(self, history: Any, users: Any = None) -> Any:
        import numpy as np
        import scipy.sparse as sp
        import torch

        rows = sp.csr_matrix(self.weighting.transform(history))
        factors = self.model.recalculate_user(np.arange(rows.shape[0]), rows)
        return torch.from_numpy(np.asarray(factors @ self.model.item_factors.T, dtype=np.float32))


def fit_implicit(train: Any, weighting: Any, params: dict[str, Any]) -> tuple[Any, float]:
    import scipy.sparse as sp
    import torch
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    matrix = sp.csr_matrix(weighting.transform(train.matrix))
    model = AlternatingLeastSquares(**params, iterations=15, random_state=0, num_threads=torch.get_num_threads())
    with threadpool_limits(1, "blas"):
        t0 = time.perf_counter()
        model.fit(matrix, show_progress=False)
        seconds = time.perf_counter() - t0
    return ImplicitScorer(model, weighting), seconds


def stage_accuracy(dataset: str, weighting: str) -> dict:
    from threadpoolctl import threadpool_limits

    from recforge.data.weighting import fit_weighting
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Recall
    from recforge.models.ials import IALS

    split = load_split(dataset)
    metrics = [NDCG(100), Recall(20), Recall(50)]
    scheme_params = {"k1": 100.0, "b": 0.8} if weighting == "bm25" else {}
    fitted = fit_weighting(split.train.matrix, weighting, **scheme_params)  # type: ignore[arg-type]
    out: dict[str, Any] = {"dataset": dataset, "weighting": weighting, "train_nnz": split.train.nnz}
    for name in ("ials", "implicit"):
        grid = IALS_GRID if name == "ials" else IMPLICIT_GRID
        best: dict[str, Any] = {"valid": -1.0}
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            if name == "ials":
                t0 = time.perf_counter()
                model = IALS(**params, weighting=weighting, max_epochs=30, patience=3)  # type: ignore[arg-type]
                model.fit(split.train, valid=split.valid)
                seconds = time.perf_counter() - t0
                epochs = len(model.training_log_)
            else:
                model, seconds = fit_implicit(split.train, fitted, params)
                epochs = 15
            with threadpool_limits(1, "blas"):
                valid = evaluate_ranking(model, split.valid, [NDCG(100)]).metrics["ndcg@100"]
            print(json.dumps({"fit": name, **params, "valid": valid, "fit_s": seconds}), file=sys.stderr, flush=True)
            if valid > best["valid"]:
                best = {"valid": valid, "params": params, "model": model, "fit_s": seconds, "epochs": epochs}
        with threadpool_limits(1, "blas"):
            test = evaluate_ranking(best["model"], split.test, metrics).metrics
        out[name] = {
            "params": best["params"],
            "valid_ndcg@100": best["valid"],
            "fit_s": best["fit_s"],
            "iterations": best["epochs"],
            **{m: test[m] for m in METRICS},
        }
    return out


def stage_speed(rounds: int = 5) -> dict:
    import numpy as np
    import scipy.sparse as sp
    import torch
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from recforge.data.splits import heldout_users_split
    from recforge.data.synthetic import make_ml20m_like
    from recforge.models.ials import IALS
    from recforge.training.options import TrainingOptions

    split = heldout_users_split(make_ml20m_like(seed=0), valid_users=10_000, test_users=10_000, seed=0)
    train = split.train
    history = split.test.history.matrix
    out: dict[str, Any] = {"users": train.n_users, "items": train.n_items, "nnz": train.nnz}
    out["threads"] = torch.get_num_threads()

    # the two alternate (rounds of 2 iterations each), so that a load from elsewhere falls on both alike
    ials_seconds: list[float] = []
    implicit_seconds: list[float] = []
    matrix = sp.csr_matrix(train.matrix)  # all values 1
    for _ in range(rounds):
        timer = epoch_timer()
        model = IALS(embedding_dim=64, weighting="binary", solver="cg", cg_steps=3, max_epochs=2)
        model.fit(train, options=TrainingOptions(callbacks=[timer]))
        ials_seconds += timer.seconds
        ials = AlternatingLeastSquares(
            factors=64, iterations=2, use_cg=True, random_state=0, num_threads=torch.get_num_threads()
        )
        with threadpool_limits(1, "blas"):
            ials.fit(matrix, show_progress=False, callback=lambda it, elapsed, loss: implicit_seconds.append(elapsed))
    out["ials_s_per_iteration"], out["implicit_s_per_iteration"] = ials_seconds, implicit_seconds
    t0 = time.perf_counter()
    model.fold_in(history)
    out["ials_fold_in_10k_s"] = time.perf_counter() - t0
    rows = sp.csr_matrix(history)
    with threadpool_limits(1, "blas"):
        t0 = time.perf_counter()
        ials.recalculate_user(np.arange(rows.shape[0]), rows)
        out["implicit_fold_in_10k_s"] = time.perf_counter() - t0
    out["ials_median_s_per_iteration"] = statistics.median(ials_seconds)
    out["implicit_median_s_per_iteration"] = statistics.median(implicit_seconds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["accuracy", "speed", "all"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--json", action="store_true", help="print the stage's result as one JSON line")
    parser.add_argument("--threads", type=int, default=None, help="torch (and implicit) threads")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stage == "accuracy":
        result = stage_accuracy(*args.args)
    elif args.stage == "speed":
        result = stage_speed()
    else:
        OUT.mkdir(exist_ok=True)
        print(json.dumps({"machine": machine()}))
        results = []
        for dataset, weighting in itertools.product(("ml-100k", "lastfm-2k"), ("binary", "bm25")):
            results.append(run_in_fresh_process(__file__, ["accuracy", dataset, weighting], args.threads))
            print(json.dumps(results[-1]), flush=True)
        if not args.skip_speed:
            results.append(run_in_fresh_process(__file__, ["speed"], args.threads))
            print(json.dumps(results[-1]), flush=True)
        (OUT / f"bench_ials-{time.strftime('%Y%m%d-%H%M')}.json").write_text(json.dumps(results, indent=1))
        return
    result["peak_rss_gb"] = peak_rss_gb()
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
