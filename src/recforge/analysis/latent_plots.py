"""Figures of the latent space z by class (tag): class clouds, users by top tag, a user before and after steering.

Each figure is a 2-D scatter with a title, labelled axes and a legend with one colour per class. When z has more
than two dimensions the points are projected: by PCA (the principal axes of the points shown, the explained
variance in the axis labels) or, as an option, by t-SNE (:func:`tsne`, exact, for up to a few thousand points).
Figures use matplotlib's object API (no pyplot) and are written as PNG by :func:`recforge.analysis.plots._save`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from recforge.analysis.latent import ClassStats
from recforge.analysis.plots import _save

__all__ = ["Projection", "class_colours", "plot_class_clouds", "plot_steering", "plot_users", "tsne"]

Method = Literal["pca", "tsne"]


def class_colours(labels: Sequence[str]) -> dict[str, Any]:
    """One distinct colour per class label (tab10; tab20, dark shades first; tab20 + tab20b + tab20c up to 60)."""
    labels = list(labels)
    if len(labels) <= 10:
        palette = list(colormaps["tab10"].colors)
    elif len(labels) <= 20:  # the 10 dark shades first, then their light shades
        tab20 = list(colormaps["tab20"].colors)
        palette = tab20[0::2] + tab20[1::2]
    else:
        palette = [*colormaps["tab20"].colors, *colormaps["tab20b"].colors, *colormaps["tab20c"].colors]
    if len(labels) > len(palette):
        cmap = colormaps["gist_ncar"]
        palette = [cmap(x) for x in np.linspace(0.02, 0.95, len(labels))]
    return {label: palette[i] for i, label in enumerate(labels)}


def tsne(points: np.ndarray, *, perplexity: float = 30.0, n_iter: int = 600, seed: int = 0) -> np.ndarray:
    """Exact t-SNE (van der Maaten & Hinton 2008) of ``points`` to 2-D: binary search of each point's bandwidth for
    ``perplexity``, early exaggeration (x12, 100 iterations), gradient descent with momentum and gains."""
    x = np.asarray(points, dtype=np.float64)
    n = len(x)
    if n < 4:
        raise ValueError("t-SNE needs at least 4 points")
    perplexity = min(perplexity, (n - 1) / 3)
    sq = (x**2).sum(axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    p = np.zeros((n, n))
    target = np.log(perplexity)
    for i in range(n):
        di = np.delete(d[i], i)
        lo, hi, beta = 0.0, np.inf, 1.0
        for _ in range(60):
            w = np.exp(-(di - di.min()) * beta)
            s = w.sum()
            h = np.log(s) + beta * ((di - di.min()) * w).sum() / s
            if abs(h - target) < 1e-5:
                break
            if h > target:
                lo, beta = beta, beta * 2 if hi == np.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        p[i, np.arange(n) != i] = w / s
    p = np.maximum((p + p.T) / (2 * n), 1e-12)
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, 2)) * 1e-4
    velocity, gains = np.zeros_like(y), np.ones_like(y)
    for it in range(n_iter):
        exaggeration = 12.0 if it < 100 else 1.0
        sy = (y**2).sum(axis=1)
        num = 1.0 / (1.0 + np.maximum(sy[:, None] + sy[None, :] - 2 * y @ y.T, 0.0))
        np.fill_diagonal(num, 0.0)
        q = np.maximum(num / num.sum(), 1e-12)
        pq = (exaggeration * p - q) * num
        grad = 4.0 * ((np.diag(pq.sum(axis=1)) - pq) @ y)
        gains = np.where(np.sign(grad) != np.sign(velocity), gains + 0.2, gains * 0.8).clip(0.01)
        velocity = (0.5 if it < 250 else 0.8) * velocity - 200.0 * gains * grad
        y = y + velocity
        y -= y.mean(axis=0)
    return y


@dataclass
class Projection:
    """z to 2-D: the identity for a 2-D latent, else PCA fitted on the points shown (or t-SNE of all of them)."""

    method: Method = "pca"
    mean_: np.ndarray | None = None
    components_: np.ndarray | None = None
    explained_: np.ndarray | None = None

    def fit(self, points: np.ndarray) -> Projection:
        points = np.asarray(points, dtype=np.float64)
        if points.shape[1] > 2 and self.method == "pca":
            self.mean_ = points.mean(axis=0)
            _, s, vt = np.linalg.svd(points - self.mean_, full_matrices=False)
            self.components_ = vt[:2]
            self.explained_ = (s[:2] ** 2) / max((s**2).sum(), 1e-12)
        return self

    def transform(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if points.shape[1] == 1:
            return np.column_stack([points[:, 0], np.zeros(len(points))])
        if points.shape[1] == 2:
            return points
        if self.method == "tsne":
            return tsne(points)
        if self.components_ is None or self.mean_ is None:
            raise ValueError("fit the projection first")
        return (points - self.mean_) @ self.components_.T

    def axis_labels(self, dim: int) -> tuple[str, str]:
        if dim <= 2:
            return "z[0]", "z[1]" if dim == 2 else "(none)"
        if self.method == "tsne":
            return "t-SNE 1", "t-SNE 2"
        assert self.explained_ is not None
        return (
            f"PC 1 of z ({100 * self.explained_[0]:.0f}% of variance)",
            f"PC 2 of z ({100 * self.explained_[1]:.0f}% of variance)",
        )


def _project(method: Method, dim: int, *blocks: np.ndarray) -> tuple[list[np.ndarray], Projection]:
    """Project the blocks of points together (one PCA fitted on all of them, or one t-SNE of all of them)."""
    sizes = [len(b) for b in blocks]
    stacked = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, dim) for b in blocks])
    proj = Projection(method).fit(stacked)
    flat = proj.transform(stacked)
    return np.split(flat, np.cumsum(sizes)[:-1]), proj


def _legend(ax: Any, title: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        legend = ax.legend(
            handles,
            labels,
            title=title,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            title_fontsize=9,
            frameon=False,
            markerscale=1.5,
        )
        for handle in legend.legend_handles:  # the class colours at full strength, whatever the points' alpha
            if handle is not None:
                handle.set_alpha(1.0)


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(9.5, 6.5), layout="constrained")
    return fig, fig.subplots()


def _choose_classes(stats: ClassStats, n_classes: int | None, classes: Sequence[str] | None, seed: int) -> list[str]:
    if classes:
        for c in classes:
            stats.index(c)
        return list(classes)
    labels = stats.labels
    if n_classes is not None and n_classes < len(labels):
        pick = np.random.default_rng(seed).choice(len(labels), n_classes, replace=False)
        return [labels[i] for i in sorted(pick)]
    return labels


def plot_class_clouds(
    stats: ClassStats,
    path: str | Path,
    *,
    n_points: int = 10,
    n_classes: int | None = None,
    classes: Sequence[str] | None = None,
    z_user: np.ndarray | None = None,
    z_steered: np.ndarray | None = None,
    method: Method = "pca",
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """``n_points`` random points ``mu_c + std_c * N(0, I)`` around each class mean (all classes, ``n_classes``
    random ones or the named ``classes``), the means as large crosses; optionally a user's z and its steered z."""
    chosen = _choose_classes(stats, n_classes, classes, seed)
    points, labels = stats.sample(n_points, chosen, seed=seed)
    means = np.stack([stats.mean_of(c) for c in chosen])
    extra = [np.asarray(v, dtype=np.float64).reshape(1, -1) for v in (z_user, z_steered) if v is not None]
    blocks, proj = _project(method, stats.dim, points, means, *extra)
    colours = class_colours(chosen)  # distinct among the classes shown
    fig, ax = _figure()
    for c in chosen:
        sel = labels == c
        ax.scatter(blocks[0][sel, 0], blocks[0][sel, 1], s=14, alpha=0.55, color=colours[c], label=c)
    _mark_means(ax, blocks[1], [colours[c] for c in chosen], "class mean")
    _mark_user(ax, blocks[2:], z_user is not None, z_steered is not None)
    xlabel, ylabel = proj.axis_labels(stats.dim)
    ax.set(
        xlabel=xlabel,
        ylabel=ylabel,
        title=title
        or f"Latent space: {n_points} random points z = mean + std x N(0, I) per tag "
        f"({len(chosen)} tags, {stats.dim}-D z)",
    )
    _legend(ax, "top tag")
    return _save(fig, path)


