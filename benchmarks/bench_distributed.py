"""Data-parallel training on CPU processes (gloo): epoch time and result of Mult-VAE, 1 process against N.

ML-100K under liang2018 (100 + 100 held-out users), Mult-VAE [I-600-200-600-I], a global batch of 500 users,
``EPOCHS`` epochs without validation (training time only); then test NDCG@100 of the final model. Three set-ups:

* 1 process with torch's default threads,
* 1 process with 1 thread,
* N processes with 1 thread each and ``batch_size = 500 / N`` (the same global batch),

each in fresh processes. On CPU this checks correctness and shows the communication cost; the speed-up is for
GPUs (one process per device, NCCL).

    RECFORGE_DATA=/path/to/data python benchmarks/bench_distributed.py [--nproc 2] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import epoch_timer, machine, markdown_table

from recforge import distributed

GLOBAL_BATCH = 500


def _train(batch_size: int, epochs: int) -> dict[str, Any]:
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018
    from recforge.distributed import world
    from recforge.evaluation.evaluate import evaluate_ranking
    from recforge.metrics import NDCG
    from recforge.models.autoencoders import MultiVAE
    from recforge.training.options import TrainingOptions

    split = liang2018(load_dataset("ml-100k", download=False).interactions, heldout_users=100)
    timer = epoch_timer()
    options = TrainingOptions(device="cpu", callbacks=[timer], progress_bar=False)
    model = MultiVAE(max_epochs=epochs, batch_size=batch_size).fit(split.train, options=options)
    ndcg = evaluate_ranking(model, split.test, [NDCG(100)], world=world()).metrics["ndcg@100"]
    return {"epoch_s_median": statistics.median(timer.seconds[1:]), "test_ndcg@100": ndcg}


def _worker(rank: int, size: int, init_file: str, out: str, epochs: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        result = _train(GLOBAL_BATCH // size, epochs)
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        distributed.shutdown()


def _single(threads: int | None, out: str, epochs: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    Path(out).write_text(json.dumps(_train(GLOBAL_BATCH, epochs)))


def run(nproc: int, epochs: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, threads in ((f"1 process, {torch.get_num_threads()} threads", None), ("1 process, 1 thread", 1)):
            out = str(Path(tmp) / f"{threads}.json")
            ctx = mp.get_context("spawn")
            proc = ctx.Process(target=_single, args=(threads, out, epochs))
            proc.start()
            proc.join()
            rows.append({"setup": label, "batch_size": GLOBAL_BATCH, **json.loads(Path(out).read_text())})
        out = str(Path(tmp) / "ddp.json")
        mp.start_processes(
            _worker, args=(nproc, str(Path(tmp) / "rdzv"), out, epochs), nprocs=nproc, start_method="spawn"
        )
        rows.append(
            {
                "setup": f"{nproc} processes (gloo), 1 thread each",
                "batch_size": GLOBAL_BATCH // nproc,
                **json.loads(Path(out).read_text()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rows = run(args.nproc, args.epochs)
    print(json.dumps({"machine": machine(), "epochs": args.epochs, "rows": rows}))
    table = [
        [r["setup"], str(r["batch_size"]), f"{r['epoch_s_median']:.3f}", f"{r['test_ndcg@100']:.4f}"] for r in rows
    ]
    header = ["set-up", "batch_size per process", "epoch s (median)", "test NDCG@100"]
    print("\n".join(markdown_table(None, header, table)))


if __name__ == "__main__":
    main()
