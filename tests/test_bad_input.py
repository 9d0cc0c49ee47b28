"""Bad input through the command line, one row per case: the arguments and the files they need, the expected exit
status, the expected words of the message, and that nothing is left behind (no run folder, no temporary folder, no
registry row) and that stderr has no traceback.

Placeholders in a row's arguments: ``{csv}`` a small ratings file (user,item,rating,timestamp), ``{out}`` an empty
output folder of the case, ``{run}`` a fresh copy of one small finished run (EASE under liang2018, made once for the
module), ``{heldout}`` a user of that run's test part (held out of training), ``{tmp}`` the case's folder.
Setup functions write files and monkeypatch faults that root cannot provoke (permission denied, read-only or full
disks, failed renames).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recforge.cli import main
from recforge.experiments import pipeline
from recforge.experiments.runs import REGISTRY_FILE, RunRegistry, RunWriter
from recforge.models import base
from recforge.models.autoencoders import MultiDAE
from tests.cli_runner import cli


# ---------------------------------------------------------------------------------------------- helpers
def ratings_csv(path: Path, *, users: int = 60, items: int = 40, per_user: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, users + 1):
        for i in rng.choice(np.arange(1, items + 1), per_user, replace=False):
            rows.append((u, int(i), int(rng.integers(1, 6)), int(rng.integers(1_000_000, 2_000_000))))
    pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).to_csv(path, index=False)
    return path


@dataclass
class Ctx:
    tmp: Path
    out: Path
    csv: Path
    run: Path
    heldout: str
    monkeypatch: pytest.MonkeyPatch

    def weights(self) -> Path:
        return self.run / "model" / "weights.safetensors"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """One small run for the module: the ratings file, the run folder and a held-out user of its test part."""
    root = tmp_path_factory.mktemp("bad-input-base")
    csv = ratings_csv(root / "events.csv")
    args = ["run", "--dataset", str(csv), "--model", "ease", "--set", "model.l2=10", "--split", "liang2018"]
    args += ["--set", "split.heldout_users=10", "--set", "split.min_rating=0", "--output-dir", str(root / "runs")]
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["recforge", *args, "--set", "run.name=base"])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    finally:
        mp.undo()
    run = root / "runs" / "base"
    heldout = json.loads((run / "heldout_users.json").read_text())["test"][0]
    return csv, run, str(heldout)


# ---------------------------------------------------------------------------------------------- setups
def _meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def truncate_weights(c: Ctx) -> None:
    data = c.weights().read_bytes()
    c.weights().write_bytes(data[: len(data) // 2])


def pickle_weights(c: Ctx) -> None:
    torch.save({"weights": torch.zeros(3)}, c.weights())  # a pickle where safetensors are expected


def huge_header(c: Ctx) -> None:
    data = c.weights().read_bytes()
    c.weights().write_bytes(struct.pack("<Q", 1 << 40) + data[8:])


def random_weights(c: Ctx) -> None:
    c.weights().write_bytes(np.random.default_rng(0).bytes(4096))


def drop_tensor(c: Ctx) -> None:
    tensors, meta = load_file(c.weights()), _meta(c.weights())
    del tensors["state.weights"]
    save_file(tensors, c.weights(), metadata=meta)


def bigger_layer(c: Ctx) -> None:
    tensors, meta = load_file(c.weights()), _meta(c.weights())
    n = tensors["state.weights"].shape[0]
    tensors["state.weights"] = torch.zeros(n + 1, n + 1)
    save_file(tensors, c.weights(), metadata=meta)


def swap_item_ids(c: Ctx) -> None:
    path = c.run / "model" / "ids.json"
    ids = json.loads(path.read_text())
    items = ids["items"]["ids"]
    items[0], items[1] = items[1], items[0]  # same ids, other order: other items would be recommended
    path.write_text(json.dumps(ids))


def broken_model_config(c: Ctx) -> None:
    (c.run / "model" / "config.json").write_text("{ not json")


def broken_registry(c: Ctx) -> None:
    c.out.mkdir()
    (c.out / REGISTRY_FILE).write_bytes(b"this is not an SQLite database\n" * 64)


def toml_folder(c: Ctx) -> None:
    (c.tmp / "exp.toml").mkdir()


def bad_toml(c: Ctx) -> None:
    (c.tmp / "exp.toml").write_bytes(b"[data]\ndataset = \xff\xfe\n")


def one_row(c: Ctx) -> None:
    (c.tmp / "one.csv").write_text("user,item,rating\n1,2,5\n")


def disjoint_test_users(c: Ctx) -> None:
    (c.tmp / "train.csv").write_text("user,item,rating\n1,10,5\n1,11,4\n2,10,3\n2,12,5\n")
    (c.tmp / "test.csv").write_text("user,item,rating\n7,10,5\n8,11,4\n")


def few_events_per_user(c: Ctx) -> None:
    ratings_csv(c.tmp / "few.csv", users=40, items=30, per_user=4)  # < 5 events: liang2018 holds out no target


def nan_metric(c: Ctx) -> None:
    merge = pipeline._merge

    def with_nan(results):
        out = merge(results)
        out["metrics"]["ndcg@100"] = float("nan")
        return out

    c.monkeypatch.setattr(pipeline, "_merge", with_nan)


def infinite_metric(c: Ctx) -> None:
    merge = pipeline._merge

    def with_inf(results):
        out = merge(results)
        out["metrics"]["recall@20"] = float("inf")
        return out

    c.monkeypatch.setattr(pipeline, "_merge", with_inf)


def nan_loss(c: Ctx) -> None:
    step = MultiDAE.training_step

    def diverging(self, module, batch, ctx):
        out = step(self, module, batch, ctx)
        return {**out, "loss": out["loss"] * float("nan")} if isinstance(out, dict) else out * float("nan")

    c.monkeypatch.setattr(MultiDAE, "training_step", diverging)


def _under(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def deny_output_folder(c: Ctx) -> None:
    mkdir = Path.mkdir

    def denied(self, *args, **kwargs):
        if _under(self, c.out):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    c.monkeypatch.setattr(Path, "mkdir", denied)


def read_only_output_folder(c: Ctx) -> None:
    c.out.mkdir()
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if _under(self, c.out) and self != c.out:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return mkdir(self, *args, **kwargs)

    c.monkeypatch.setattr(Path, "mkdir", read_only)


def full_disk(c: Ctx) -> None:
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    c.monkeypatch.setattr(base, "save_file", no_space)


def failing_rename(c: Ctx) -> None:
    replace = os.replace

    def refuse(src, dst, *args, **kwargs):
        if Path(dst).parent == c.out and not Path(dst).name.startswith("."):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return replace(src, dst, *args, **kwargs)

    c.monkeypatch.setattr(os, "replace", refuse)


def failing_registry_write(c: Ctx) -> None:
    def full(self, *args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    c.monkeypatch.setattr(RunRegistry, "_insert", full)


def denied_output_file(c: Ctx) -> None:
    (c.tmp / "ro").mkdir()
    write_text = Path.write_text

    def denied(self, *args, **kwargs):
        if _under(self, c.tmp / "ro"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return write_text(self, *args, **kwargs)

    c.monkeypatch.setattr(Path, "write_text", denied)


def full_disk_output_file(c: Ctx) -> None:
    replace = os.replace

    def no_space(src, dst, *args, **kwargs):
        if Path(dst).name == "recs.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return replace(src, dst, *args, **kwargs)

    c.monkeypatch.setattr(os, "replace", no_space)


def bug(c: Ctx) -> None:
    def broken(*args, **kwargs):
        raise TypeError("boom")

    c.monkeypatch.setattr(pipeline, "make_split", broken)


def ctrl_c(c: Ctx) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    c.monkeypatch.setattr(pipeline, "make_split", interrupted)


def truncated_stream(c: Ctx) -> None:
    def ended(*args, **kwargs):
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    c.monkeypatch.setattr(pipeline, "load_raw", ended)


def gz_files(c: Ctx) -> None:
    data = c.csv.read_bytes()
    (c.tmp / "trunc.csv.gz").write_bytes(gzip.compress(data)[:300])
    (c.tmp / "plain.csv.gz").write_bytes(data)
    (c.tmp / "random.csv").write_bytes(np.random.default_rng(1).bytes(3000))


def no_cuda(c: Ctx) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")


# ---------------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    words: tuple[str, ...]
    setup: Callable[[Ctx], None] | None = None
    error_line: bool = True  # the last line of stderr is the one error line
    traceback: bool = False  # only with --debug


RUN = ("run", "--dataset", "{csv}", "--output-dir", "{out}")
POP = (*RUN, "--model", "popularity")
EASE = (*RUN, "--model", "ease", "--set", "model.l2=10")
SAFE = ("safe folder name", "letters, digits")
LIANG_ALL = ("--set", "split.min_rating=0", "--set", "split.min_user_count=1")
CASES = [
    # -- run.name is a folder name inside the output folder, nothing else
    Case("run-name-escapes", (*POP, "--set", 'run.name="./../escaped"'), 2, ("run.name", *SAFE)),
    Case("run-name-parent", (*POP, "--set", 'run.name="../x"'), 2, ("run.name", *SAFE)),
    Case("run-name-absolute", (*POP, "--set", 'run.name="/abs"'), 2, ("run.name", *SAFE)),
    Case("run-name-subfolder", (*POP, "--set", 'run.name="a/b"'), 2, ("run.name", *SAFE)),
    Case("run-name-dotdot", (*POP, "--set", 'run.name=".."'), 2, ("run.name", *SAFE)),
    Case("run-name-hidden", (*POP, "--set", 'run.name=".hidden"'), 2, ("run.name", *SAFE)),
    # -- a flag and a --set of the same key must agree
    Case("model-flag-vs-set", (*POP, "--set", "model.name=ease"), 2, ("--model popularity", "model.name=ease")),
    Case("split-flag-vs-set", (*POP, "--split", "random", "--set", "split.protocol=temporal"), 2, ("--split",)),
    Case("seed-flag-vs-set", (*POP, "--seed", "1", "--set", "run.seed=2"), 2, ("--seed 1", "run.seed=2")),
    Case("dataset-flag-vs-set", (*POP, "--set", "data.path='x.csv'"), 2, ("--dataset", "data.path='x.csv'")),
    # -- config and data source
    Case("toml-is-a-folder", ("run", "{tmp}/exp.toml"), 2, ("exp.toml", "is a folder"), toml_folder),
    Case("toml-not-utf8", ("run", "{tmp}/exp.toml"), 2, ("exp.toml", "UTF-8"), bad_toml),
    Case(
        "set-dataset-to-a-file",
        ("run", "--model", "ease", "--set", "data.dataset='events.csv'", "--output-dir", "{out}"),
        2,
        ("data.dataset", "data.path"),
    ),
    Case(
        "missing-csv", ("run", "--dataset", "{tmp}/nope.csv", "--model", "ease", "--output-dir", "{out}"), 2, ("nope",)
    ),
    Case("liang-without-heldout", (*EASE, "--split", "liang2018"), 2, ("split.heldout_users", "splits list")),
    Case("cuda-without-cuda", (*POP, "--device", "cuda"), 2, ("training.device", "CUDA"), no_cuda),
    Case("truncated-gzip", (*POP[:2], "{tmp}/trunc.csv.gz", *POP[3:]), 2, ("trunc.csv.gz",), gz_files),
    Case("not-gzip", (*POP[:2], "{tmp}/plain.csv.gz", *POP[3:]), 2, ("plain.csv.gz",), gz_files),
    Case("random-bytes", (*POP[:2], "{tmp}/random.csv", *POP[3:]), 2, ("random.csv",), gz_files),
    Case("truncated-stream", POP, 2, ("ended too early",), truncated_stream),
    # -- nothing wrong with exit 0
    Case("one-row-file", (*POP[:2], "{tmp}/one.csv", *POP[3:]), 2, ("test part", "no users"), one_row),
    Case(
        "test-users-unknown-to-train",
        (
            *POP,
            "--split",
            "predefined",
            "--set",
            "split.train_path='{tmp}/train.csv'",
            "--set",
            "split.test_path='{tmp}/test.csv'",
        ),
        2,
        ("test part", "no users", "dropped"),
        disjoint_test_users,
    ),
    Case(
        "heldout-users-without-targets",
        (*POP[:2], "{tmp}/few.csv", *POP[3:], "--split", "liang2018", "--set", "split.heldout_users=5", *LIANG_ALL),
        2,
        ("part", "no users"),
        few_events_per_user,
    ),
    Case("empty-after-filters", (*POP, "--set", "data.min_rating=100"), 2, ("training part", "empty")),
    Case("nan-metric", POP, 2, ("not finite", "ndcg@100 = nan"), nan_metric),
    Case("infinite-metric", POP, 2, ("not finite", "recall@20 = inf"), infinite_metric),
    Case(
        "nan-loss",
        (*RUN, "--model", "multidae", "--set", "model.hidden_dims=[4]", "--set", "model.max_epochs=2"),
        2,
        ("multidae diverged", "learning_rate"),
        nan_loss,
    ),
    # -- the run folder and the registry, one unit
    Case("broken-registry", POP, 2, ("registry", "move it away"), broken_registry),
    Case("broken-registry-list", ("runs", "list", "--output-dir", "{out}"), 2, ("registry",), broken_registry),
    Case("permission-denied", POP, 2, ("cannot write the run into", "Permission denied"), deny_output_folder),
    Case("read-only-folder", POP, 2, ("cannot write the run into", "Read-only"), read_only_output_folder),
    Case("full-disk", EASE, 2, ("cannot write the run into", "No space left"), full_disk),
    Case("rename-fails", POP, 2, ("cannot write the run into", "cross-device"), failing_rename),
    Case("registry-write-fails", POP, 2, ("registry", "disk is full"), failing_registry_write),
    # -- recommend
    Case("k-zero", ("recommend", "{run}", "--user", "1", "-k", "0"), 2, ("-k", "0")),
    Case("k-not-a-number", ("recommend", "{run}", "--user", "1", "-k", "many"), 2, ("-k", "integer")),
    Case("items-empty", ("recommend", "{run}", "--items", ""), 2, ("--items", "no item ids")),
    Case("items-one-unknown", ("recommend", "{run}", "--items", "5,abc"), 2, ("unknown item id(s): abc",)),
    Case("items-some-rated", ("recommend", "{run}", "--items", "5:5,7"), 2, ("rating for every item",)),
    Case("items-rating-inf", ("recommend", "{run}", "--items", "5:inf"), 2, ("not a finite number",)),
    Case("user-unknown", ("recommend", "{run}", "--user", "99999"), 2, ("unknown user id(s): 99999",)),
    Case(
        "user-held-out",
        ("recommend", "{run}", "--user", "{heldout}"),
        2,
        ("{heldout}", "held out of training by the split; use --items with their history"),
    ),
    Case("user-and-items", ("recommend", "{run}", "--user", "1", "--items", "5"), 2, ("exactly one of",)),
    Case("not-a-run", ("recommend", "{tmp}", "--user", "1"), 2, ("not a recforge run directory",)),
    Case("output-is-a-folder", ("recommend", "{run}", "--user", "1", "--output", "{tmp}"), 2, ("is a folder",)),
    Case(
        "output-permission-denied",
        ("recommend", "{run}", "--user", "1", "--output", "{tmp}/ro/recs.jsonl"),
        2,
        ("--output", "recs.jsonl", "Permission denied"),
        denied_output_file,
    ),
    Case(
        "output-disk-full",
        ("recommend", "{run}", "--user", "1", "--output", "{tmp}/recs.jsonl"),
        2,
        ("--output", "No space left"),
        full_disk_output_file,
    ),
    # -- saved models: every damaged file named, never a safetensors or torch traceback
    Case("weights-truncated", ("recommend", "{run}", "--user", "1"), 2, ("weights.safetensors",), truncate_weights),
    Case("weights-pickle", ("recommend", "{run}", "--user", "1"), 2, ("weights.safetensors",), pickle_weights),
    Case("weights-header", ("recommend", "{run}", "--user", "1"), 2, ("weights.safetensors", "header"), huge_header),
    Case("weights-random", ("recommend", "{run}", "--user", "1"), 2, ("weights.safetensors",), random_weights),
    Case(
        "weights-no-tensor",
        ("recommend", "{run}", "--user", "1"),
        2,
        ("weights.safetensors", "state.weights"),
        drop_tensor,
    ),
    Case(
        "weights-layer-size",
        ("recommend", "{run}", "--user", "1"),
        2,
        ("weights.safetensors", "ids.json"),
        bigger_layer,
    ),
    Case("ids-edited", ("recommend", "{run}", "--user", "1"), 2, ("ids.json", "edited"), swap_item_ids),
    Case(
        "model-config-broken",
        ("recommend", "{run}", "--user", "1"),
        2,
        ("config.json", "not valid JSON"),
        broken_model_config,
    ),
    Case("evaluate-damaged-weights", ("evaluate", "{run}"), 2, ("weights.safetensors",), truncate_weights),
    Case("plot-without-log", ("plot", "{run}"), 2, ("training_log.csv",)),
    # -- the error boundary itself
    Case("bug", POP, 1, ("internal error", "bug in recforge", "TypeError: boom", "--debug"), bug),
    Case("bug-debug", ("--debug", *POP), 1, ("internal error", "TypeError: boom"), bug, traceback=True),
    Case("ctrl-c", POP, 130, (), ctrl_c, error_line=False),
]


def _registry_rows(out: Path) -> int:
    path = out / REGISTRY_FILE
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            return con.execute("SELECT count(*) FROM runs").fetchone()[0]
    except sqlite3.Error:
        return 0  # the broken registry of its own case


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, base_run, tmp_path, monkeypatch, capsys):
    csv, run, heldout = base_run
    ctx = Ctx(
        tmp=tmp_path, out=tmp_path / "out", csv=csv, run=tmp_path / "run", heldout=heldout, monkeypatch=monkeypatch
    )
    shutil.copytree(run, ctx.run)
    monkeypatch.chdir(tmp_path)
    if case.setup is not None:
        case.setup(ctx)
    values = {"csv": csv, "out": ctx.out, "run": ctx.run, "tmp": tmp_path, "heldout": heldout}
    args = [a.format(**values) for a in case.args]

    code, stdout, err = cli(monkeypatch, capsys, *args)
    monkeypatch.undo()  # the faults end with the command

    assert code == case.code, err
    for word in case.words:
        assert word.format(**values) in err, err
    assert ("Traceback" in err) == case.traceback, err
    if case.error_line:
        lines = err.strip().splitlines()
        assert lines and [line for line in lines if line.startswith(("error:", "internal error"))] == lines[-1:], err
    # nothing left behind
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
    assert not leftovers
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    if ctx.out.exists():
        assert not [p for p in ctx.out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert _registry_rows(ctx.out) == 0
    assert not [p for p in ctx.run.parent.iterdir() if p.name.startswith(".")]
    if case.args[0] == "recommend" and code == 2:
        assert stdout == ""


# ---------------------------------------------------------------------------------------------- around the table
def test_the_table_runs_quickly_enough_to_stay_in_ci():
    assert len(CASES) >= 50 and len({c.id for c in CASES}) == len(CASES)


KILLED_IN_COMMIT = """
import os, sys
from pathlib import Path
from recforge.experiments import runs
out = Path(sys.argv[1])
writer = runs.RunWriter(out, "first")
config = {"data": {"path": "x.csv"}, "split": {"protocol": "random"}, "model": {"name": "ease"}}
writer.write_json("config.json", config)
writer.write_json("metrics.json", {"test": {"metrics": {"ndcg@100": 0.5}}})
replace = os.replace
def replace_then_die(src, dst):
    replace(src, dst)
    os._exit(9)  # killed after the rename, before the registry transaction commits
