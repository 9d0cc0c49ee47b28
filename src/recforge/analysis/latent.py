r"""The latent space z of a user-row model by class (tag): class means and spreads, separation, steering.

For a model with ``latent(history)`` (SongMLP, SongVAE, and the other user-row autoencoders) and users labelled
by a class (their play-weighted top tag, :func:`recforge.data.tags.user_top_tags`):

* :func:`class_stats` -- per class :math:`c`, the mean :math:`\mu_c` and standard deviation :math:`\sigma_c` of z
  over the class's (training) users, with the stable ``class2idx``; :class:`ClassStats` saves and loads them (JSON)
  and draws :math:`z = \mu_c + \sigma_c \odot \epsilon` around each mean (the reference's ``plot_z_rand``);
* :func:`separation_score` -- the silhouette of the users by class in z, beside the same silhouette for a random
  Gaussian projection of the model's input rows to the same dimension (the control: what the input alone gives);
* :func:`steer` -- a user's z moved toward a class mean by a factor, :math:`z' = z + f(\mu_T - z)`, and decoded: "more
  of tag T" (the reference's "tuning").
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "ClassStats",
    "class_stats",
    "latent_codes",
    "random_projection",
    "separation_score",
    "silhouette",
    "steer",
]


def latent_codes(model: Any, history: sp.csr_array, *, batch_size: int = 2048) -> np.ndarray:
    """z (the mean code) of every row of ``history``, users x latent dims, in batches."""
    history = sp.csr_array(history)
    parts = [
        model.latent(history[start : start + batch_size]).cpu().numpy()
        for start in range(0, history.shape[0], batch_size)
    ]
    if not parts:
        raise ValueError("no history rows to encode")
    return np.concatenate(parts).astype(np.float64)


@dataclass
class ClassStats:
    """Per-class mean and standard deviation of z (rows in ``class2idx`` order) and the number of users of each."""

    class2idx: dict[str, int]
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mean, self.std = np.asarray(self.mean, dtype=np.float64), np.asarray(self.std, dtype=np.float64)
        self.count = np.asarray(self.count, dtype=np.int64)
        n = len(self.class2idx)
        if self.mean.shape[0] != n or self.std.shape != self.mean.shape or self.count.shape != (n,):
            raise ValueError(f"class statistics do not fit {n} classes: mean {self.mean.shape}, std {self.std.shape}")
        if sorted(self.class2idx.values()) != list(range(n)):
            raise ValueError("class2idx must number the classes 0..n-1")

    @property
    def labels(self) -> list[str]:
        """The class labels in index order."""
        return sorted(self.class2idx, key=self.class2idx.__getitem__)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])

    def index(self, label: str) -> int:
        """The index of a class; an unknown label raises ``ValueError`` listing the known ones."""
        if label not in self.class2idx:
            raise ValueError(f"unknown tag {label!r}; known tags: {', '.join(self.labels)}")
        return self.class2idx[label]

    def mean_of(self, label: str) -> np.ndarray:
        return self.mean[self.index(label)]

    def sample(
        self, n_per_class: int, labels: Sequence[str] | None = None, *, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n_per_class`` points ``mu_c + std_c * N(0, I)`` per class (all classes, or ``labels``): points, labels."""
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
        labels = list(self.labels if labels is None else labels)
        rng = np.random.default_rng(seed)
        points, names = [], []
        for label in labels:
            c = self.index(label)
            points.append(self.mean[c] + self.std[c] * rng.standard_normal((n_per_class, self.dim)))
            names += [label] * n_per_class
        return np.concatenate(points), np.array(names, dtype=object)

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        return {
            "class2idx": self.class2idx,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": self.count.tolist(),
            "info": self.info,
        }

    @classmethod
    def from_json(cls, tree: Mapping[str, Any]) -> ClassStats:
        try:
            return cls(
                {str(k): int(v) for k, v in tree["class2idx"].items()},
                np.asarray(tree["mean"], dtype=np.float64).reshape(len(tree["class2idx"]), -1),
                np.asarray(tree["std"], dtype=np.float64).reshape(len(tree["class2idx"]), -1),
                np.asarray(tree["count"], dtype=np.int64),
                dict(tree.get("info", {})),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not saved class statistics (missing or malformed {exc})") from None

    def save(self, path: str | Path) -> Path:
        """Write the statistics and ``class2idx`` as JSON (under a temporary name, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClassStats:
        path = Path(path)
        try:
            tree = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        try:
            return cls.from_json(tree)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def class_stats(
    z: np.ndarray, user_labels: Sequence[Any], class2idx: Mapping[str, int], *, info: Mapping[str, Any] | None = None
) -> ClassStats:
    """Mean and standard deviation of z (users x dims) over the users of each class of ``class2idx``.

    Users whose label is ``None`` or not a class are left out; a class without users is refused (it has no mean).
    """
    z = np.asarray(z, dtype=np.float64)
    labels = np.asarray(user_labels, dtype=object)
    if len(labels) != len(z):
        raise ValueError(f"{len(labels)} user labels for {len(z)} latent codes")
    n = len(class2idx)
    mean, std, count = np.zeros((n, z.shape[1])), np.zeros((n, z.shape[1])), np.zeros(n, dtype=np.int64)
    for label, c in class2idx.items():
        rows = z[labels == label]
        if len(rows) == 0:
            raise ValueError(f"class {label!r} has no user: drop it from class2idx (e.g. fewer classes)")
        mean[c], std[c], count[c] = rows.mean(axis=0), rows.std(axis=0), len(rows)
    return ClassStats(dict(class2idx), mean, std, count, dict(info or {}))


def silhouette(points: np.ndarray, labels: Sequence[Any], *, max_points: int = 3000, seed: int = 0) -> float:
    r"""Mean silhouette of labelled points (Euclidean): :math:`s_i = (b_i - a_i) / \max(a_i, b_i)`.

    :math:`a_i` is the mean distance to the other points of its class, :math:`b_i` the smallest mean distance to
    the points of another class; a point alone in its class scores 0 (Rousseeuw 1987, as scikit-learn). Points
    without a label (``None``) are left out; above ``max_points`` a seeded random subset is scored.
    """
    points = np.asarray(points, dtype=np.float64)
    labels = np.asarray(labels, dtype=object)
    keep = np.array([x is not None for x in labels], dtype=bool)
    points, labels = points[keep], labels[keep]
    if len(points) > max_points:
        pick = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, labels = points[pick], labels[pick]
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    if len(names) < 2:
        raise ValueError("the silhouette needs at least two classes with points")
    sq = (points**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * points @ points.T, 0.0))
    np.fill_diagonal(dist, 0.0)
    onehot = np.zeros((len(points), len(names)))
    onehot[np.arange(len(points)), codes] = 1.0
    sizes = onehot.sum(axis=0)
    sums = dist @ onehot  # points x classes: summed distance to each class
    own = sizes[codes]
    a = np.where(own > 1, sums[np.arange(len(points)), codes] / np.maximum(own - 1, 1), 0.0)
    mean_other = sums / sizes[None, :]
    mean_other[np.arange(len(points)), codes] = np.inf
    b = mean_other.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def random_projection(rows: sp.csr_array, dim: int, *, seed: int = 0, normalize: bool = True) -> np.ndarray:
    """The rows (users x items) times a seeded Gaussian items x ``dim`` matrix (rows L2-normalised first by default)."""
    rows = sp.csr_array(rows, dtype=np.float64)
    if normalize:
        norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
        rows = sp.csr_array(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ rows)
    matrix = np.random.default_rng(seed).standard_normal((rows.shape[1], dim)) / np.sqrt(dim)
    return np.asarray(rows @ matrix)


def separation_score(
    model: Any,
    history: sp.csr_array,
    user_labels: Sequence[Any],
    *,
    seed: int = 0,
    max_points: int = 3000,
    z: np.ndarray | None = None,
) -> dict[str, Any]:
    """How well z separates the users by class: the silhouette in z, and in a random projection of the input.

    ``history`` holds the users' input rows (what the model encodes), ``user_labels`` their classes (``None``:
    left out). The control projects the same rows (binary, L2-normalised) to z's dimension with a seeded Gaussian
    matrix; ``z`` may be given when already computed. Returns ``{"latent", "random_projection", "ratio", "users",
    "classes", "dim"}``.
    """
    history = sp.csr_array(history)
    z = latent_codes(model, history) if z is None else np.asarray(z, dtype=np.float64)
    labels = np.asarray(user_labels, dtype=object)
    binary = history.copy()
    binary.data[:] = 1.0
    control = random_projection(binary, z.shape[1], seed=seed)
    latent = silhouette(z, labels, max_points=max_points, seed=seed)
    projected = silhouette(control, labels, max_points=max_points, seed=seed)
    known = [x for x in labels if x is not None]
    return {
        "latent": latent,
        "random_projection": projected,
        "difference": latent - projected,
        "users": len(known),
        "classes": len(set(known)),
        "dim": int(z.shape[1]),
    }


def steer(
    model: Any,
    history: sp.csr_array | Sequence[Any],
    stats: ClassStats,
    tag: str,
    factor: float,
    *,
    k: int = 20,
    exclude_seen: bool = True,
) -> dict[str, Any]:
    """Move the z of one listening history (a 1-row matrix or a list of raw item ids) toward the mean of class
    ``tag`` by ``factor`` and decode it: ``{"z", "z_steered", "recommendations", "before"}`` (top-``k`` lists of
    ``(item id, score)`` after and before steering; the history's items excluded unless ``exclude_seen=False``)."""
    if hasattr(model, "history_row") and not sp.issparse(history):
        row = model.history_row(list(history))
    else:
        row = sp.csr_array(history)
    if row.shape[0] != 1:
        raise ValueError(f"steer one history at a time, got {row.shape[0]} rows")
    z, z_steered = model.steered_latent(row, stats.mean_of(tag), factor)
    out: dict[str, Any] = {"z": z.cpu().numpy()[0], "z_steered": z_steered.cpu().numpy()[0]}
    for key, scores in (("before", model.decode(z)), ("recommendations", model.decode(z_steered))):
        scores = scores.clone()
        if exclude_seen:
            scores[0, torch.from_numpy(row.indices.astype(np.int64))] = float("-inf")
        values, indices = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        ok = torch.isfinite(values[0])
        ids = model.items_.ids[indices[0][ok].cpu().numpy()]
        out[key] = list(zip(ids.tolist(), values[0][ok].cpu().tolist(), strict=True))
    return out
