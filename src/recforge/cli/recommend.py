"""`recforge recommend`: top-k lists from a run's saved model."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape

from recforge.cli.common import (
    LoadDevice,
    app,
    err,
)
from recforge.data.ids import IdMap, UnknownIdError
from recforge.experiments.pipeline import (
    reload_run,
)
from recforge.models.base import BaseRecommender


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


def _known(ids: IdMap, raw: list[str]) -> list[Any]:
    """The raw ids (typed like the map's), raising :class:`UnknownIdError` that lists only the unknown ones."""
    coerced = ids.coerce(raw)
    missing = [c for c in coerced if ids.index([c], missing="minus_one")[0] < 0]
    if missing:
        raise UnknownIdError(ids.kind, missing)
    return coerced


def _unknown_users_hint(run_dir: Path, exc: UnknownIdError) -> UnknownIdError | ValueError:
    """Say when unknown users were held out of training by the split (``heldout_users.json`` of the run)."""
    path = run_dir / "heldout_users.json"
    if not path.is_file():
        return exc
    try:
        heldout = json.loads(path.read_text())
    except (OSError, ValueError):
        return exc
    parts = {str(u): part for part, users in heldout.items() for u in users}
    held = [u for u in exc.missing if str(u) in parts]
    if not held:
        return exc
    which = ", ".join(f"{u} ({parts[str(u)]} part)" for u in held[:10])
    verb = "user {} was" if len(held) == 1 else "users {} were"
    return ValueError(
        f"{verb.format(which)} held out of training by the split; use --items with their history to recommend for them"
    )


def _titles(run_dir: Path) -> dict[str, str]:
    path = run_dir / "items.csv"
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError):
        return {}
    if not {"item", "title"} <= set(frame.columns):
        return {}
    return dict(zip(frame["item"], frame["title"], strict=True))


@app.command()
def recommend(
    run_dir: Path,
    user: Annotated[list[str] | None, typer.Option("--user", help="raw user id (repeatable)")] = None,
    items: Annotated[
        str | None,
        typer.Option("--items", help="a new user's history: raw item ids (50,172) or ids with ratings (50:5,172:4)"),
    ] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="every training user")] = False,
    k: Annotated[int, typer.Option("-k", help="list length (>= 1)")] = 10,
    output: Annotated[Path | None, typer.Option("--output", help="write JSON lines to this file, not stdout")] = None,
    device: LoadDevice = "auto",
) -> None:
    """Top-k recommendations from a run's model, one JSON object per user (raw ids, and titles when known)."""
    if sum([bool(user), items is not None, all_users]) != 1:
        raise typer.BadParameter("give exactly one of --user, --items or --all-users")
    if k < 1:
        raise typer.BadParameter(f"{k} is not >= 1", param_hint="'-k'")
    if output is not None and output.is_dir():
        raise ValueError(f"--output {output} is a folder; give a file path (e.g. {output / 'recs.jsonl'})")
    _, model = reload_run(run_dir, device=device)
    rows = _recommendations(run_dir, model, user, items, all_users, k)
    titles = _titles(run_dir)
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


def _recommendations(
    run_dir: Path, model: BaseRecommender, user: list[str] | None, items: str | None, all_users: bool, k: int
) -> list[dict[str, Any]]:
    if items is not None:
        raw, values = _parse_history(items)
        ids = _known(model.items_, raw)
        rec = model.recommend_for_history(ids, k, values=values)
        history: dict[str, Any] = {"history": [_plain(i) for i in ids]}
        if values is not None:
            history["ratings"] = values
        return [{"user_id": None, **history, **_lists(rec)}]
    if all_users:
        user_ids = list(model.users_.ids)
    else:
        try:
            user_ids = _known(model.users_, user or [])
        except UnknownIdError as exc:
            raise _unknown_users_hint(run_dir, exc) from None
    return [
        {"user_id": _plain(u), **_lists(rec)} for u, rec in zip(user_ids, model.recommend(user_ids, k), strict=True)
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _lists(rec: list[tuple[Any, float]]) -> dict[str, list[Any]]:
    return {"items": [_plain(i) for i, _ in rec], "scores": [round(s, 6) for _, s in rec]}