def _mark_means(ax: Any, points: np.ndarray, colours: list[Any], label: str) -> None:
    """Each class mean as a large cross in its class's colour, with one legend entry for all of them."""
    for (x, y), colour in zip(points[: len(colours), :2], colours, strict=True):
        ax.scatter(x, y, s=160, marker="X", color=colour, edgecolor="black", linewidth=0.8, zorder=4)
    ax.scatter([], [], s=120, marker="X", color="white", edgecolor="black", label=label)


def _mark_user(ax: Any, blocks: list[np.ndarray], has_user: bool, has_steered: bool) -> None:
    i = 0
    before = after = None
    if has_user:
        before = blocks[i][0]
        ax.scatter(
            *before,
            s=260,
            marker="*",
            color="gold",
            edgecolor="black",
            linewidth=1.2,
            zorder=6,
            label="user z (before)",
        )
        i += 1
    if has_steered:
        after = blocks[i][0]
        ax.scatter(
            *after, s=260, marker="*", color="red", edgecolor="black", linewidth=1.2, zorder=6, label="user z (steered)"
        )
    if before is not None and after is not None:
        ax.annotate(
            "", xy=after, xytext=before, zorder=5, arrowprops={"arrowstyle": "->", "color": "black", "linewidth": 1.5}
        )


