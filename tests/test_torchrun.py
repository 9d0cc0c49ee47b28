"""`recforge run` on 2 CPU processes (torchrun, gloo) against one process with the same global batch.

The batch order is the same on every rank and the processes split each group of batches, so two processes
with ``batch_size = B`` make the updates of one process with ``2 B``; only the draws of dropout and of the VAE's
noise differ (each rank draws for its own rows), hence a small tolerance. Rank 0 alone writes the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import needs_ml100k

pytestmark = needs_ml100k


def _run(args: list[str], output_dir: Path, *, launcher: list[str] | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*(launcher or [sys.executable, "-m", "recforge"]), "run", *args, "--output-dir", str(output_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in output_dir.iterdir() if not p.name.startswith(".") and p.is_dir()]
    assert len(runs) == 1, runs  # one run directory, whatever the number of processes
    assert not list(output_dir.glob(".*.tmp"))
    return json.loads((runs[0] / "metrics.json").read_text())


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "recforge"]


def test_multivae_on_two_processes_matches_one(tmp_path):
    args = ["--dataset", "ml-100k", "--split", "liang2018", "--set", "split.heldout_users=100", "--model", "multivae"]
    args += [
        "--set",
        "model.hidden_dims=[200]",
        "--set",
        "model.max_epochs=8",
        "--set",
        'evaluation.metrics=["ndcg@100"]',
    ]
    one = _run([*args, "--set", "model.batch_size=200"], tmp_path / "one")
    two = _run([*args, "--set", "model.batch_size=100", "--nproc", "2"], tmp_path / "two")  # the shortcut
    for part in ("valid", "test"):
        assert two[part]["n_users"] == one[part]["n_users"] == 100
        assert two[part]["metrics"]["ndcg@100"] == pytest.approx(one[part]["metrics"]["ndcg@100"], abs=0.02)


def test_neumf_on_two_processes_matches_one(tmp_path):
    args = ["--dataset", "ml-100k", "--split", "predefined", "--set", "split.fold=u1"]
    args += ["--set", "split.valid_fraction=0.1", "--model", "neumf", "--set", "model.max_epochs=3"]
    args += ["--set", 'evaluation.metrics=["ndcg@10"]']
    one = _run([*args, "--set", "model.batch_size=512"], tmp_path / "one")
    two = _run([*args, "--set", "model.batch_size=256"], tmp_path / "two", launcher=TORCHRUN)
    for part in ("valid", "test"):
        assert two[part]["metrics"]["rating_rmse"] == pytest.approx(one[part]["metrics"]["rating_rmse"], abs=0.005)
        assert two[part]["metrics"]["ndcg@10"] == pytest.approx(one[part]["metrics"]["ndcg@10"], abs=0.01)
