"""`recforge plot RUN_DIR [curves|latent|users|steer]`: the figures of a run, written into its folder.

``curves`` (the default, so ``recforge plot RUN_DIR`` keeps its meaning) draws the training log; the three latent
figures need a model with a latent space (``songvae``, ``songmlp``, the user-row autoencoders) and item tags in the
run's data (``item_info["tags"]``, or ``genres``). They rebuild the run's split (deterministic under its seed),
compute the class statistics of z over the training users -- saved in ``RUN_DIR/latent/`` with ``class2idx``, with
the test users' z and the separation score -- and draw:

* ``latent``: random points around each tag's mean (``latent_classes.png``);
* ``users``: the test users coloured by their top tag (``latent_users.png``);
* ``steer``: one user's z before and after steering toward a tag (``latent_steer.png``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import typer
from rich.markup import escape

from recforge.analysis.latent import ClassStats, class_stats, latent_codes, separation_score, steer
from recforge.analysis.latent_plots import plot_class_clouds, plot_steering, plot_users
from recforge.analysis.plots import plot_training_curves
from recforge.cli.common import DataDir, app, err, out
from recforge.data import tags as item_tags
from recforge.data.splits import Split
from recforge.experiments.pipeline import load_raw, make_split, prepare_events, reload_run
from recforge.models.base import BaseRecommender

FIGURES = {
    "curves": "training_curves.png",
    "latent": "latent_classes.png",
    "users": "latent_users.png",
    "steer": "latent_steer.png",
}
LATENT_DIR = "latent"
STATS_FILE = "class_stats.json"


def parse_steer(text: str) -> tuple[str, float]:
    """``"rock=0.5"`` -> ``("rock", 0.5)``; the tag may hold ``=`` (the last one splits)."""
    tag, sep, value = text.rpartition("=")
    try:
        factor = float(value)
    except ValueError:
        factor = float("nan")
    if not sep or not tag.strip() or not np.isfinite(factor) or factor < 0:
        raise ValueError(f"--steer {text!r}: give TAG=FACTOR with a factor >= 0 (e.g. --steer rock=0.5)")
    return tag.strip(), factor


@dataclass
class RunLatent:
    """A run's model with its latent statistics: the split, each item's top tag, the class stats of z."""

    run_dir: Path
    model: BaseRecommender
    split: Split
    item_top: np.ndarray
    stats: ClassStats

    def user_labels(self, matrix: sp.csr_array) -> np.ndarray:
        return item_tags.user_top_tags(matrix, self.item_top, self.stats.class2idx)

    def tagged(self, tag: str) -> np.ndarray:
        """Boolean mask of the items whose top tag is ``tag``."""
        return np.array([t == tag for t in self.item_top], dtype=bool)


def _tag_column(info: pd.DataFrame | None, wanted: str | None) -> str:
    if wanted:
        return wanted
    for column in ("tags", "genres"):
        if info is not None and column in info.columns:
            return column
    have = [] if info is None else list(info.columns)
    raise ValueError(f"the run's data has no item tags (item_info 'tags' or 'genres'); item_info has {have}")


def run_latent(
    run_dir: Path, *, top: int = 20, tag_column: str | None = None, data_dir: Path | None = None, device: str = "cpu"
) -> RunLatent:
    """Rebuild the run's split, compute (and save) the class statistics of z, the test users' z and the separation.

    Writes ``RUN_DIR/latent/class_stats.json`` (mean, std, count per class and ``class2idx``),
    ``test_users.csv`` (user id, top tag, z) and ``separation.json``.
    """
    cfg, model = reload_run(run_dir, device=device)
    if not hasattr(model, "latent"):
        raise ValueError(f"{cfg.model.name} has no latent space: the latent plots need e.g. songvae or songmlp")
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_dir": Path(data_dir)})})
    raw = load_raw(cfg)
    split = make_split(cfg, raw, prepare_events(cfg, raw))
    train = split.train
    column = _tag_column(train.item_info, tag_column)
    item_top = item_tags.item_top_tags(train.item_info, train.n_items, column=column)
    classes = item_tags.class2idx(item_top[train.item_counts() > 0], top=top)
    if len(classes) < 2:
        raise ValueError(f"the run's items have fewer than two top tags in item_info[{column!r}]")
    labels = item_tags.user_top_tags(train.matrix, item_top, classes)
    z = latent_codes(model, train.matrix)
    present = {c for c in labels if c is not None}
    classes = {c: i for i, c in enumerate(sorted(c for c in classes if c in present))}
    info = {"model": cfg.model.name, "tag_column": column, "top": top, "users": "training users"}
    stats = class_stats(z, labels, classes, info=info)
    folder = run_dir / LATENT_DIR
    stats.save(folder / STATS_FILE)
    separation: dict[str, Any] = {"train": separation_score(model, train.matrix, labels, z=z)}
    test = split.test
    test_labels = item_tags.user_top_tags(test.history.matrix + test.target.matrix, item_top, classes)
    z_test = latent_codes(model, test.history.matrix)
    frame = pd.DataFrame(z_test, columns=[f"z{i}" for i in range(z_test.shape[1])])
    frame.insert(0, "top_tag", test_labels)
    frame.insert(0, "user", test.history.users.ids)
    frame.to_csv(folder / "test_users.csv", index=False)
    if sum(x is not None for x in test_labels) and len({x for x in test_labels if x is not None}) > 1:
        separation["test"] = separation_score(model, test.history.matrix, test_labels, z=z_test)
    (folder / "separation.json").write_text(json.dumps(separation, indent=1))
    return RunLatent(run_dir, model, split, item_top, stats)


def saved_stats(run_dir: Path, *, data_dir: Path | None = None) -> ClassStats:
    """The run's saved class statistics (computed and saved first when absent)."""
    path = run_dir / LATENT_DIR / STATS_FILE
    if path.is_file():
        return ClassStats.load(path)
    return run_latent(run_dir, data_dir=data_dir).stats