def plot_users(
    z: np.ndarray,
    user_labels: Sequence[Any],
    path: str | Path,
    *,
    stats: ClassStats | None = None,
    n_users: int = -1,
    method: Method = "pca",
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Users' z coloured by their top tag (``n_users`` random ones; -1: all; users without a class left out),
    with the class means of ``stats`` as crosses when given."""
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(user_labels, dtype=object)
    known = np.array([x is not None for x in labels])
    z, labels = z[known], labels[known].astype(str)
    if len(z) == 0:
        raise ValueError("no user with a top tag to plot")
    if 0 < n_users < len(z):
        pick = np.sort(np.random.default_rng(seed).choice(len(z), n_users, replace=False))
        z, labels = z[pick], labels[pick]
    order = stats.labels if stats is not None else sorted(set(labels))
    present = [c for c in order if c in set(labels)] + sorted(set(labels) - set(order))
    colours = class_colours(present)  # distinct among the classes shown
    means = np.stack([stats.mean_of(c) for c in present if c in stats.class2idx]) if stats is not None else None
    blocks, proj = _project(method, z.shape[1], z, *([means] if means is not None else []))
    fig, ax = _figure()
    counts = {c: int((labels == c).sum()) for c in present}
    for c in present:
        sel = labels == c
        ax.scatter(blocks[0][sel, 0], blocks[0][sel, 1], s=22, alpha=0.75, color=colours[c], label=f"{c} ({counts[c]})")
    if means is not None:
        shown = [colours[c] for c in present if c in stats.class2idx]
        _mark_means(ax, blocks[1], shown, "class mean (training users)")
    xlabel, ylabel = proj.axis_labels(z.shape[1])
    ax.set(
        xlabel=xlabel,
        ylabel=ylabel,
        title=title or f"Latent space: {len(z)} users coloured by their top tag ({z.shape[1]}-D z)",
    )
    _legend(ax, "user's top tag (users)")
    return _save(fig, path)


def plot_steering(
    stats: ClassStats,
    z_user: np.ndarray,
    z_steered: np.ndarray,
    tag: str,
    factor: float,
    path: str | Path,
    *,
    n_points: int = 10,
    classes: Sequence[str] | None = None,
    method: Method = "pca",
    seed: int = 0,
    shares: tuple[float, float] | None = None,
    k: int = 20,
) -> Path:
    """One user's z before and after steering toward ``tag`` by ``factor``, over the class clouds (the target
    class and up to 7 others, or ``classes``); ``shares`` (before, after) of the items whose top tag is ``tag`` in
    the top-``k`` list are written in the title when given."""
    if classes is None:
        others = [c for c in stats.labels if c != tag]
        rng = np.random.default_rng(seed)
        picked = [others[i] for i in sorted(rng.choice(len(others), min(7, len(others)), replace=False))]
        classes = [tag, *picked]
    title = f"Steering a user toward '{tag}' (factor {factor:g}): z' = z + {factor:g} x (mean['{tag}'] - z)"
    if shares is not None:
        title += f"\nitems whose top tag is '{tag}' in the top {k}: {shares[0]:.0%} before, {shares[1]:.0%} after"
    return plot_class_clouds(
        stats,
        path,
        n_points=n_points,
        classes=classes,
        z_user=z_user,
        z_steered=z_steered,
        method=method,
        seed=seed,
        title=title,
    )
