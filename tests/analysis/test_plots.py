"""Plots are written as PNG files from a training log or a results table; bad input is refused."""

from __future__ import annotations

import pytest

from recforge.analysis.plots import plot_metric_bars, plot_training_curves

PNG = b"\x89PNG"


def log(n=5, valid=True):
    rows = []
    for e in range(n):
        row = {"epoch": float(e), "train_loss": 1.0 / (e + 1), "train_kl": 0.1 * e}
        if valid:
            row |= {"valid_ndcg@100": 0.1 * e, "patience": 0.0, "best_epoch": float(e)}
        rows.append(row)
    return rows


@pytest.mark.parametrize("valid", [True, False])
def test_training_curves_png(tmp_path, valid):
    path = plot_training_curves(log(valid=valid), tmp_path / "curves.png")
    assert path.read_bytes()[:4] == PNG
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_metric_bars_png(tmp_path):
    path = plot_metric_bars({"ease": {"ndcg@100": 0.47}, "popularity": {"ndcg@100": 0.25}}, tmp_path / "bars.png")
    assert path.read_bytes()[:4] == PNG


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="epoch"):
        plot_training_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no results"):
        plot_metric_bars({}, tmp_path / "x.png")
