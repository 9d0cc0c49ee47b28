"""The latent figures exist as PNG files, with titles, labelled axes and one legend entry (one colour) per class."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from recforge.analysis import latent_plots
from recforge.analysis.latent import ClassStats
from recforge.analysis.latent_plots import Projection, class_colours, plot_class_clouds, plot_steering, plot_users, tsne

PNG = b"\x89PNG"


def stats(dim=5, n=4) -> ClassStats:
    rng = np.random.default_rng(0)
    labels = ["jazz", "metal", "pop", "rock", "folk", "punk"][:n]
    return ClassStats(
        {c: i for i, c in enumerate(sorted(labels))},
        rng.normal(size=(n, dim)) * 3,
        np.full((n, dim), 0.5),
        np.full(n, 10),
    )


@pytest.fixture
def figures(monkeypatch):
    """The figures the functions draw, kept (the PNG is still written)."""
    kept = []
    save = latent_plots._save
    monkeypatch.setattr(latent_plots, "_save", lambda fig, path: kept.append(fig) or save(fig, path))
    return kept


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_class_clouds(tmp_path, figures):
    s = stats()
    path = plot_class_clouds(s, tmp_path / "latent_classes.png", n_points=8)
    assert path.read_bytes()[:4] == PNG
    ax = figures[0].axes[0]
    assert "random points" in ax.get_title() and ax.get_xlabel().startswith("PC 1") and ax.get_ylabel()
    assert legend_texts(figures[0]) == [*s.labels, "class mean"]
    colours = [to_hex(c.get_facecolor()[0]) for c in ax.collections[: len(s.labels)]]
    assert len(set(colours)) == len(s.labels)  # one colour per class
    plot_class_clouds(s, tmp_path / "two.png", classes=["rock", "jazz"])
    assert legend_texts(figures[1]) == ["rock", "jazz", "class mean"]
    plot_class_clouds(s, tmp_path / "three.png", n_classes=3)
    assert len(legend_texts(figures[2])) == 4


def test_users_by_top_tag(tmp_path, figures):
    s = stats(dim=2)
    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 2))
    labels = ["rock"] * 10 + ["jazz"] * 15 + [None] * 5
    path = plot_users(z, labels, tmp_path / "latent_users.png", stats=s)
    assert path.is_file()
    ax = figures[0].axes[0]
    assert "users coloured by their top tag" in ax.get_title() and (ax.get_xlabel(), ax.get_ylabel()) == (
        "z[0]",
        "z[1]",
    )
    assert legend_texts(figures[0]) == ["jazz (15)", "rock (10)", "class mean (training users)"]
    with pytest.raises(ValueError, match="no user"):
        plot_users(z[:2], [None, None], tmp_path / "x.png")


def test_steering_figure(tmp_path, figures):
    s = stats()
    z = np.zeros(5)
    path = plot_steering(s, z, s.mean_of("rock") * 0.5, "rock", 0.5, tmp_path / "latent_steer.png", shares=(0.1, 0.6))
    assert path.is_file()
    title = figures[0].axes[0].get_title()
    assert "toward 'rock'" in title and "top 20: 10% before, 60% after" in title
    texts = legend_texts(figures[0])
    assert texts[0] == "rock" and "user z (before)" in texts and "user z (steered)" in texts


def test_projections(tmp_path, figures):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 6)), rng.normal(size=(20, 6)) + 8])
    y = tsne(x, n_iter=300)
    assert y.shape == (40, 2)
    a, b = y[:20].mean(axis=0), y[20:].mean(axis=0)
    assert np.linalg.norm(a - b) > 2 * max(y[:20].std(), y[20:].std())  # the two groups stay apart
    pca = Projection("pca").fit(x)
    assert pca.transform(x).shape == (40, 2) and pca.explained_[0] > 0.5
    plot_class_clouds(stats(), tmp_path / "t.png", method="tsne")
    assert figures[0].axes[0].get_xlabel() == "t-SNE 1"
    assert len(set(map(str, class_colours([f"c{i}" for i in range(45)]).values()))) == 45