os.replace = replace_then_die
writer.commit()
"""


def test_a_run_killed_between_rename_and_commit_is_registered_by_the_next(base_run, tmp_path, monkeypatch, capsys):
    csv, _, _ = base_run
    out = tmp_path / "runs"
    RunRegistry(out).add("older", dataset="d", split="random", model="ease", metrics={}, path=out / "older")
    (out / "older").mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_IN_COMMIT, str(out)], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    assert (out / "first" / "metrics.json").exists()
    assert [r["id"] for r in RunRegistry(out).list()] == ["older"]  # the killed transaction was rolled back
    code, _, err = cli(monkeypatch, capsys, *[a.format(csv=csv, out=out) for a in POP], "--set", "run.name=second")
    assert code == 0, err
    assert [r["id"] for r in RunRegistry(out).list()] == ["first", "older", "second"]  # reconciled at the start
    code, stdout, _ = cli(monkeypatch, capsys, "runs", "list", "--output-dir", str(out))
    assert code == 0 and "first" in stdout and "second" in stdout


def test_a_registered_run_whose_folder_is_gone_is_not_listed_and_its_name_is_free(base_run, tmp_path):
    out = tmp_path / "runs"
    writer = RunWriter(out, "gone")
    writer.write_json(
        "config.json", {"data": {"path": "x.csv"}, "split": {"protocol": "random"}, "model": {"name": "ease"}}
    )
    writer.write_json("metrics.json", {"test": {"metrics": {"ndcg@100": 0.5}}})
    writer.commit()
    assert [r["id"] for r in RunRegistry(out).list()] == ["gone"]
    shutil.rmtree(out / "gone")
    assert RunRegistry(out).list() == []
    again = RunWriter(out, "gone")  # the name is free again; the stale row is replaced
    again.write_json("config.json", {"data": {"dataset": "ml-100k"}, "split": {}, "model": {"name": "ease"}})
    again.write_json("metrics.json", {})
    again.commit()
    assert [r["dataset"] for r in RunRegistry(out).list()] == ["ml-100k"]


def test_metrics_json_is_strict_json(base_run, tmp_path):
    _, run, _ = base_run
    text = (run / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"metrics.json holds {c}"))
    writer = RunWriter(tmp_path / "runs", "strict")
    with pytest.raises(ValueError, match="JSON"):
        writer.write_json("metrics.json", {"ndcg@100": float("nan")})  # never NaN/Infinity in a run's JSON
    writer.discard()


def test_two_runs_with_one_name_leave_one_folder_one_row_and_no_temporary(tmp_path):
    out = tmp_path / "runs"
    writers = [RunWriter(out, "same") for _ in range(3)]  # started together: none of them sees the others' folder
    for w in writers:
        w.write_json("config.json", {"data": {"dataset": "ml-100k"}, "split": {}, "model": {"name": "ease"}})
        w.write_json("metrics.json", {})
    writers[0].commit()
    for w in writers[1:]:
        with pytest.raises(FileExistsError, match=r"run\.name"):
            w.commit()
        w.discard()
    assert sorted(p.name for p in out.iterdir()) == [REGISTRY_FILE, "same"]
    assert [r["id"] for r in RunRegistry(out).list()] == ["same"]
