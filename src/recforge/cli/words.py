"""`recforge words`: the nearest vocabulary words of an item, from a run of a text model (textmf, textitem)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from recforge.cli.common import LoadDevice, app, make_table, out
from recforge.experiments.pipeline import reload_run


@app.command(rich_help_panel="Use a trained model")
def words(
    run_dir: Path,
    item_id: Annotated[str, typer.Argument(help="raw item id (as in the data file)")],
    k: Annotated[int, typer.Option("-k", help="number of words (>= 1)")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object instead of a table")] = False,
    device: LoadDevice = "auto",
) -> None:
    """An item's nearest words (cosine between its text vector and the word embeddings) in a run of a text model.

    Works for runs of ``textmf``, ``textbiasedmf`` and ``textitem``: their item vectors are trained to predict the
    words of the item's training reviews (negative sampling), so the nearest words say what the item is about.
    """
    if k < 1:
        raise typer.BadParameter(f"{k} is not >= 1", param_hint="'-k'")
    _, model = reload_run(run_dir, device=device)
    nearest = getattr(model, "most_similar_words", None)
    if nearest is None:
        raise ValueError(
            f"{run_dir}: the run's model ({type(model).__name__}) has no words; train a text model "
            "(--model textmf, textbiasedmf or textitem) on reviews with their text"
        )
    item = model.items_.coerce([item_id])[0]
    found = nearest(item, k)
    if as_json:
        out.print_json(json.dumps({"item": item, "words": [{"word": w, "cosine": c} for w, c in found]}))
        return
    rows = [[rank, w, f"{c:.4f}"] for rank, (w, c) in enumerate(found, start=1)]
    out.print(make_table(f"nearest words of item {item}", ["rank", "word", "cosine"], rows))
