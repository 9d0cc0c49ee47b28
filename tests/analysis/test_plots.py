"""Plots are written as PNG files from a training log or a results table; bad input is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from recforge.analysis import plots
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


def test_total_loss_is_drawn_on_top_and_kl_on_its_own_axis(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    rows = [{"epoch": float(e), "train_loss": 300.0 - e, "train_nll": 299.0 - e, "train_kl": 0.5 * e} for e in range(5)]
    plot_training_curves(rows, tmp_path / "curves.png")
    training, kl_axis = figures[0].axes
    total, nll = training.get_lines()
    assert (total.get_label(), nll.get_label()) == ("total loss", "nll")
    assert total.get_zorder() > nll.get_zorder() and total.get_linewidth() > nll.get_linewidth()
    assert [line.get_label() for line in kl_axis.get_lines()] == ["kl →"]  # not on the loss axis
    assert "right axis" in kl_axis.get_ylabel()


def test_curves_of_a_restarted_training_keep_each_epochs_last_entry(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or Path(path))
    first = log(4)  # epochs 0-3, then the training restarted from its checkpoint after epoch 1
    again = [dict(r, train_loss=r["train_loss"] / 2) for r in log(6)[2:]]
    plot_training_curves(first + again, tmp_path / "curves.png")
    training = figures[0].axes[0]
    total = training.get_lines()[0]
    assert list(total.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(total.get_ydata())[2:] == [r["train_loss"] for r in again]
    texts = [t.get_text() for t in training.get_legend().get_texts()]
    assert "training restarted" in texts and "total loss" in texts and "kl →" in texts
    validation = figures[0].axes[1]
    assert "patience →" in [t.get_text() for t in validation.get_legend().get_texts()]
