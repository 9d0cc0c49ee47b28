"""The autoencoder family against EASE and popularity, conditioned and sequential variants, and epoch times.

Each figure comes from a fresh process; the driver prints one JSON line per figure, writes them all to
``benchmarks/out/bench_autoencoders-<date>.json`` and prints a Markdown summary to paste into RESULTS.md.

    RECFORGE_DATA=/path/to/data python benchmarks/bench_autoencoders.py all           # everything
    python benchmarks/bench_autoencoders.py compare ml-100k multivae                  # one figure, here
    python benchmarks/bench_autoencoders.py all --skip-ml20m                          # without the slow part

Stages:
    compare DATASET MODEL  liang2018 with 100 + 100 held-out users on ``ml-100k`` or ``lastfm-2k`` (play
                           counts > 0 as implicit feedback: ``min_rating=None``), or with 10,000 + 10,000 on
                           the real ``ml-20m`` (Liang et al.'s published setting; needs the data set in
                           RECFORGE_DATA and, in practice, a GPU: the autoencoders use CUDA when present);
                           MODEL is ``multivae``,
                           ``multidae`` (hidden layers [600, 200] or [200] chosen on validation NDCG@100, other
                           settings default: early stopping on validation NDCG@100, patience 20, at most 200
                           epochs), ``recvae`` (gamma 0.005 or 0.01 chosen on validation NDCG@100, Adam 1e-3 as
                           Mult-VAE's, other settings the paper's; early stopping as above, epochs counting
                           encoder and decoder epochs alike), ``ease`` (l2 chosen on validation NDCG@100 from a
                           grid) or ``popularity``; test NDCG@100, Recall@20, Recall@50, epochs, best epoch, fit time
    cvae                   ML-100K genres: C-VAE conditioned on a genre vs an unconditioned Mult-VAE's (and the
                           C-VAE's own unconditioned) list filtered to the genre; one example per test user
                           and genre with at least one target item of that genre
    svae                   ML-100K time-ordered sequences, leave-last-out (1 validation, 1 test item per user):
                           SVAE (default size, early stopping on validation Recall@10) vs popularity
    epoch DATASET          Mult-VAE [I-600-200-600-I], batch 500, CPU: seconds per training epoch (no
                           validation) on ``ml-100k`` (liang2018, 20 epochs) or ``ml20m`` (synthetic ML-20M
                           shape, ``heldout_users_split`` 10,000 + 10,000, 2 epochs) and one validation pass
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import epoch_timer, machine, markdown_table, peak_rss_gb, run_in_fresh_process

OUT = Path(__file__).resolve().parent / "out"
DATASETS = ("ml-100k", "lastfm-2k")
MODELS = ("multivae", "multidae", "recvae", "ease", "popularity")
EASE_GRID = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
#: hidden layers tried for Mult-VAE and Mult-DAE, the one with the best validation NDCG@100 is tested:
#: Liang et al.'s [I-600-200-600-I] and the [I-200-I] of vae_cf's Mult-DAE
ARCHITECTURES = ((600, 200), (200,))
#: RecVAE's KL scale gamma (beta_u = gamma |I_u|) tried, the best validation NDCG@100 is tested: the paper's 0.005
#: (ML-20M) and 0.01 (stronger regularisation for data sets with few users); learning rate 1e-3 as Mult-VAE's,
#: since these data sets have 2 (ML-100K) to 4 (Last.fm 2K) batches of 500 users an epoch
RECVAE_GAMMAS = (0.005, 0.01)


def liang_split(dataset: str) -> Any:
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018

    raw = load_dataset(dataset, download=False)
    if dataset == "ml-20m":  # the paper's own setting: 10,000 validation and 10,000 test users
        return raw, liang2018(raw.interactions, heldout_users=10_000)
    if dataset == "lastfm-2k":  # play counts (column "weight", all >= 1): every artist played is a positive
        return raw, liang2018(raw.interactions, heldout_users=100, min_rating=None)
    return raw, liang2018(raw.interactions, heldout_users=100)


def stage_compare(dataset: str, model_name: str) -> dict:
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Recall
    from recforge.models.autoencoders import MultiDAE, MultiVAE, RecVAE
    from recforge.models.linear import EASE
    from recforge.models.popularity import Popularity
    from recforge.training.options import TrainingOptions

    _, split = liang_split(dataset)
    metrics = [NDCG(100), Recall(20), Recall(50)]
    out: dict[str, Any] = {"dataset": dataset, "model": model_name, **split.summary()}
    if model_name == "ease":
        scores = {}
        for l2 in EASE_GRID:
            scores[l2] = evaluate_ranking(EASE(l2=l2).fit(split.train), split.valid, [NDCG(100)])
        best = max(EASE_GRID, key=lambda v: scores[v].metrics["ndcg@100"])
        t0 = time.perf_counter()
        model = EASE(l2=best).fit(split.train)
        out.update(
            fit_s=time.perf_counter() - t0,
            l2=best,
            valid_ndcg_by_l2={str(k): v.metrics["ndcg@100"] for k, v in scores.items()},
        )
        if dataset == "ml-100k" and best != 100.0:
            ref = evaluate_ranking(EASE(l2=100.0).fit(split.train), split.test, metrics)
            out["test_l2_100"] = ref.metrics
    elif model_name == "popularity":
        t0 = time.perf_counter()
        model = Popularity().fit(split.train)
        out["fit_s"] = time.perf_counter() - t0
    else:
        if model_name == "recvae":
            candidates = [RecVAE(gamma=gamma, learning_rate=1e-3) for gamma in RECVAE_GAMMAS]
            setting, by_setting = (lambda m: str(m.gamma)), "valid_ndcg_by_gamma"
        else:
            cls = {"multivae": MultiVAE, "multidae": MultiDAE}[model_name]
            candidates = [cls(hidden_dims=dims) for dims in ARCHITECTURES]
            setting, by_setting = (lambda m: str(list(m.hidden_dims))), "valid_ndcg_by_architecture"
        fits = []
        for candidate in candidates:
            timer = epoch_timer()
            t0 = time.perf_counter()
            candidate.fit(split.train, valid=split.valid, options=TrainingOptions(callbacks=[timer]))  # CUDA if any
            best = max(candidate.training_log_, key=lambda e: e["valid_ndcg@100"])
            fits.append((best["valid_ndcg@100"], time.perf_counter() - t0, best, candidate, timer))
        valid_ndcg, fit_s, best, model, timer = max(fits, key=lambda fit: fit[0])
        out.update(
            fit_s=fit_s,
            epochs=len(model.training_log_),
            best_epoch=int(best["epoch"]),
            best_valid_ndcg100=valid_ndcg,
            epoch_s_median=statistics.median(timer.seconds),
            params=model.get_params(),
        )
        out[by_setting] = {setting(f[3]): f[0] for f in fits}
    res = evaluate_ranking(model, split.test, metrics)
    out.update({f"test_{k}": v for k, v in res.metrics.items()}, test_users=res.n_users)
    return out


def stage_cvae() -> dict:
    import numpy as np
    import scipy.sparse as sp
    import torch

    from recforge.evaluation.ranking import exclude_items_, top_k
    from recforge.metrics import NDCG, Recall
    from recforge.models.autoencoders import CMultiVAE, MultiVAE, item_condition_matrix

    raw, split = liang_split("ml-100k")
    info = raw.item_info.reindex(split.train.items.ids).reset_index()  # genres, one row per item index
    train = dataclasses.replace(split.train, item_info=info)
    out: dict[str, Any] = {"dataset": "ml-100k", **split.summary()}
    t0 = time.perf_counter()
    cvae = CMultiVAE(condition_col="genres").fit(train, valid=split.valid)
    out.update(cvae_fit_s=time.perf_counter() - t0, cvae_epochs=len(cvae.training_log_))
    t0 = time.perf_counter()
    mvae = MultiVAE().fit(train, valid=split.valid)
    out.update(multivae_fit_s=time.perf_counter() - t0, multivae_epochs=len(mvae.training_log_))

    genres, labels = item_condition_matrix(info, "genres", train.n_items)
    satisfies = genres.toarray() > 0
    part = split.test
    history, target = part.history.matrix, part.target.matrix
    pairs = sp.coo_array((target > 0).astype(np.float32) @ genres)  # (user, genre) with a target item of it
    users, conds = pairs.row, pairs.col
    rows = history[users]
    truth = torch.from_numpy((target[users].toarray() > 0) & satisfies[:, conds].T).float()
    allowed = torch.from_numpy(satisfies[:, conds].T)
    metrics = [NDCG(10), NDCG(100), Recall(20)]

    def evaluate(scores: torch.Tensor) -> dict[str, float]:
        exclude_items_(scores, rows)
        _, top = top_k(scores, 100)
        return {m.name: float(m(top, truth).nanmean()) for m in metrics}

    out["examples"] = len(users)
    out["genres"] = len(labels)
    out["items_per_genre_median"] = float(np.median(satisfies.sum(0)))
    out["cvae_conditioned"] = evaluate(cvae.score_conditioned(rows, conds))
    out["cvae_unconditioned_filtered"] = evaluate(cvae.score(rows).masked_fill(~allowed, float("-inf")))
    out["multivae_filtered"] = evaluate(mvae.score(rows).masked_fill(~allowed, float("-inf")))
    return out


def stage_svae() -> dict:
    import numpy as np

    from recforge.data.datasets import load_dataset
    from recforge.data.interactions import Interactions
    from recforge.data.splits import leave_last_out
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG, Recall
    from recforge.models.autoencoders import SVAE
    from recforge.models.popularity import Popularity
    from recforge.training.options import TrainingOptions

    raw = load_dataset("ml-100k", download=False)
    data = Interactions.from_frame(raw.interactions, explicit=False)  # every rating is an event, in time order
    data = data.with_values(np.ones(len(data), dtype=np.float32), explicit=False)
    split = leave_last_out(data)
    metrics = [Recall(10), NDCG(10), NDCG(100)]
    out: dict[str, Any] = {"dataset": "ml-100k", **split.summary()}
    pop = evaluate_ranking(Popularity().fit(split.train), split.test, metrics)
    out["popularity"] = pop.metrics
    model, timer = SVAE(max_epochs=20, patience=3, monitor="recall@10"), epoch_timer()
    t0 = time.perf_counter()
    model.fit(split.train, valid=split.valid, options=TrainingOptions(callbacks=[timer]))
    log = model.training_log_
    best = max(log, key=lambda e: e["valid_recall@10"])
    out.update(
        svae_fit_s=time.perf_counter() - t0,
        svae_epochs=len(log),
        svae_best_epoch=int(best["epoch"]),
        svae_epoch_s_median=statistics.median(timer.seconds),
        svae_params=model.get_params(),
    )
    out["svae"] = evaluate_ranking(model, split.test, metrics).metrics
    return out


def stage_epoch(dataset: str) -> dict:
    import torch

    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG
    from recforge.models.autoencoders import MultiVAE
    from recforge.training.options import TrainingOptions

    t0 = time.perf_counter()
    if dataset == "ml20m":
        from recforge.data.splits import heldout_users_split
        from recforge.data.synthetic import make_ml20m_like

        data = make_ml20m_like(seed=0)
        split = heldout_users_split(data, valid_users=10_000, test_users=10_000, seed=0)
        del data
        epochs = 2
    else:
        _, split = liang_split("ml-100k")
        epochs = 20
    prepare_s = time.perf_counter() - t0
    model, timer = MultiVAE(max_epochs=epochs), epoch_timer()
    t0 = time.perf_counter()
    model.fit(split.train, options=TrainingOptions(callbacks=[timer]))  # no validation: training time only
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    valid = evaluate_ranking(model, split.valid, [NDCG(100)])
    valid_s = time.perf_counter() - t0
    seconds = timer.seconds
    return {
        "dataset": dataset,
        "items": split.train.n_items,
        "train_users": split.train.n_users,
        "train_nnz": split.train.nnz,
        "batches_per_epoch": -(-int((split.train.user_counts() > 0).sum()) // model.batch_size),
        "prepare_s": prepare_s,
        "fit_s": fit_s,
        "epoch_s": seconds,
        "epoch_s_median": statistics.median(seconds[1:] if len(seconds) > 2 else seconds),
        "valid_users": valid.n_users,
        "valid_pass_s": valid_s,
        "threads": torch.get_num_threads(),
        "peak_rss_gb": peak_rss_gb(),
    }


def run_stage(args: list[str]) -> dict:
    stage = args[0]
    if stage == "compare":
        return stage_compare(args[1], args[2])
    if stage == "epoch":
        return stage_epoch(args[1])
    return {"cvae": stage_cvae, "svae": stage_svae}[stage]()


def markdown(results: list[dict], info: dict, command: str) -> str:
    lines = [
        f"### Autoencoders ({info['date']})",
        "",
        f"Command: `{command}`  ",
        "Machine: "
        + "; ".join(
            line.split(":", 1)[1].strip() for line in info["lscpu"] if line.split(":", 1)[0] in ("Model name", "CPU(s)")
        ),
        "",
    ]
    compare = [r for r in results if r.get("stage") == "compare"]
    if compare:
        rows = []
        for r in compare:
            extra = f" (l2={r['l2']:g})" if "l2" in r else ""
            if "params" in r:
                p = r["params"]
                extra = f" gamma={p['gamma']:g}" if r["model"] == "recvae" else f" {p['hidden_dims']}"
            rows.append(
                [
                    r["dataset"],
                    f"{r['model']}{extra}",
                    *(f"{r[f'test_{m}']:.4f}" for m in ("ndcg@100", "recall@20", "recall@50")),
                    str(r.get("epochs", "-")),
                    str(r.get("best_epoch", "-")),
                    f"{r['fit_s']:.1f}",
                ]
            )
        header = ["data", "model", "test NDCG@100", "Recall@20", "Recall@50", "epochs", "best epoch", "fit (s)"]
        lines += markdown_table(None, header, rows)
    for r in results:
        if r.get("stage") == "cvae":
            labels = (
                ("cvae_conditioned", "C-VAE conditioned on the genre"),
                ("cvae_unconditioned_filtered", "C-VAE unconditioned, filtered"),
                ("multivae_filtered", "Mult-VAE, filtered"),
            )
            lines += markdown_table(
                f"C-VAE, ML-100K genres ({r['examples']} test (user, genre) pairs):",
                ["ranking within the genre", "NDCG@10", "NDCG@100", "Recall@20"],
                [[label, *(f"{r[key][m]:.4f}" for m in ("ndcg@10", "ndcg@100", "recall@20"))] for key, label in labels],
            )
        if r.get("stage") == "svae":
            rows = []
            for key in ("svae", "popularity"):
                epochs = [str(r["svae_epochs"]), f"{r['svae_epoch_s_median']:.1f}"] if key == "svae" else ["-", "-"]
                rows.append([key, *(f"{r[key][m]:.4f}" for m in ("recall@10", "ndcg@10", "ndcg@100")), *epochs])
            lines += markdown_table(
                "SVAE, ML-100K leave-last-out next item:",
                ["model", "Recall@10", "NDCG@10", "NDCG@100", "epochs", "s/epoch"],
                rows,
            )
    epochs = [r for r in results if r.get("stage") == "epoch"]
    if epochs:
        lines += markdown_table(
            None,
            [
                "Mult-VAE epoch (CPU)",
                "items",
                "train users",
                "batches",
                "s/epoch (median)",
                "validation (s)",
                "threads",
            ],
            [
                [
                    r["dataset"],
                    str(r["items"]),
                    str(r["train_users"]),
                    str(r["batches_per_epoch"]),
                    f"{r['epoch_s_median']:.3f}",
                    f"{r['valid_pass_s']:.2f} ({r['valid_users']} users)",
                    str(r["threads"]),
                ]
                for r in epochs
            ],
        )
    return "\n".join(lines).rstrip("\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="+", help="all | compare DATASET MODEL | cvae | svae | epoch ml-100k|ml20m")
    parser.add_argument("--json", action="store_true", help="print the stage's result as one JSON line")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--skip-ml20m", action="store_true", help="with all: leave out the ML-20M epoch time")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stage[0] != "all":
        load0 = os.getloadavg()[0]
        result = {"stage": args.stage[0], **run_stage(args.stage)}
        result.update(peak_rss_gb=peak_rss_gb(), load_avg_1min_start=load0, load_avg_1min_end=os.getloadavg()[0])
        print(json.dumps(result))
        return
    OUT.mkdir(exist_ok=True)
    info = machine()
    plan = [["compare", d, m] for d in DATASETS for m in MODELS] + [["cvae"], ["svae"], ["epoch", "ml-100k"]]
    if not args.skip_ml20m:
        plan.append(["epoch", "ml20m"])
    results = []
    for stage in plan:
        result = run_in_fresh_process(__file__, stage, args.threads)
        print(json.dumps(result), flush=True)
        results.append(result)
    path = OUT / f"bench_autoencoders-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    command = "python benchmarks/bench_autoencoders.py " + " ".join(sys.argv[1:])
    print(markdown(results, info, command))
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    main()