def _history_of(ctx: RunLatent, items: str | None, user: str | None) -> tuple[sp.csr_array, str]:
    """The row to steer: a new history (raw ids), a known user, or the first test user of another top tag."""
    model = ctx.model
    if items is not None:
        ids = [s.strip() for s in items.split(",") if s.strip()]
        known = model.items_.coerce(ids)
        return model.history_row(known), f"history of {len(ids)} items"
    test = ctx.split.test.history
    if user is not None:
        for users, matrix in ((test.users, test.matrix), (model.users_, model.history_)):
            idx = users.index(users.coerce([user]), missing="minus_one")[0]
            if idx >= 0:
                return sp.csr_array(matrix[[idx]]), f"user {user}"
        raise ValueError(f"user {user!r} is neither a training nor a test user of this run")
    return sp.csr_array(test.matrix[[0]]), f"test user {test.users.ids[0]}"


def _share(recs: list[tuple[Any, float]], ctx: RunLatent, tag: str) -> float:
    if not recs:
        return 0.0
    tagged = ctx.tagged(tag)
    idx = ctx.model.items_.index([i for i, _ in recs])
    return float(tagged[idx].mean())


@app.command(rich_help_panel="Use a trained model")
def plot(
    run_dir: Path,
    figure: Annotated[str, typer.Argument(help="curves (default), latent, users or steer")] = "curves",
    n_points: Annotated[int, typer.Option("--n-points", help="latent: random points per tag")] = 10,
    n_classes: Annotated[int | None, typer.Option("--n-classes", help="latent: this many random tags")] = None,
    classes: Annotated[str | None, typer.Option("--classes", help="latent/steer: these tags (comma-separated)")] = None,
    users: Annotated[int, typer.Option("--users", help="users: this many random test users (-1: all)")] = -1,
    top: Annotated[int, typer.Option("--top-tags", help="the classes: the N most frequent item top tags")] = 20,
    tag_column: Annotated[str | None, typer.Option("--tag-column", help="item_info column of the tags")] = None,
    method: Annotated[str, typer.Option("--method", help="2-D projection of z: pca or tsne")] = "pca",
    steer_: Annotated[str | None, typer.Option("--steer", help="steer: TAG=FACTOR (e.g. rock=0.5)")] = None,
    items: Annotated[str | None, typer.Option("--items", help="steer: a new history (raw item ids)")] = None,
    user: Annotated[str | None, typer.Option("--user", help="steer: a test or training user id")] = None,
    k: Annotated[int, typer.Option("-k", help="steer: length of the top list compared")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random points and picks")] = 0,
    data_dir: DataDir = None,
) -> None:
    """Figures of a run, written into RUN_DIR: training curves (default), or the latent space by tag."""
    if figure not in FIGURES:
        raise typer.BadParameter(f"{figure!r} is not one of {', '.join(FIGURES)}", param_hint="FIGURE")
    if method not in ("pca", "tsne"):
        raise typer.BadParameter(f"{method!r} is not pca or tsne", param_hint="'--method'")
    target = run_dir / FIGURES[figure]
    if figure == "curves":
        log = run_dir / "training_log.csv"
        if not log.is_file():
            raise FileNotFoundError(f"{run_dir} has no training_log.csv (only trained neural models log epochs)")
        out.print(f"wrote {escape(str(plot_training_curves(pd.read_csv(log), target)))}")
        return
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a recforge run directory (no config.json)")
    named = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    steering = parse_steer(steer_) if steer_ is not None else None
    if figure == "steer" and steering is None:
        raise typer.BadParameter("steer needs --steer TAG=FACTOR (e.g. --steer rock=0.5)", param_hint="'--steer'")
    err.print("[dim]rebuilding the run's split and encoding its users...[/dim]")
    ctx = run_latent(run_dir, top=top, tag_column=tag_column, data_dir=data_dir)
    stats = ctx.stats
    if figure == "latent":
        path = plot_class_clouds(
            stats, target, n_points=n_points, n_classes=n_classes, classes=named, method=method, seed=seed
        )  # type: ignore[arg-type]
    elif figure == "users":
        frame = pd.read_csv(run_dir / LATENT_DIR / "test_users.csv", dtype={"top_tag": object})
        z = frame[[c for c in frame.columns if c.startswith("z")]].to_numpy()
        labels = [x if isinstance(x, str) else None for x in frame["top_tag"]]
        path = plot_users(z, labels, target, stats=stats, n_users=users, method=method, seed=seed)  # type: ignore[arg-type]
    else:
        assert steering is not None
        tag, factor = steering
        stats.index(tag)
        row, who = _history_of(ctx, items, user)
        result = steer(ctx.model, row, stats, tag, factor, k=k)
        shares = (_share(result["before"], ctx, tag), _share(result["recommendations"], ctx, tag))
        path = plot_steering(
            stats,
            result["z"],
            result["z_steered"],
            tag,
            factor,
            target,
            n_points=n_points,
            classes=named,
            method=method,
            seed=seed,
            shares=shares,
            k=k,
        )  # type: ignore[arg-type]
        out.print(f"{escape(who)}: share of {escape(tag)!r} items in the top {k}: {shares[0]:.0%} -> {shares[1]:.0%}")
    separation = json.loads((run_dir / LATENT_DIR / "separation.json").read_text())["train"]
    out.print(
        f"separation of z by top tag (silhouette, training users): {separation['latent']:.3f} "
        f"(random projection of the input: {separation['random_projection']:.3f})"
    )
    out.print(f"wrote {escape(str(path))}")
