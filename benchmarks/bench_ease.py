"""Load -> split -> fit -> evaluate for EASE, on ML-100K and on a synthetic ML-20M-sized set.

Each figure comes from a fresh process (one per stage and repeat); the driver prints one JSON
line per measurement and a summary (median and spread) to paste into RESULTS.md.

    python benchmarks/bench_ease.py all --repeats 3          # everything
    python benchmarks/bench_ease.py read                      # one stage, in this process

Stages:
    read       read a 20-million-row MovieLens-format ratings.csv and index it to CSR
    ml100k     liang2018 (100+100 held-out users) on ML-100K, EASE l2=100: times and NDCG/Recall
    ml20m      synthetic ML-20M shape, 10,000 + 10,000 held-out users, EASE l2=500:
               fit time and peak memory, full-ranking evaluation of 10,000 users at k=100, and scores +
               top-100 alone, 3 times, recforge's against one torch.sparse.mm with the whole B (the peer way)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

from common import peak_rss_gb, run_in_fresh_process

OUT = Path(__file__).resolve().parent / "out"


def stage_read() -> dict:
    import pandas as pd

    from recforge.data.interactions import Interactions
    from recforge.data.readers import read_movielens_csv

    folder = OUT / "synthetic-20m"
    csv = folder / "ratings.csv"
    if not csv.exists():
        raise SystemExit("run `python benchmarks/bench_ease.py make-csv` first")
    t0 = time.perf_counter()
    raw = read_movielens_csv(folder)
    t_read = time.perf_counter() - t0
    data = Interactions.from_frame(raw.interactions)
    _ = data.matrix
    total = time.perf_counter() - t0
    assert isinstance(raw.interactions, pd.DataFrame)
    return {"rows": len(raw.interactions), "read_s": t_read, "read_and_index_s": total, "nnz": data.nnz}


def make_csv() -> dict:
    from recforge.data.synthetic import make_implicit_frame, write_ratings_csv

    folder = OUT / "synthetic-20m"
    folder.mkdir(parents=True, exist_ok=True)
    frame = make_implicit_frame(138_493, 26_744, 20_000_263, seed=0)  # ML-20M's raw counts
    write_ratings_csv(frame, folder / "ratings.csv", seed=0)
    return {"rows": len(frame)}


def stage_ml100k() -> dict:
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Recall
    from recforge.models.linear import EASE

    t0 = time.perf_counter()
    raw = load_dataset("ml-100k", download=False)
    t_load = time.perf_counter() - t0
    split = liang2018(raw.interactions, heldout_users=100)
    t_split = time.perf_counter() - t0 - t_load
    t1 = time.perf_counter()
    model = EASE(l2=100.0).fit(split.train)
    t_fit = time.perf_counter() - t1
    t1 = time.perf_counter()
    res = evaluate_ranking(model, split.test, [NDCG(100), Recall(20), Recall(50)])
    t_eval = time.perf_counter() - t1
    return {"load_s": t_load, "split_s": t_split, "fit_s": t_fit, "eval_s": t_eval, **res.metrics}


def stage_ml20m() -> dict:
    import scipy.sparse as sp
    import torch

    from recforge.data.splits import heldout_users_split
    from recforge.data.synthetic import make_ml20m_like
    from recforge.evaluation.evaluate import auto_batch_size, evaluate_ranking
    from recforge.evaluation.ranking import exclude_items_, top_k
    from recforge.metrics import NDCG, Recall
    from recforge.models.base import csr_to_torch
    from recforge.models.linear import EASE

    t0 = time.perf_counter()
    data = make_ml20m_like(seed=0)
    t_gen = time.perf_counter() - t0
    split = heldout_users_split(data, valid_users=10_000, test_users=10_000, seed=0)
    t_split = time.perf_counter() - t0 - t_gen
    del data
    t1 = time.perf_counter()
    model = EASE(l2=500.0).fit(split.train)
    t_fit = time.perf_counter() - t1
    fit_peak = peak_rss_gb()
    t1 = time.perf_counter()
    res = evaluate_ranking(model, split.test, [NDCG(100), Recall(20), Recall(50)])
    t_eval = time.perf_counter() - t1
    # scores + top-100 alone (PERFORMANCE.md's figure), in the evaluator's blocks: recforge, then the peer way of
    # PERFORMANCE.md (one torch.sparse.mm with the whole B, then topk) on the same fitted model
    history = split.test.history.matrix
    block = auto_batch_size(split.train.n_items, torch.device("cpu"))
    weights = model.item_weights()

    def peer_rank(rows: sp.csr_array) -> None:
        scores = torch.sparse.mm(csr_to_torch(rows), weights)
        top_k(exclude_items_(scores, rows), 100)

    timings: dict[str, list[float]] = {"recforge": [], "sparse_mm": []}
    for _ in range(3):
        for name, rank in (("recforge", lambda rows: model.rank(rows, None, 100)), ("sparse_mm", peer_rank)):
            t1 = time.perf_counter()
            for start in range(0, history.shape[0], block):
                rank(history[start : start + block])
            timings[name].append(time.perf_counter() - t1)
    return {
        "items": split.train.n_items,
        "train_users": split.train.n_users,
        "train_nnz": split.train.nnz,
        "test_users": res.n_users,
        "generate_s": t_gen,
        "split_s": t_split,
        "fit_s": t_fit,
        "fit_peak_rss_gb": fit_peak,
        "eval_s": t_eval,
        "score_top100_s": timings["recforge"],
        "score_top100_sparse_mm_s": timings["sparse_mm"],
        "score_top100_rows": history.shape[0],
        "threads": torch.get_num_threads(),
        **res.metrics,
    }


STAGES = {"read": stage_read, "ml100k": stage_ml100k, "ml20m": stage_ml20m, "make-csv": make_csv}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=[*STAGES, "all"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the stage's result as one JSON line")
    args = parser.parse_args()
    if args.stage != "all":
        result = STAGES[args.stage]()
        result["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(result))
        return
    OUT.mkdir(exist_ok=True)
    if not (OUT / "synthetic-20m" / "ratings.csv").exists():
        run_in_fresh_process(__file__, ["make-csv"])
    machine = f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}"
    print(f"# {time.strftime('%Y-%m-%d')} {machine}")
    for stage in ("read", "ml100k", "ml20m"):
        runs = [run_in_fresh_process(__file__, [stage]) for _ in range(args.repeats)]
        for r in runs:
            print(json.dumps({"stage": stage, **r}))
        keys = [k for k, v in runs[0].items() if isinstance(v, float)]
        summary = {
            k: (statistics.median(r[k] for r in runs), min(r[k] for r in runs), max(r[k] for r in runs)) for k in keys
        }
        print(json.dumps({"stage": stage, "median_min_max": summary}))


if __name__ == "__main__":
    main()
