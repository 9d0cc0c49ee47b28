"""Shared fixtures of the experiment tests: a small planted-block CSV and a helper to run the command line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = os.environ.get("RECFORGE_DATA")
needs_ml100k = pytest.mark.skipif(
    not DATA or not (Path(DATA) / "ml-100k" / "u.data").exists(), reason="RECFORGE_DATA with ml-100k not set"
)


@pytest.fixture(scope="session")
def planted_csv(tmp_path_factory) -> Path:
    """4 groups x 40 users, 25 items per group; each user has 12 items of its group and 1 of another."""
    rng = np.random.default_rng(0)
    rows = []
    for g in range(4):
        for u in range(40):
            own = rng.choice(25, 12, replace=False) + 25 * g
            other = rng.choice(np.setdiff1d(np.arange(100), np.arange(25 * g, 25 * g + 25)), 1)
            rows += [(f"u{g}-{u}", f"i{j}") for j in (*own, *other)]
    path = tmp_path_factory.mktemp("planted") / "events.csv"
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(path, index=False)
    return path
