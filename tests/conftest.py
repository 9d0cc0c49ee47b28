"""Shared fixtures: a small data set with a planted block structure, and real MovieLens 100K when available.

Set ``RECFORGE_DATA`` to the folder holding ``ml-100k/`` (e.g. ``../shared/data``) to run the real-data
tests; without it they are skipped.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions
from recforge.testing import Planted, make_planted


@pytest.fixture(scope="session")
def planted() -> Planted:
    """3 groups x 30 users, 3 blocks x 20 items, 8 own-block items per user (2 held out) + 1 noise item."""
    return make_planted()


def _data_dir() -> Path | None:
    root = os.environ.get("RECFORGE_DATA")
    return Path(root) if root else None


@pytest.fixture(scope="session")
def ml100k_frame() -> pd.DataFrame:
    """MovieLens 100K ``u.data`` as a frame (user, item, rating, timestamp); skipped without RECFORGE_DATA."""
    root = _data_dir()
    if root is None:
        pytest.skip("set RECFORGE_DATA to the folder holding ml-100k/ to run real-data tests")
    path = root / "ml-100k" / "u.data"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])


@dataclass(frozen=True)
class Holdout:
    """A random per-user train/test split of one implicit data set (same id maps)."""

    train: Interactions
    test: sp.csr_array


@pytest.fixture(scope="session")
def ml100k_holdout(ml100k_frame: pd.DataFrame) -> Holdout:
    """ML-100K, every rating as a 1, with 20% of each user's items (at least one) held out at random."""
    full = Interactions.from_frame(ml100k_frame, explicit=False)
    full = full.with_values(np.ones(len(full), dtype=np.float32), explicit=False)
    rng = np.random.default_rng(42)
    test = np.zeros(len(full), dtype=bool)
    starts = np.r_[0, np.cumsum(full.user_counts())]
    for a, b in itertools.pairwise(starts):  # events are sorted by user
        n = b - a
        if n >= 2:
            test[a + rng.choice(n, max(1, round(0.2 * n)), replace=False)] = True
    return Holdout(train=full.select(~test), test=full.select(test).matrix)


# ---------------------------------------------------------------------------------------------- a real browser
#: Chromium started headless as the workplace's closed network needs it (no background connections).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def browser():
    """A headless system Chromium driven by Playwright (no browser download); skipped with the reason when either
    is missing (CI installs Debian's chromium)."""
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium installed (Debian/Ubuntu: sudo apt-get install chromium); browser tests need one")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
