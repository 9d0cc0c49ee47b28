"""One small fit timed alone and beside a busy process, before and after recforge's thread settings (issue 20).

    RECFORGE_DATA=… python benchmarks/bench_threads.py [--repeats 3] [--epochs 30] [--json]

Each figure is a fresh child process that fits Mult-VAE [I-200-I] (batch 100, ``--epochs`` epochs, no validation)
on the ML-100K training users of the ``liang2018`` split (or, without ``RECFORGE_DATA``, on synthetic data of that
shape) and reports its wall time and CPU time (user + system of the child). Variants:

* ``before``: the OpenMP runtime (libgomp, bundled with torch) initialised without ``OMP_WAIT_POLICY``: its
  threads spin at every barrier before sleeping (recforge before issue 20);
* ``after``: ``import recforge`` first, which sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it: waiting
  threads sleep at once.

"Busy" runs the fit beside one single-threaded busy-loop process per core but one (so the fit's threads
share a core with it, as on a shared machine). The variants are interleaved, repeat by repeat. The machine's
load before the run, and the other processes using CPU, are printed with the figures: on a shared machine
absolute seconds are noisy, compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import os, sys, time, json, resource
variant, epochs = sys.argv[1], int(sys.argv[2])
policy = "unset (libgomp default: spin, then sleep)" if variant == "before" else os.environ.get("OMP_WAIT_POLICY")
if variant == "before":
    os.environ.pop("OMP_WAIT_POLICY", None)
    import torch  # libgomp reads its environment now: before recforge could set it
import recforge  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE when torch was not imported yet)
import numpy as np
import torch
from recforge.models.autoencoders import MultiVAE
from recforge.training.options import TrainingOptions

root = os.environ.get("RECFORGE_DATA")
if root and os.path.exists(os.path.join(root, "ml-100k", "u.data")):
    from recforge.data.datasets import load_dataset
    from recforge.data.splits import liang2018
    train = liang2018(load_dataset("ml-100k", data_dir=root, download=False).interactions, heldout_users=100).train
    data = "ml-100k liang2018 training users"
else:
    from recforge.data.synthetic import make_implicit
    train = make_implicit(750, 1400, 65_000, seed=0)
    data = "synthetic 750 x 1400"
model = MultiVAE(hidden_dims=(200,), batch_size=100, max_epochs=epochs, seed=0)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
model.fit(train, options=TrainingOptions(device="cpu", progress_bar=False))
wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "threads": torch.get_num_threads(),
                  "omp_wait_policy": policy or os.environ.get("OMP_WAIT_POLICY"), "data": data}))
"""

BUSY = "while True:\n    pass\n"


def load_and_others() -> dict:
    """The 1-minute load average and the processes (other than ours) using the most CPU right now."""
    out: dict = {"loadavg_1m": os.getloadavg()[0]}
    try:
        ps = subprocess.run(
            ["ps", "-eo", "pcpu,comm", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
        out["top_processes"] = [" ".join(line.split()) for line in ps[:5]]
    except (OSError, subprocess.SubprocessError):
        out["top_processes"] = []
    return out


def one(variant: str, epochs: int, busy: bool) -> dict:
    hogs = []
    if busy:
        for _ in range(max(1, (os.cpu_count() or 2) - 1)):
            hogs.append(subprocess.Popen([sys.executable, "-c", BUSY]))
        time.sleep(0.5)
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, variant, str(epochs)], capture_output=True, text=True, check=True
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    before_run = load_and_others()
    cases = [(busy, variant) for busy in (False, True) for variant in ("before", "after")]
    runs_of: dict = {case: [] for case in cases}
    for _ in range(args.repeats):  # interleaved, so that a change of the machine's load hits every variant alike
        for busy, variant in cases:
            runs_of[busy, variant].append(one(variant, args.epochs, busy))
    rows = []
    for busy, variant in cases:
        runs = runs_of[busy, variant]
        walls, cpus = [r["wall_s"] for r in runs], [r["cpu_s"] for r in runs]
        rows.append(
            {
                "variant": variant,
                "busy": busy,
                "wall_median_s": statistics.median(walls),
                "wall_range_s": [min(walls), max(walls)],
                "cpu_median_s": statistics.median(cpus),
                "cpu_range_s": [min(cpus), max(cpus)],
                "threads": runs[0]["threads"],
                "omp_wait_policy": runs[0]["omp_wait_policy"],
                "data": runs[0]["data"],
            }
        )
    result = {"machine": {"cpus": os.cpu_count(), **before_run}, "after_run": load_and_others(), "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    top = before_run["top_processes"]
    print(f"machine: {os.cpu_count()} CPUs, load {before_run['loadavg_1m']:.2f} before; top: {top}")
    print(f"{'variant':8} {'beside':10} {'wall s (median, range)':28} {'cpu s':>8}  OMP_WAIT_POLICY")
    for r in rows:
        span = f"{r['wall_median_s']:.2f} ({r['wall_range_s'][0]:.2f}-{r['wall_range_s'][1]:.2f})"
        beside = "busy loop" if r["busy"] else "alone"
        print(f"{r['variant']:8} {beside:10} {span:28} {r['cpu_median_s']:8.2f}  {r['omp_wait_policy']}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    main()
