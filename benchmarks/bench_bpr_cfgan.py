"""BPR beside `implicit`'s BayesianPersonalizedRanking, and CFGAN under its paper's protocol.

Each figure comes from a fresh process; the driver prints one JSON line per figure and a Markdown summary to paste
into RESULTS.md. `implicit` is a benchmark-only dependency (``pip install implicit``), never a runtime one; without
it its rows are skipped.

    RECFORGE_DATA=/path/to/data python benchmarks/bench_bpr_cfgan.py all           # everything
    python benchmarks/bench_bpr_cfgan.py liang ml-100k bpr                          # one figure, here
    python benchmarks/bench_bpr_cfgan.py all --skip-speed                           # without the ML-20M-size part

Stages:
    liang DATASET MODEL   liang2018 with 100 + 100 held-out users on ``ml-100k`` or ``lastfm-2k`` (play counts > 0
                          as implicit: ``min_rating=None``); test NDCG@100, Recall@20, Recall@50 and fit time.
                          MODEL: ``bpr`` (recforge BPR, defaults, early stopping on validation NDCG@100, test users
                          folded in from their history), ``bpr-joint`` (recforge BPR trained on the training users
                          *and* the test users' fold-in rows, as many epochs as ``bpr`` chose, test users scored by
                          their learned vectors), ``cfgan`` (CFGAN, its defaults, early stopping on validation
                          NDCG@100, test users folded in from their history), ``implicit-bpr-joint`` (implicit's
                          BPR the same way: it cannot fold in new users; 64 factors, its defaults otherwise:
                          learning rate 0.01, regularisation 0.01, 100 iterations -- with as few epochs as
                          recforge's BPR it stays below popularity) or ``popularity``
    speed                 synthetic ML-20M shape (``make_ml20m_like``): seconds per BPR epoch, recforge (64 factors,
                          ``sparse_adam`` and ``adam``, batch 65,536) beside implicit's BPR (64 factors) in the same
                          process, 3 epochs each, no validation
    cfgan                 ML-100K, every rating a positive, a random 80/20 of each user's items
                          (``random_split(test=0.2, per_user=True)``, Chae et al.'s protocol): CFGAN with its
                          defaults (the authors' ML-100K setting, 250 cycles of 2 D + 4 G epochs), P@5, P@20, R@5,
                          R@20 (plain recall), NDCG@5, NDCG@20 after the last epoch, and the best P@5 over the
                          cycles' ends measured on the test part (what the authors' code reports: optimistic),
                          beside the published 0.444, 0.294, 0.152, 0.360, 0.476, 0.433
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from common import epoch_timer, machine, markdown_table, peak_rss_gb, run_in_fresh_process

OUT = Path(__file__).resolve().parent / "out"
DATASETS = ("ml-100k", "lastfm-2k")
LIANG_MODELS = ("bpr", "bpr-joint", "implicit-bpr-joint", "cfgan", "popularity")
#: implicit's default number of BPR iterations (epochs)
IMPLICIT_ITERATIONS = 100
#: Chae et al. (CIKM 2018), Table 3, ML-100K, CFGAN: P@5, P@20, R@5, R@20, NDCG@5, NDCG@20
CFGAN_PUBLISHED = {
    "precision@5": 0.444,
    "precision@20": 0.294,
    "recall_plain@5": 0.152,
    "recall_plain@20": 0.360,
    "ndcg@5": 0.476,
    "ndcg@20": 0.433,
}


def liang_split(dataset: str) -> Any:
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018

    raw = load_dataset(dataset, download=False)
    if dataset == "lastfm-2k":  # play counts (column "weight", all >= 1): every artist played is a positive
        return liang2018(raw.interactions, heldout_users=100, min_rating=None)
    return liang2018(raw.interactions, heldout_users=100)


def joint_training(split: Any) -> tuple[Any, Any]:
    """The training users plus the test users' fold-in rows as one training set, and the test users' indices in it."""
    import numpy as np
    import pandas as pd

    from recforge.data.interactions import Interactions

    train, hist = split.train, split.test.history
    frame = pd.concat([train.to_frame(), hist.to_frame()], ignore_index=True)[["user", "item"]]
    joint = Interactions.from_frame(frame, items=train.items, explicit=False, duplicates="keep")
    test_rows = joint.users.index(list(hist.users.ids))
    return joint, np.asarray(test_rows)


def ranking_metrics(scores: Any, history: Any, target: Any) -> dict[str, float]:
    """NDCG@100, Recall@20, Recall@50 of score rows (torch) against CSR targets, history items excluded."""
    import numpy as np
    import torch

    from recforge.evaluation.ranking import exclude_items_, top_k
    from recforge.metrics import NDCG, Recall

    keep = np.flatnonzero(np.diff(target.indptr) > 0)
    scores = scores[torch.as_tensor(keep)].float()
    exclude_items_(scores, history[keep])
    _, top = top_k(scores, 100)
    truth = torch.from_numpy((target[keep].toarray() > 0).astype(np.float32))
    return {m.name: float(torch.nanmean(m(top, truth))) for m in (NDCG(100), Recall(20), Recall(50))}


def stage_liang(dataset: str, model_name: str) -> dict:
    import torch

    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Recall
    from recforge.models.bpr import BPR
    from recforge.models.gan import CFGAN
    from recforge.models.popularity import Popularity

    split = liang_split(dataset)
    out: dict[str, Any] = {"dataset": dataset, "model": model_name, **split.summary()}
    metrics = [NDCG(100), Recall(20), Recall(50)]
    if model_name in ("bpr", "cfgan", "popularity"):
        t0 = time.perf_counter()
        if model_name == "popularity":
            model = Popularity().fit(split.train)
        else:
            model = (BPR() if model_name == "bpr" else CFGAN()).fit(split.train, valid=split.valid)
        out["fit_s"] = time.perf_counter() - t0
        if model_name != "popularity":
            best = max(model.training_log_, key=lambda e: e["valid_ndcg@100"])
            out.update(epochs=len(model.training_log_), best_epoch=int(best["epoch"]), params=model.get_params())
        res = evaluate_ranking(model, split.test, metrics)
        out.update({f"test_{k}": v for k, v in res.metrics.items()}, test_users=res.n_users)
        return out
    joint, rows = joint_training(split)
    history, target = split.test.history.matrix, split.test.target.matrix
    if model_name == "bpr-joint":  # as many epochs as recforge's BPR chose by validation
        log = BPR().fit(split.train, valid=split.valid).training_log_
        epochs = int(max(log, key=lambda e: e["valid_ndcg@100"])["epoch"]) + 1
        t0 = time.perf_counter()
        model = BPR(max_epochs=epochs).fit(joint)
        out["fit_s"] = time.perf_counter() - t0
        scores = model.score(joint.matrix[rows], rows)
    else:
        try:
            from implicit.cpu.bpr import BayesianPersonalizedRanking
        except ImportError:
            return {**out, "skipped": "implicit is not installed (pip install implicit)"}
        epochs = IMPLICIT_ITERATIONS
        algo = BayesianPersonalizedRanking(factors=64, iterations=epochs, random_state=0)
        t0 = time.perf_counter()
        algo.fit(joint.binary, show_progress=False)
        out["fit_s"] = time.perf_counter() - t0
        users = torch.from_numpy(algo.user_factors[rows])
        scores = users @ torch.from_numpy(algo.item_factors).T
    out.update(epochs=epochs, **{f"test_{k}": v for k, v in ranking_metrics(scores, history, target).items()})
    return out


def stage_speed() -> dict:
    import torch

    from recforge.data.synthetic import make_ml20m_like
    from recforge.models.bpr import BPR
    from recforge.training.options import TrainingOptions

    data = make_ml20m_like(seed=0)
    out: dict[str, Any] = {"users": data.n_users, "items": data.n_items, "nnz": data.binary.nnz}
    out["torch_threads"] = torch.get_num_threads()
    for optimizer in ("sparse_adam", "adam"):
        timer = epoch_timer()
        BPR(embedding_dim=64, optimizer=optimizer, batch_size=65_536, max_epochs=3).fit(
            data, options=TrainingOptions(callbacks=[timer])
        )
        out[f"recforge_{optimizer}_epoch_s"] = timer.seconds
    try:
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        out["implicit"] = "not installed (pip install implicit)"
        return out
    seconds = []
    for _ in range(3):
        algo = BayesianPersonalizedRanking(factors=64, iterations=1, random_state=0)
        t0 = time.perf_counter()
        algo.fit(data.binary, show_progress=False)
        seconds.append(time.perf_counter() - t0)
    out["implicit_epoch_s"] = seconds  # each a one-iteration fit (includes its set-up, a few % of an epoch)
    return out


def stage_cfgan() -> dict:
    import numpy as np

    from recforge.data.datasets import load_dataset
    from recforge.data.interactions import Interactions
    from recforge.data.splits import random_split
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Precision, Recall
    from recforge.models.gan import CFGAN
    from recforge.models.popularity import Popularity
    from recforge.training.callbacks import Callback
    from recforge.training.options import TrainingOptions

    raw = load_dataset("ml-100k", download=False)
    data = Interactions.from_frame(raw.interactions, explicit=False)
    data = data.with_values(np.ones(len(data), np.float32), explicit=False)
    split = random_split(data, test=0.2, per_user=True, seed=0)
    metrics = [Precision(5), Precision(20), Recall(5, normalized=False), Recall(20, normalized=False)]
    metrics += [NDCG(5), NDCG(20)]
    model = CFGAN()
    cycle = model.d_steps + model.g_steps

    class TestEveryCycle(Callback):
        """The test figures at the end of every cycle (the authors' code reports its best: optimistic)."""

        def __init__(self) -> None:
            self.figures: list[dict[str, float]] = []

        def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
            if (trainer.epoch + 1) % cycle == 0:
                model.module_ = trainer.module
                trainer.module.eval()
                self.figures.append(
                    {"epoch": trainer.epoch + 1, **evaluate_ranking(model, split.test, metrics).metrics}
                )
                trainer.module.train()

    watch = TestEveryCycle()
    t0 = time.perf_counter()
    model.fit(split.train, options=TrainingOptions(callbacks=[watch]))
    fit_s = time.perf_counter() - t0
    final = evaluate_ranking(model, split.test, metrics).metrics
    pop = evaluate_ranking(Popularity().fit(split.train), split.test, metrics).metrics
    best = max(watch.figures, key=lambda f: f["precision@5"])
    return {
        "protocol": "random_split(test=0.2, per_user=True, seed=0), all ratings as positives",
        **split.summary(),
        "fit_s_with_per_cycle_test": fit_s,
        "final": final,
        "best_cycle_on_test": best,
        "popularity": pop,
        "published": CFGAN_PUBLISHED,
        "params": model.get_params(),
    }


STAGES = {"speed": stage_speed, "cfgan": stage_cfgan}


def summary(rows: list[dict]) -> list[str]:
    lines: list[str] = []
    liang = [r for r in rows if r.get("stage") == "liang" and "skipped" not in r]
    if liang:
        body = [
            [
                r["dataset"],
                r["model"],
                f"{r['test_ndcg@100']:.4f}",
                f"{r['test_recall@20']:.4f}",
                f"{r['test_recall@50']:.4f}",
                str(r.get("epochs", "-")),
                f"{r['fit_s']:.1f}",
            ]
            for r in liang
        ]
        header = ["data", "model", "NDCG@100", "Recall@20", "Recall@50", "epochs", "fit (s)"]
        lines += markdown_table("liang2018, 100 + 100 held-out users", header, body)
    for r in rows:
        if r.get("stage") == "cfgan":
            names = list(CFGAN_PUBLISHED)
            body = [
                [name]
                + [f"{r[key][name]:.4f}" for key in ("final", "best_cycle_on_test", "popularity")]
                + [f"{CFGAN_PUBLISHED[name]:.3f}"]
                for name in names
            ]
            header = ["metric", "CFGAN (last epoch)", "CFGAN (best cycle on test)", "popularity", "published"]
            lines += markdown_table("CFGAN, ML-100K, random 80/20 per user", header, body)
        if r.get("stage") == "speed":
            lines.append(json.dumps({k: v for k, v in r.items() if "epoch_s" in k}))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["liang", *STAGES, "all"])
    parser.add_argument("args", nargs="*")
    parser.add_argument("--json", action="store_true", help="print the stage's result as one JSON line")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stage != "all":
        result = stage_liang(*args.args) if args.stage == "liang" else STAGES[args.stage]()
        result["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(result))
        return
    OUT.mkdir(exist_ok=True)
    rows = [{"stage": "machine", **machine()}]
    jobs = [["liang", d, m] for d in DATASETS for m in LIANG_MODELS] + [["cfgan"]]
    if not args.skip_speed:
        jobs.append(["speed"])
    for job in jobs:
        result = {"stage": job[0], **run_in_fresh_process(__file__, job)}
        print(json.dumps(result), flush=True)
        rows.append(result)
    (OUT / f"bench_bpr_cfgan-{time.strftime('%Y%m%d-%H%M')}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    sys.exit(main())
