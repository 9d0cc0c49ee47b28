"""Figures of a run: training curves (loss and its parts, validation metric, patience) and metric bars.

Only this layer imports matplotlib; figures are built with its object API (no pyplot, no global
backend state), and every function writes a PNG (under a temporary name, then renamed) and returns its path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    return path


#: Loss parts on another scale than the total: drawn on their own (right-hand) axis.
_OWN_AXIS_PARTS = ("kl",)


def plot_training_curves(log: pd.DataFrame | Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Per-epoch training loss and its named parts, validation metrics and the patience counter.

    The total loss (``train_loss``) is the thick line drawn on top; its parts are thin dashed lines on the same
    axis, except the KL divergence, whose scale differs, on its own right-hand axis. ``log`` is a model's
    ``training_log_`` (one dict per epoch, as written by the Trainer's History) or the ``training_log.csv`` of a
    run directory. The best epoch, when logged, is marked.
    """
    frame = pd.DataFrame(log)
    if frame.empty or "epoch" not in frame:
        raise ValueError("the training log is empty or has no 'epoch' column")
    epochs = frame["epoch"] + 1
    train_cols = [c for c in frame if c.startswith("train_")]
    valid_cols = [c for c in frame if c.startswith("valid_")]
    fig = Figure(figsize=(12 if valid_cols else 6.5, 4), layout="constrained")  # room for the right-hand axes
    axes = fig.subplots(1, 2 if valid_cols else 1, squeeze=False)
    ax = axes[0, 0]
    lines = []
    if "train_loss" in frame:
        lines += ax.plot(epochs, frame["train_loss"], color="black", linewidth=2.2, label="total loss", zorder=3)
    parts = [c for c in train_cols if c != "train_loss"]
    own_axis = [c for c in parts if c.removeprefix("train_") in _OWN_AXIS_PARTS]
    for col in parts:
        if col not in own_axis:
            lines += ax.plot(epochs, frame[col], linestyle="--", linewidth=1.2, label=col.removeprefix("train_"))
    ax.set(xlabel="epoch", ylabel="training loss", title="training")
    if own_axis:
        twin = ax.twinx()
        for col in own_axis:
            name = col.removeprefix("train_")
            lines += twin.plot(epochs, frame[col], color="tab:purple", linestyle=":", linewidth=1.5, label=f"{name} →")
        twin.set_ylabel(", ".join(c.removeprefix("train_") for c in own_axis) + " (right axis)", color="tab:purple")
        twin.tick_params(axis="y", colors="tab:purple")
    if lines:
        ax.legend(lines, [line.get_label() for line in lines], loc="upper right")
    if valid_cols:
        ax = axes[0, 1]
        for col in valid_cols:
            ax.plot(epochs, frame[col], marker=".", label=col.removeprefix("valid_"))
        if "best_epoch" in frame and frame["best_epoch"].iloc[-1] >= 0:
            ax.axvline(frame["best_epoch"].iloc[-1] + 1, color="grey", linestyle="--", label="best epoch")
        ax.set(xlabel="epoch", ylabel="validation", title="validation")
        ax.legend(loc="lower left")
        if "patience" in frame:
            twin = ax.twinx()
            twin.step(epochs, frame["patience"], where="mid", color="tab:red", alpha=0.4)
            twin.set_ylabel("epochs without improvement", color="tab:red")
    return _save(fig, path)


def plot_metric_bars(results: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Grouped bars: one group per metric, one bar per model (``{model: {metric: value}}``)."""
    frame = pd.DataFrame(results)
    if frame.empty:
        raise ValueError("no results to plot")
    fig = Figure(figsize=(max(5, 1.5 * len(frame)), 4))
    ax = fig.subplots()
    frame.plot.bar(ax=ax, rot=0)
    ax.set(ylabel="value", title="test metrics")
    return _save(fig, path)
