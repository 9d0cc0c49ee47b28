"""`recforge report`: one self-contained HTML file, opened in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from recforge.analysis.report import write_report
from recforge.experiments.config import ExperimentConfig
from recforge.experiments.pipeline import run_experiment
from tests.cli_runner import cli


@pytest.fixture(scope="module")
def report_runs(tmp_path_factory, planted_csv) -> tuple[Path, list[Path]]:
    """A Mult-DAE run (training curves) and an EASE run on the same split of the planted CSV."""
    out = tmp_path_factory.mktemp("runs")
    runs = []
    for name, model in (
        ("dae", {"name": "multidae", "max_epochs": 4, "hidden_dims": [16]}),
        ("ease", {"name": "ease"}),
    ):
        tree = {
            "data": {"path": str(planted_csv)},
            "split": {"protocol": "random", "valid": 0.2},
            "model": model,
            "evaluation": {"metrics": ["ndcg@10", "recall@10"]},
            "run": {"output_dir": str(out), "name": name},
        }
        runs.append(run_experiment(ExperimentConfig.model_validate(tree)).run_dir)
    return out, runs


def test_report_is_one_self_contained_file(report_runs, tmp_path, monkeypatch, capsys):
    out, runs = report_runs
    path = tmp_path / "report.html"
    code, stdout, err = cli(monkeypatch, capsys, "report", "dae", "ease", "--output-dir", str(out), "-o", str(path))
    assert code == 0, err
    assert f"wrote {path}" in stdout.replace("\n", "")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    # nothing to fetch: every image is embedded, no script, no external style sheet or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", text)
    assert "<script" not in text and "@import" not in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) >= 3  # metric bars, the comparison, the training curves of the Mult-DAE run
    metrics = json.loads((runs[1] / "metrics.json").read_text())["test"]["metrics"]
    assert f"{metrics['ndcg@10']:.4f}" in text and "<h2>Comparison</h2>" in text
    assert "significant" in text or "n.s." in text


def test_report_without_a_shared_split_says_why(report_runs, tmp_path, planted_csv):
    _, runs = report_runs
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    split = json.loads((other / "split.json").read_text())
    (other / "split.json").write_text(json.dumps({**split, "fingerprint": "0" * 32}))
    from recforge.experiments.compare import SplitMismatch, compare_runs

    with pytest.raises(SplitMismatch) as info:
        compare_runs([runs[0], other])
    path = write_report([runs[0], other], tmp_path / "r.html", notes=[f"no comparison: {info.value}"])
    text = path.read_text()
    assert "no comparison: runs dae and other were evaluated on different splits" in text
    assert "<h2>Comparison</h2>" not in text


def test_report_opens_in_headless_chromium(report_runs, tmp_path, browser):
    _, runs = report_runs
    path = write_report(runs, tmp_path / "report.html", title="planted report")
    page = browser.new_page()
    try:
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        assert page.title() == "planted report"
        rows = page.locator("table.metrics-test tbody tr")
        assert rows.count() == 2
        for i, run in enumerate(runs):
            metrics = json.loads((run / "metrics.json").read_text())["test"]["metrics"]
            row = rows.nth(i).inner_text()
            assert run.name in row and f"{metrics['ndcg@10']:.4f}" in row and f"{metrics['recall@10']:.4f}" in row
        assert page.locator("table.runs tbody tr").count() == 2
        widths = page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 2 and all(w > 100 for w in widths)  # every figure decoded
        assert requests == [path.as_uri()]  # the page fetched nothing else
    finally:
        page.close()
