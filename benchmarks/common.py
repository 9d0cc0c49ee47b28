"""What every benchmark script shares: peak memory, the machine's description, one stage per fresh process, and
per-epoch wall times of a model trained by the Trainer."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def machine() -> dict:
    """Date, Python version and the first lines of ``lscpu``."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()[:10]
    except OSError:
        lscpu = []
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "lscpu": lscpu}


def run_in_fresh_process(script: str, args: list[str], threads: int | None = None) -> dict:
    """Run ``script ARGS --json`` in a new interpreter and return the JSON line it prints last."""
    cmd = [sys.executable, script, *args, "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    # passive OpenMP waits: with spinning workers, a core taken by another process slows small ops ~100x
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"stage {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def epoch_timer() -> Any:
    """A Trainer callback recording the wall time of every epoch in its ``seconds`` list; pass it in the
    training options: ``model.fit(train, options=TrainingOptions(callbacks=[timer]))``."""
    from recforge.training.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_fit_start(self, trainer: Any) -> None:
            self._t = time.perf_counter()

        def on_epoch_end(self, trainer: Any, logs: dict[str, float]) -> None:
            now = time.perf_counter()
            self.seconds.append(now - self._t)
            self._t = now

    return EpochTimer()


def markdown_table(caption: str | None, header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table as lines (after its caption and a blank line, if any), followed by a blank line."""
    return [
        *((caption, "") if caption else ()),
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
