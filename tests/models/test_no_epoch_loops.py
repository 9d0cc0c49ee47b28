"""Only the Trainer loops over epochs: no model module contains an epoch loop."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import recforge.models

MODELS_DIR = Path(recforge.models.__file__).parent


def epoch_loops(source: str) -> list[int]:
    """Line numbers of loops over epochs: a ``for`` whose target names an epoch or whose iterable counts
    epochs (``max_epochs``, ``n_epochs``, ``num_epochs``), or a ``while`` whose condition names an epoch."""
    counts_epochs = re.compile(r"\b(max|n|num)_epochs\b")
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.For):
            found = "epoch" in ast.unparse(node.target).lower() or counts_epochs.search(ast.unparse(node.iter))
        elif isinstance(node, ast.While):
            found = "epoch" in ast.unparse(node.test).lower()
        else:
            continue
        if found:
            lines.append(node.lineno)
    return lines


def test_the_detector_finds_an_epoch_loop():
    assert epoch_loops("for epoch in range(self.max_epochs):\n    pass\n") == [1]
    assert epoch_loops("while self.epoch < 3:\n    pass\n") == [1]
    assert epoch_loops("for _ in range(self.max_epochs):\n    pass\n") == [1]
    assert epoch_loops("for batch in self.batches(rng):\n    pass\n") == []
    assert epoch_loops("for _ in range(self.steps_per_epoch):\n    pass\n") == []


def test_no_model_module_has_an_epoch_loop():
    paths = sorted(MODELS_DIR.rglob("*.py"))
    assert any(path.parent != MODELS_DIR for path in paths), "the scan must reach subpackages (models/autoencoders/)"
    offenders = {str(path.relative_to(MODELS_DIR)): found for path in paths if (found := epoch_loops(path.read_text()))}
    assert offenders == {}, f"epoch loops belong in recforge.training.Trainer: {offenders}"
