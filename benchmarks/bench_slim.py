"""ADMM-SLIM against EASE on ML-100K and Last.fm 2K (liang2018, 100 + 100 held-out users): accuracy, fit time, sparsity.

Each data set runs in a fresh process; the driver prints one JSON line per data set and a Markdown table to paste
into RESULTS.md.

    RECFORGE_DATA=/path/to/data python benchmarks/bench_slim.py all          # both data sets
    python benchmarks/bench_slim.py compare lastfm-2k                         # one data set, in this process

For each data set: EASE's l2 and ADMM-SLIM's (variant, l1, l2) are chosen on the validation users' NDCG@100
(ADMM-SLIM: default rho = l2 and iterations), then the test users are scored once with each choice. The fit
times are of one fit with the chosen setting each, in the same process (same threads, same machine load).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import machine, markdown_table, peak_rss_gb, run_in_fresh_process

OUT = Path(__file__).resolve().parent / "out"
DATASETS = ("ml-100k", "lastfm-2k")
EASE_GRID = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
#: (l1, nonnegative) tried with each ADMM-SLIM l2 (l1 = 0 with nonnegative: the non-negativity constraint alone);
#: the l2 values: EASE's chosen l2 and its neighbours in EASE_GRID (Last.fm: the chosen one only, it is slow)
SLIM_VARIANTS = ((0.0, True), (0.2, True), (1.0, True), (1.0, False))


def liang_split(dataset: str) -> Any:
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018

    raw = load_dataset(dataset, download=False)
    if dataset == "lastfm-2k":  # play counts: every artist played is a positive
        return liang2018(raw.interactions, heldout_users=100, min_rating=None)
    return liang2018(raw.interactions, heldout_users=100)


def stage_compare(dataset: str) -> dict:
    import torch

    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Recall
    from recforge.models.linear import EASE
    from recforge.models.slim import ADMMSLIM

    split = liang_split(dataset)
    metrics = [NDCG(100), Recall(20), Recall(50)]

    def valid_ndcg(model: Any) -> float:
        return evaluate_ranking(model, split.valid, [NDCG(100)]).metrics["ndcg@100"]

    def timed_fit(model: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        model.fit(split.train)
        return model, time.perf_counter() - t0

    ease_valid = {l2: valid_ndcg(EASE(l2=l2).fit(split.train)) for l2 in EASE_GRID}
    ease_l2 = max(EASE_GRID, key=lambda v: ease_valid[v])
    i = EASE_GRID.index(ease_l2)
    slim_l2s = (ease_l2,) if dataset == "lastfm-2k" else EASE_GRID[max(0, i - 1) : i + 2]
    slim_valid: dict[str, float] = {}
    for l2 in slim_l2s:
        for l1, nonnegative in SLIM_VARIANTS:
            params = {"l1": l1, "l2": l2, "nonnegative": nonnegative}
            slim_valid[json.dumps(params)] = valid_ndcg(ADMMSLIM(**params).fit(split.train))
    slim_params = json.loads(max(slim_valid, key=lambda k: slim_valid[k]))

    ease, ease_fit = timed_fit(EASE(l2=ease_l2))
    ease_test = evaluate_ranking(ease, split.test, metrics).metrics
    del ease
    slim, slim_fit = timed_fit(ADMMSLIM(**slim_params))
    slim_test = evaluate_ranking(slim, split.test, metrics).metrics
    n = split.train.n_items
    return {
        "dataset": dataset,
        "users": split.train.n_users,
        "items": n,
        "threads": torch.get_num_threads(),
        "ease_l2": ease_l2,
        "ease_valid": ease_valid,
        "ease_fit_s": ease_fit,
        "ease_test": ease_test,
        "slim_params": slim_params,
        "slim_valid": slim_valid,
        "slim_fit_s": slim_fit,
        "slim_test": slim_test,
        "slim_nnz": slim.weights_.nnz,
        "slim_density": slim.weights_.nnz / n**2,
        "slim_sparse": slim.weights_.dense is None,
    }


def summary(results: list[dict]) -> str:
    rows = []
    for r in results:
        e, s = r["ease_test"], r["slim_test"]
        p = r["slim_params"]
        variant = f"l1={p['l1']:g}, l2={p['l2']:g}, {'C >= 0' if p['nonnegative'] else 'C free'}"
        density = f"{r['slim_density']:.2%} ({'sparse' if r['slim_sparse'] else 'dense'})"
        versus = f"{s['ndcg@100'] / e['ndcg@100']:.1%} NDCG, {r['slim_fit_s'] / r['ease_fit_s']:.2f}x fit time"
        for name, m, fit, nz, vs in (
            (f"EASE (l2={r['ease_l2']:g})", e, r["ease_fit_s"], "100% (dense)", "-"),
            (f"ADMM-SLIM ({variant})", s, r["slim_fit_s"], density, versus),
        ):
            rows.append(
                [
                    r["dataset"],
                    name,
                    *(f"{m[k]:.4f}" for k in ("ndcg@100", "recall@20", "recall@50")),
                    f"{fit:.1f}",
                    nz,
                    vs,
                ]
            )
    head = ["data", "model", "test NDCG@100", "Recall@20", "Recall@50", "fit (s)", "weights non-zero", "vs EASE"]
    return "\n".join(markdown_table(None, head, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["compare", "all"])
    parser.add_argument("dataset", nargs="?", choices=DATASETS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the stage's result as one JSON line")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stage == "compare":
        if args.dataset is None:
            parser.error("compare needs a DATASET")
        result = stage_compare(args.dataset)
        result["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(result))
        return
    if "RECFORGE_DATA" not in os.environ:
        sys.exit("set RECFORGE_DATA to the folder holding ml-100k/ and hetrec2011-lastfm-2k/")
    OUT.mkdir(exist_ok=True)
    print(f"# {json.dumps(machine())}")
    results = []
    for dataset in DATASETS:
        result = run_in_fresh_process(__file__, ["compare", dataset], threads=args.threads)
        print(json.dumps(result), flush=True)
        results.append(result)
    (OUT / f"bench_slim-{time.strftime('%Y%m%d-%H%M')}.json").write_text(json.dumps(results, indent=2))
    print(summary(results))


if __name__ == "__main__":
    main()
