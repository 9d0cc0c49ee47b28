"""Figures of a run: training curves (loss and its parts, validation metric, patience) and metric bars.

Only this layer imports matplotlib; figures are built with its object API (no pyplot, no global
backend state), and every function writes a PNG (under a temporary name, then renamed) and returns its path.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


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

    A resumed training's log (the Trainer's History is restored from the checkpoint) continues the epochs; a log
    written by a training restarted from an earlier epoch -- epochs logged twice, the counter going back -- keeps
    each epoch's last entry, and the epochs where training restarted are marked.
    """
    frame = pd.DataFrame(log)
    if frame.empty or "epoch" not in frame:
        raise ValueError("the training log is empty or has no 'epoch' column")
    epochs_logged = frame["epoch"].to_numpy()
    restarts = [float(e) + 1 for prev, e in itertools.pairwise(epochs_logged) if e <= prev]
    frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch").reset_index(drop=True)
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
    for i, epoch in enumerate(restarts):
        marker = ax.axvline(epoch, color="grey", linestyle=":", label="training restarted")
        if i == 0:
            lines.append(marker)
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
            (patience,) = twin.step(
                epochs, frame["patience"], where="mid", color="tab:red", alpha=0.4, label="patience →"
            )
            twin.set_ylabel("patience: epochs without improvement", color="tab:red")
            twin.set_ylim(0, max(1.0, float(frame["patience"].max())) + 0.5)
            twin.yaxis.set_major_locator(MaxNLocator(integer=True))
            handles, labels = ax.get_legend_handles_labels()
            ax.legend([*handles, patience], [*labels, patience.get_label()], loc="lower left")
    return _save(fig, path)


def plot_metric_bars(results: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Grouped bars: one group per metric, one bar per model (``{model: {metric: value}}``)."""
    frame = pd.DataFrame(results)
    if frame.empty:
        raise ValueError("no results to plot")
    fig = Figure(figsize=(max(5, 1.5 * len(frame)) + 2.5, 4), layout="constrained")
    ax = fig.subplots()
    frame.plot.bar(ax=ax, rot=0)
    ax.set(ylabel="value", title="test metrics")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # beside the bars, never over them
    return _save(fig, path)


def plot_comparison(rows: Sequence[Mapping[str, object]], path: str | Path) -> Path:
    """``recforge compare --plot``: per metric, each run's mean difference to the reference run (the first) with
    its 95% bootstrap interval as whiskers; a star marks a significant difference.

    ``rows`` are the rows of :meth:`recforge.experiments.compare.Comparison.to_json` (``metric``, ``short_id``,
    ``reference``, ``diff``, ``ci_low``, ``ci_high``, ``significant``).
    """
    frame = pd.DataFrame(list(rows))
    if frame.empty or "metric" not in frame:
        raise ValueError("no comparison to plot")
    others = frame[~frame["reference"].astype(bool)]
    if others.empty:
        raise ValueError("no run to compare with the reference")
    reference = str(frame.loc[frame["reference"].astype(bool), "short_id"].iloc[0])
    metrics = list(dict.fromkeys(frame["metric"]))
    fig = Figure(figsize=(max(5.0, 2.2 * len(metrics) * max(1, len(others) / len(metrics))), 4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for i, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        part = others[others["metric"] == metric]
        x = list(range(len(part)))
        diff = part["diff"].astype(float).to_numpy()
        low = diff - part["ci_low"].astype(float).to_numpy()
        high = part["ci_high"].astype(float).to_numpy() - diff
        colors = ["tab:green" if d > 0 else "tab:red" for d in diff]
        ax.bar(x, diff, color=colors, alpha=0.7, yerr=[low, high], capsize=4)
        ax.axhline(0.0, color="black", linewidth=0.8)
        ends = zip(diff, part["ci_low"].astype(float), part["ci_high"].astype(float), part["significant"], strict=True)
        for xi, (d, bottom, top, sig) in enumerate(ends):
            if bool(sig):  # beyond the whisker's far end
                ax.annotate("*", (xi, top if d >= 0 else bottom), ha="center", va="bottom" if d >= 0 else "top")
        ax.margins(y=0.12)
        ax.set_xticks(x, part["short_id"].astype(str).tolist(), rotation=20, ha="right", fontsize=8)
        ax.set(title=f"Δ {metric}", ylabel=f"difference to {reference}" if i == 0 else "")
    return _save(fig, path)
