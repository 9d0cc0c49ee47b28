"""Mult-VAE with the derived KL annealing (the default since issue 20) against vae_cf's fixed 200,000 updates.

    RECFORGE_DATA=… python benchmarks/bench_annealing.py ml-100k|lastfm-2k

``liang2018`` with 100 + 100 held-out users (Last.fm: every play count a positive, ``min_rating=None``), Mult-VAE
[I-200-I] with its other defaults, 1 torch thread; prints one JSON line per setting: test NDCG@100, Recall@20/50,
the best epoch (0-based) and the beta it was trained at, the fit time and the derived schedule's log line.
"""

from __future__ import annotations

import json
import os
import sys
import time

import recforge  # noqa: F401  (before torch: passive OpenMP waiting)

# isort: split
import torch

from recforge.data.datasets import load_dataset
from recforge.data.splits import liang2018
from recforge.evaluation.evaluate import evaluate_ranking
from recforge.metrics import NDCG, Recall
from recforge.models.autoencoders import MultiVAE
from recforge.training.options import TrainingOptions


def main(dataset: str) -> None:
    torch.set_num_threads(1)
    raw = load_dataset(dataset, data_dir=os.environ.get("RECFORGE_DATA"), download=False)
    extra = {"min_rating": None} if dataset == "lastfm-2k" else {}
    split = liang2018(raw.interactions, heldout_users=100, **extra)
    for label, params in (("derived (default)", {}), ("fixed 200000 (vae_cf)", {"anneal_steps": 200_000})):
        lines: list[str] = []
        options = TrainingOptions(device="cpu", log=lines.append, progress_bar=False)
        t0 = time.perf_counter()
        model = MultiVAE(hidden_dims=(200,), **params).fit(split.train, valid=split.valid, options=options)
        fit_s = time.perf_counter() - t0
        best = max(model.training_log_, key=lambda e: e["valid_ndcg@100"])
        test = evaluate_ranking(model, split.test, [NDCG(100), Recall(20), Recall(50)]).metrics
        row = {
            "dataset": dataset,
            "anneal_steps": label,
            "test": test,
            "best_epoch": int(best["epoch"]),
            "epochs": len(model.training_log_),
            "beta_at_best": best["beta"],
            "valid_ndcg100": best["valid_ndcg@100"],
            "fit_s": fit_s,
            "log": [line for line in lines if "anneal" in line or "stopped" in line],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ml-100k")
