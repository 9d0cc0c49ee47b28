"""`recforge recommend`: top-k lists from a run's saved model."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from recforge.cli.common import (
    LoadDevice,
    app,
    err,
)
from recforge.data.ids import UnknownIdError
from recforge.evaluation.protocol import TestProtocol, top_k_lists
from recforge.experiments.config import ExperimentConfig
from recforge.experiments.pipeline import (
    rebuild_split,
    reload_run,
)
from recforge.models.base import BaseRecommender
from recforge.serve.catalog import ItemCatalog, heldout_users, known_ids, unknown_users_hint


def _parse_history(text: str) -> tuple[list[str], list[float] | None]:
    """``"50,172"`` -> ids; ``"50:5,172:4"`` -> ids and ratings (all items rated, or none)."""
    entries = [s.strip() for s in text.split(",") if s.strip()]
    if not entries:
        raise ValueError("--items: no item ids given (e.g. --items 50,172,181, or with ratings --items 50:5,172:4)")
    ids, values = [], []
    for entry in entries:
        head, sep, tail = entry.rpartition(":")
        value = None
        if sep and head:
            try:
                value = float(tail)
            except ValueError:
                value = None
        if value is None:
            ids.append(entry)
        else:
            if not math.isfinite(value):
                raise ValueError(f"--items: the rating of {head} is {tail}, not a finite number")
            ids.append(head.strip())
            values.append(value)
    if values and len(values) != len(ids):
        raise ValueError("--items: give a rating for every item (50:5,172:4) or for none (50,172)")
    return ids, values or None


def _unknown_users_hint(run_dir: Path, exc: UnknownIdError) -> UnknownIdError | ValueError:
    """Say when unknown users were held out of training by the split (``heldout_users.json`` of the run)."""
    hint = unknown_users_hint(
        heldout_users(run_dir), exc.missing, "use --items with their history to recommend for them"
    )
    return exc if hint is None else ValueError(hint)


def _titles(run_dir: Path, model: BaseRecommender) -> dict[str, str]:
    return ItemCatalog.read(run_dir, model.items_).titles_by_id(model.items_)


@app.command(rich_help_panel="Use a trained model")
def recommend(
    run_dir: Path,
    user: Annotated[list[str] | None, typer.Option("--user", help="raw user id (repeatable)")] = None,
    items: Annotated[
        str | None,
        typer.Option("--items", help="a new user's history: raw item ids (50,172) or ids with ratings (50:5,172:4)"),
    ] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="every training user")] = False,
    input_: Annotated[
        str,
        typer.Option(
            "--input",
            help="known users: score from their training events (train, the default) or their training and "
            "validation events (train+valid: rebuilds the run's split)",
        ),
    ] = "train",
    exclude: Annotated[
        str,
        typer.Option(
            "--exclude",
            help="known users: leave out the input's items (input, the default) or the training and validation "
            "items (train+valid: rebuilds the run's split)",
        ),
    ] = "input",
    k: Annotated[int, typer.Option("-k", help="list length (>= 1)")] = 10,
    output: Annotated[Path | None, typer.Option("--output", help="write JSON lines to this file, not stdout")] = None,
    device: LoadDevice = "auto",
    steer: Annotated[
        str | None,
        typer.Option("--steer", help="song models: move each user's z toward a tag's mean by a factor (rock=0.5)"),
    ] = None,
) -> None:
    """Top-k recommendations from a run's model, one JSON object per user (raw ids, and titles when known).

    ``--steer TAG=FACTOR`` (models with a latent space, e.g. songvae): each user's z is moved toward the mean z of
    the training users whose top tag is TAG, ``z' = z + FACTOR x (mean - z)``, and decoded ("more of TAG").
    """
    if sum([bool(user), items is not None, all_users]) != 1:
        raise typer.BadParameter("give exactly one of --user, --items or --all-users")
    if k < 1:
        raise typer.BadParameter(f"{k} is not >= 1", param_hint="'-k'")
    if output is not None and output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file path (e.g. {output / 'recs.jsonl'})")
    try:
        protocol = TestProtocol(input_, exclude)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if items is not None and protocol != TestProtocol("train", "input"):
        raise typer.BadParameter("--input and --exclude apply to known users (--user, --all-users), not to --items")
    if steer is not None and protocol != TestProtocol("train", "input"):
        raise typer.BadParameter("--steer applies to the default --input/--exclude")
    cfg, model = reload_run(run_dir, device=device)
    if protocol == TestProtocol("train", "input"):
        options = {"steer": _steering(run_dir, model, steer)} if steer is not None else {}
        rows = _recommendations(run_dir, model, user, items, all_users, k, **options)
    else:
        rows = _protocol_recommendations(run_dir, cfg, model, user, all_users, k, protocol)
    titles = _titles(run_dir, model)
    if titles:
        for r in rows:
            r["titles"] = [titles.get(str(i)) for i in r["items"]]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    if output is None:
        sys.stdout.write(lines)
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(lines)
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"--output {output}: cannot write it ({exc.strerror or exc})") from exc
    err.print(f"wrote {len(rows)} users to {escape(str(output))}")


def _steering(run_dir: Path, model: BaseRecommender, text: str) -> tuple[Any, float]:
    """``--steer TAG=FACTOR`` as the ranking option ``steer=(target z, factor)``, from the run's class statistics."""
    from recforge.cli.plot import parse_steer, saved_stats

    tag, factor = parse_steer(text)
    if not hasattr(model, "steered_latent"):
        raise ValueError(f"--steer: {model.name} has no latent space to steer (use e.g. songvae or songmlp)")
    return saved_stats(run_dir).mean_of(tag), factor


