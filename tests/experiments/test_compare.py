"""`recforge compare`: paired per-user differences, bootstrap intervals, t-test / Wilcoxon with Holm, same split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recforge.experiments.compare import (
    SplitMismatch,
    bootstrap_ci,
    check_same_split,
    compare_runs,
    holm,
    load_values,
    paired_tests,
)
from recforge.experiments.config import ExperimentConfig
from recforge.experiments.pipeline import run_experiment
from tests.cli_runner import cli

from .conftest import needs_ml100k


def fake_run(folder: Path, name: str, values: dict[str, np.ndarray], *, fingerprint: str | None = "abc") -> Path:
    """A run folder with just what compare reads: config, metrics, split fingerprint, per-user test values."""
    run = folder / name
    run.mkdir(parents=True)
    users = [f"u{i}" for i in range(len(next(iter(values.values()))))]
    (run / "config.json").write_text(json.dumps({"model": {"name": name}, "data": {"dataset": "d"}}))
    means = {k: float(np.mean(v)) for k, v in values.items()}
    (run / "metrics.json").write_text(json.dumps({"test": {"n_users": len(users), "metrics": means}}))
    (run / "split.json").write_text(json.dumps({} if fingerprint is None else {"fingerprint": fingerprint}))
    pd.DataFrame({"user": users, **values}).to_csv(run / "per_user_test.csv", index=False)
    return run


def test_holm_matches_the_textbook_procedure():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06, 0.06 (running maximum of (m - j + 1) p)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.01]) == [0.01]
    out = holm([float("nan"), 0.01, 0.02])
    assert np.isnan(out[0]) and out[1:] == pytest.approx([0.02, 0.02])


def test_paired_tests_agree_with_scipy_and_handle_no_spread():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    b = a + 0.05 + rng.normal(0, 0.1, 200)
    p_t, p_w = paired_tests(b - a)
    assert p_t == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert p_w == pytest.approx(stats.wilcoxon(b - a).pvalue)
    assert paired_tests(np.zeros(50)) == (1.0, 1.0)
    assert paired_tests(np.full(50, 0.1)) == (0.0, 0.0)


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    d = np.random.default_rng(1).normal(0.02, 0.1, 500)
    low, high = bootstrap_ci(d, n_boot=2000, seed=3)
    assert (low, high) == bootstrap_ci(d, n_boot=2000, seed=3)
    assert low < d.mean() < high
    se = d.std(ddof=1) / np.sqrt(len(d))  # the normal interval, for scale
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_compare_pairs_users_and_corrects_across_runs(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(300)
    runs = [
        fake_run(tmp_path, "a", {"ndcg@10": base}),
        fake_run(tmp_path, "better", {"ndcg@10": np.clip(base + 0.1 + rng.normal(0, 0.05, 300), 0, 1)}),
        fake_run(tmp_path, "same", {"ndcg@10": np.clip(base + rng.normal(0, 0.05, 300), 0, 1)}),
    ]
    c = compare_runs(runs, n_boot=500)
    rows = {r["run"]: r for r in c.rows}
    assert rows["a"]["reference"] and rows["better"]["significant"] and not rows["same"]["significant"]
    assert rows["better"]["ci_low"] < rows["better"]["diff"] < rows["better"]["ci_high"]
    assert rows["better"]["ci_low"] > 0
    for test in ("p_ttest", "p_wilcoxon"):
        assert [rows[r][f"{test}_holm"] for r in ("better", "same")] == pytest.approx(
            holm([rows[r][test] for r in ("better", "same")])
        )
    as_json = c.to_json()
    assert as_json["reference"] == "a" and json.dumps(as_json, allow_nan=False)
    markdown = c.to_markdown()
    assert markdown.startswith("| metric | run |") and "significant" in markdown and "n.s." in markdown


def test_users_are_paired_by_id_not_by_row(tmp_path):
    values = np.linspace(0, 1, 50)
    a = fake_run(tmp_path, "a", {"ndcg@10": values})
    b = fake_run(tmp_path, "b", {"ndcg@10": values})
    frame = pd.read_csv(b / "per_user_test.csv").sample(frac=1.0, random_state=0)  # same users, another order
    frame.to_csv(b / "per_user_test.csv", index=False)
    row = compare_runs([a, b], n_boot=200).rows[1]
    assert row["diff"] == 0 and row["p_ttest"] == 1.0 and not row["significant"]


def test_different_splits_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    a = fake_run(tmp_path, "a", {"ndcg@10": np.ones(5)}, fingerprint="1111")
    b = fake_run(tmp_path, "b", {"ndcg@10": np.ones(5)}, fingerprint="2222")
    old = fake_run(tmp_path, "old", {"ndcg@10": np.ones(5)}, fingerprint=None)
    with pytest.raises(SplitMismatch, match="different splits"):
        check_same_split([load_values(a), load_values(b)])
    with pytest.raises(SplitMismatch, match="no split fingerprint"):
        compare_runs([a, old])
    code, out, err = cli(monkeypatch, capsys, "compare", str(a), str(b))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "different splits" in err


def test_a_trial_has_no_test_values_to_compare(tmp_path):
    a = fake_run(tmp_path, "a", {"ndcg@10": np.ones(5)})
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "config.json").write_text("{}")
    (trial / "metrics.json").write_text(json.dumps({"valid": {"metrics": {}}}))
    with pytest.raises(ValueError, match=r"has no test evaluation.*--part valid"):
        compare_runs([a, trial])


def test_compare_command_outputs(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    a = fake_run(tmp_path, "20261201-101010-d-ease-ab12", {"ndcg@10": rng.random(100), "recall@10": rng.random(100)})
    b = fake_run(tmp_path, "20261201-101011-d-pop-cd34", {"ndcg@10": rng.random(100), "recall@10": rng.random(100)})
    code, out, _ = cli(monkeypatch, capsys, "compare", "d-ease-ab12", "d-pop", "--output-dir", str(tmp_path))
    assert code == 0 and "d-ease-ab12" in out and "95% CI" in out and "Wilcoxon" in out
    code, out, _ = cli(monkeypatch, capsys, "compare", str(a), str(b), "--json", "--metric", "ndcg@10")
    data = json.loads(out)
    assert code == 0 and [r["metric"] for r in data["rows"]] == ["ndcg@10", "ndcg@10"]
    code, out, _ = cli(monkeypatch, capsys, "compare", str(a), str(b), "--markdown", "--plot", str(tmp_path / "c.png"))
    assert code == 0 and out.startswith("| metric |") and (tmp_path / "c.png").stat().st_size > 1000
    code, _, err = cli(monkeypatch, capsys, "compare", str(a), "nope", "--output-dir", str(tmp_path))
    assert code == 2 and "no run 'nope'" in err


# ---------------------------------------------------------------------------------------------- ML-100K
def _ml100k(tmp_path: Path, name: str, model: dict, seed: int = 0) -> Path:
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"dataset": "ml-100k"},
            "split": {"protocol": "liang2018", "heldout_users": 100},
            "model": model,
            "run": {"output_dir": str(tmp_path), "name": name, "seed": seed},
        }
    )
    return run_experiment(cfg).run_dir


@needs_ml100k
def test_ml100k_two_seeds_do_not_differ_but_ease_beats_popularity(tmp_path):
    # iALS trained to its early stop: the seed (its initial factors) moves NDCG@100 by about 0.002 (an
    # undertrained network's seeds can differ for real, and the paired tests then rightly say so)
    seed1 = _ml100k(tmp_path, "ials-seed1", {"name": "ials"}, seed=1)
    seed2 = _ml100k(tmp_path, "ials-seed2", {"name": "ials"}, seed=2)
    same = compare_runs([seed1, seed2])
    assert json.loads((seed1 / "split.json").read_text())["fingerprint"] == same.fingerprint
    assert [r["value"] for r in same.rows if r["reference"]] != [r["value"] for r in same.rows if not r["reference"]]
    assert not any(r["significant"] for r in same.rows if not r["reference"]), same.to_markdown()
    ease = _ml100k(tmp_path, "ease", {"name": "ease", "l2": 100.0})
    popularity = _ml100k(tmp_path, "popularity", {"name": "popularity"})
    versus = compare_runs([popularity, ease])
    rows = [r for r in versus.rows if not r["reference"]]
    assert all(r["significant"] and r["diff"] > 0 and r["ci_low"] > 0 for r in rows), versus.to_markdown()


@needs_ml100k
def test_ml100k_runs_on_another_split_are_refused(tmp_path, monkeypatch, capsys):
    a = _ml100k(tmp_path, "pop-a", {"name": "popularity"})
    cfg = ExperimentConfig.model_validate(
        {
            "data": {"dataset": "ml-100k"},
            "split": {"protocol": "liang2018", "heldout_users": 100, "seed": 1},
            "model": {"name": "popularity"},
            "run": {"output_dir": str(tmp_path), "name": "pop-b"},
        }
    )
    b = run_experiment(cfg).run_dir
    code, _, err = cli(monkeypatch, capsys, "compare", str(a), str(b))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "different splits" in err
