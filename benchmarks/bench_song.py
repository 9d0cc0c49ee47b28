"""The listening-history song models (SongMLP, SongVAE) on Last.fm 2K beside Mult-VAE, EASE and popularity; the
separation of their latent space by tag; steering; the figures; and the epoch time at the reference's
180,198-song width on a synthetic set of the Million Song Dataset's shape.

    RECFORGE_DATA=/path/to/data python benchmarks/bench_song.py lastfm     # accuracy, separation, steering, figures
    python benchmarks/bench_song.py scale                                   # 180,198 songs, synthetic MSD shape

``lastfm``: ``liang2018`` with 100 + 100 held-out users on HetRec Last.fm 2K, play count > 0 as implicit feedback
(``rating_col="weight", min_rating=0``; the play counts are kept to label users by their play-weighted top tag, and
every model is trained on the 0/1 matrix). Early stopping on validation NDCG@100. Test NDCG@100, Recall@20/50.
Separation: silhouette of the training users by top tag (the 20 and the 10 most frequent artist top tags) in z,
against a random Gaussian projection of the same input rows to z's dimension. Steering: every test user is moved
toward each of five tags by factors 0.5 and 1; the share of artists of that top tag in the top 20 before and after.
Figures go to ``benchmarks/out/song_*.png``; the JSON to ``benchmarks/out/bench_song-<date>.json``.

``scale``: synthetic implicit data of MSD's shape (48 triplets per user, Zipf popularity) at 180,198 songs; SongVAE
[180,198-600-200-600-180,198], batch 500: seconds per epoch over ``--users`` users, peak memory, parameter memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import epoch_timer, machine, peak_rss_gb

OUT = Path(__file__).resolve().parent / "out"
STEER_TAGS = ("rock", "electronic", "hip-hop", "metal", "jazz")
SONG_VAE = {"dims": (200, 32), "beta": 0.2, "anneal_steps": 2000, "learning_rate": 1e-3, "batch_size": 100}
SONG_MLP = {"dims": (200, 32), "dropout": 0.5, "learning_rate": 1e-3, "batch_size": 100}
MSD_SONGS = 180_198
MSD_PER_USER = 48_373_586 / 1_019_318  # triplets per user in train_triplets.txt


def lastfm_split(data_dir: str | None = None) -> Any:
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018

    raw = load_dataset("lastfm-2k", data_dir=data_dir, download=False)
    return liang2018(raw, heldout_users=100, rating_col="weight", min_rating=0, value_col="weight")


def binary(split: Any) -> Any:
    """The split with every value 1 (what the models train on; the play counts stay in ``split``)."""
    import dataclasses

    def ones(x: Any) -> Any:
        return x.with_values(np.ones(len(x), dtype=np.float32), explicit=False)

    parts = {
        name: dataclasses.replace(part, history=ones(part.history), target=ones(part.target))
        for name, part in (("valid", split.valid), ("test", split.test))
    }
    return dataclasses.replace(split, train=ones(split.train), **parts)


def run_lastfm(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from recforge.analysis.latent import class_stats, latent_codes, separation_score, steer
    from recforge.analysis.latent_plots import plot_class_clouds, plot_steering, plot_users
    from recforge.analysis.plots import plot_training_curves
    from recforge.data import tags as T
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import parse_metric
    from recforge.models.registry import create_model
    from recforge.training.options import TrainingOptions

    torch.set_num_threads(args.threads)
    split = lastfm_split()
    data = binary(split)
    train = split.train
    item_top = T.item_top_tags(train.item_info, train.n_items)
    metrics = [parse_metric(m) for m in ("ndcg@100", "recall@20", "recall@50")]
    configs = {
        "popularity": ("popularity", {}),
        "ease": ("ease", {"l2": 100.0}),
        "multivae": ("multivae", {"hidden_dims": (200,), "max_epochs": args.epochs}),
        "songmlp": ("songmlp", {**SONG_MLP, "max_epochs": args.epochs, "patience": 10}),
        "songvae": ("songvae", {**SONG_VAE, "max_epochs": args.epochs, "patience": 10}),
    }
    out: dict[str, Any] = {"split": split.summary(), "models": {}, "separation": {}, "steering": {}, "figures": []}
    models = {}
    for key in args.models:
        name, params = configs[key]
        timer = epoch_timer()
        t0 = time.perf_counter()
        model = create_model(name, **params).fit(
            data.train, valid=data.valid, options=TrainingOptions(callbacks=[timer])
        )
        fit = time.perf_counter() - t0
        res = evaluate_ranking(model, data.test, metrics).metrics
        log = getattr(model, "training_log_", [])
        out["models"][key] = {
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
            **res,
            "epochs": len(log),
            "best_epoch": int(log[-1]["best_epoch"]) + 1 if log and "best_epoch" in log[-1] else None,
            "fit_s": round(fit, 1),
            "s_per_epoch": round(float(np.median(timer.seconds)), 2) if timer.seconds else None,
        }
        print(key, json.dumps(out["models"][key]), flush=True)
        models[key] = model
        if log and key.startswith("song"):
            out["figures"].append(str(plot_training_curves(log, OUT / f"song_{key}_training_curves.png")))

    for top in (20, 10):
        classes = T.class2idx(item_top[train.item_counts() > 0], top=top)
        labels = T.user_top_tags(train.matrix, item_top, classes)
        for key in ("songvae", "songmlp", "multivae"):
            if key in models:
                sep = separation_score(models[key], data.train.matrix, labels, seed=0)
                out["separation"][f"{key}/top{top}"] = sep
                print("separation", key, top, json.dumps(sep), flush=True)

    if "songvae" in models:
        model = models["songvae"]
        classes = T.class2idx(item_top[train.item_counts() > 0], top=20)
        labels = T.user_top_tags(train.matrix, item_top, classes)
        z = latent_codes(model, data.train.matrix)
        stats = class_stats(z, labels, classes)
        test = data.test
        full = split.test.history.matrix + split.test.target.matrix
        test_labels = T.user_top_tags(full, item_top, classes)
        z_test = latent_codes(model, test.history.matrix)
        out["figures"].append(str(plot_class_clouds(stats, OUT / "song_latent_classes.png", n_points=15, n_classes=10)))
        out["figures"].append(str(plot_users(z_test, test_labels, OUT / "song_latent_users.png", stats=stats)))
        rows = test.history.matrix
        for tag in STEER_TAGS:
            tagged = item_top == tag
            for factor in (0.5, 1.0):
                before, after = [], []
                for u in range(rows.shape[0]):
                    if rows[[u]].nnz == 0:
                        continue
                    res = steer(model, rows[[u]], stats, tag, factor, k=20)
                    idx_b = model.items_.index([i for i, _ in res["before"]])
                    idx_a = model.items_.index([i for i, _ in res["recommendations"]])
                    before.append(tagged[idx_b].mean())
                    after.append(tagged[idx_a].mean())
                out["steering"][f"{tag}@{factor:g}"] = {
                    "users": len(before),
                    "share_before": float(np.mean(before)),
                    "share_after": float(np.mean(after)),
                    "users_raised": float(np.mean(np.array(after) > np.array(before))),
                }
                print("steer", tag, factor, json.dumps(out["steering"][f"{tag}@{factor:g}"]), flush=True)
        # the figure: the first test user whose top tag is not "metal", steered toward "metal"
        u = next(i for i, lab in enumerate(test_labels) if lab not in (None, "metal") and rows[[i]].nnz)
        res = steer(model, rows[[u]], stats, "metal", 1.0, k=20)
        tagged = item_top == "metal"
        shares = tuple(
            float(tagged[model.items_.index([i for i, _ in res[k]])].mean()) for k in ("before", "recommendations")
        )
        out["figures"].append(
            str(
                plot_steering(
                    stats, res["z"], res["z_steered"], "metal", 1.0, OUT / "song_latent_steer.png", shares=shares
                )
            )
        )
    out["peak_rss_gb"] = round(peak_rss_gb(), 2)
    return out


def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from recforge.data.synthetic import make_implicit
    from recforge.models.autoencoders import SongVAE
    from recforge.training.options import TrainingOptions

    torch.set_num_threads(args.threads)
    n_users = args.users
    t0 = time.perf_counter()
    data = make_implicit(n_users, MSD_SONGS, round(MSD_PER_USER * n_users), min_per_user=10, timestamps=False, seed=0)
    made = time.perf_counter() - t0
    songs_used = int((data.item_counts() > 0).sum())
    timer = epoch_timer()
    model = SongVAE(dims=tuple(args.dims), batch_size=500, max_epochs=args.epochs, beta=0.2)
    t0 = time.perf_counter()
    model.fit(data, options=TrainingOptions(callbacks=[timer], device="cpu"))
    fit = time.perf_counter() - t0
    params = sum(p.numel() for p in model.module_.parameters())
    return {
        "songs": MSD_SONGS,
        "songs_with_plays": songs_used,
        "users": n_users,
        "interactions": len(data),
        "dims": list(args.dims),
        "threads": args.threads,
        "generate_s": round(made, 1),
        "epoch_s": [round(s, 1) for s in timer.seconds],
        "s_per_1000_users": round(float(np.median(timer.seconds)) / n_users * 1000, 2),
        "fit_s": round(fit, 1),
        "parameters": params,
        "parameter_mb": round(params * 4 / 2**20, 1),
        "training_state_mb": round(params * 4 * 4 / 2**20, 1),  # weights, gradients, Adam's two moments
        "peak_rss_gb": round(peak_rss_gb(), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("lastfm", "scale"))
    parser.add_argument("--models", nargs="+", default=["popularity", "ease", "multivae", "songmlp", "songvae"])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--users", type=int, default=2000, help="scale: synthetic users")
    parser.add_argument("--dims", type=int, nargs="+", default=[600, 200], help="scale: layer sizes")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    result = {
        "stage": args.stage,
        "machine": machine(),
        **(run_lastfm(args) if args.stage == "lastfm" else run_scale(args)),
    }
    path = OUT / f"bench_song-{args.stage}-{time.strftime('%Y%m%d-%H%M')}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