def _recommendations(
    run_dir: Path,
    model: BaseRecommender,
    user: list[str] | None,
    items: str | None,
    all_users: bool,
    k: int,
    **options: Any,
) -> list[dict[str, Any]]:
    if items is not None:
        raw, values = _parse_history(items)
        ids = known_ids(model.items_, raw)
        rec = model.recommend_for_history(ids, k, values=values, **options)
        history: dict[str, Any] = {"history": [_plain(i) for i in ids]}
        if values is not None:
            history["ratings"] = values
        return [{"user_id": None, **history, **_lists(rec)}]
    user_ids = _user_ids(run_dir, model, user, all_users)
    return [
        {"user_id": _plain(u), **_lists(rec)}
        for u, rec in zip(user_ids, model.recommend(user_ids, k, **options), strict=True)
    ]


def _user_ids(run_dir: Path, model: BaseRecommender, user: list[str] | None, all_users: bool) -> list[Any]:
    """Every training user (``--all-users``), or the ``--user`` ids, checked (unknown ones named, with a hint for
    users the split held out of training)."""
    if all_users:
        return list(model.users_.ids)
    try:
        return known_ids(model.users_, user or [])
    except UnknownIdError as exc:
        raise _unknown_users_hint(run_dir, exc) from None


def _protocol_recommendations(
    run_dir: Path,
    cfg: ExperimentConfig,
    model: BaseRecommender,
    user: list[str] | None,
    all_users: bool,
    k: int,
    protocol: TestProtocol,
) -> list[dict[str, Any]]:
    """Lists of known users scored from, and excluding, what ``protocol`` says: the run's split is rebuilt for its
    validation events (the saved model holds the training events only)."""
    split = rebuild_split(cfg)
    if split.train.users != model.users_ or split.train.items != model.items_:
        raise ValueError(
            f"the split rebuilt from {run_dir}'s config does not match its saved model (the data changed since the "
            "run?); --input/--exclude train+valid need the run's own split"
        )
    if not split.test.known_users:
        raise ValueError(
            f"{run_dir}'s test users were held out of training: they have no validation events to add or exclude; "
            "use --items with their history"
        )
    user_ids = _user_ids(run_dir, model, user, all_users)
    rows = model.users_.index(user_ids)
    before_test = split.test.history.matrix  # training + validation events
    history = (before_test if protocol.input == "train+valid" else split.train.matrix)[rows]
    extra = before_test[rows] if protocol.excluded == "train+valid" else None
    item_ids = model.items_.ids
    lists = top_k_lists(model, history, rows, k, exclude=extra)
    return [
        {"user_id": _plain(u), "items": item_ids[idxs].tolist(), "scores": [round(float(v), 6) for v in vals]}
        for u, (idxs, vals) in zip(user_ids, lists, strict=True)
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _lists(rec: list[tuple[Any, float]]) -> dict[str, list[Any]]:
    return {"items": [_plain(i) for i, _ in rec], "scores": [round(s, 6) for _, s in rec]}
