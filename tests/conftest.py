"""Shared fixtures: a small data set with a planted block structure, and real MovieLens 100K when available.

Set ``RECFORGE_DATA`` to the folder holding ``ml-100k/`` (e.g. ``../shared/data``) to run the real-data
tests; without it they are skipped.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recforge.data.interactions import Interactions


@dataclass(frozen=True)
class Planted:
    """Users in groups, each group consuming its own block of items, with a held-out part per user."""

    train: Interactions
    heldout: sp.csr_array  # users x items (same id maps as train): the held-out own-block items
    user_group: np.ndarray  # group of each user index
    item_group: np.ndarray  # group (block) of each item index


def make_planted(
    *,
    n_groups: int = 3,
    users_per_group: int = 30,
    items_per_group: int = 20,
    per_user: int = 8,
    held_out: int = 2,
    noise: int = 1,
    seed: int = 0,
) -> Planted:
    """Every user takes ``per_user`` random items of its group's block (``held_out`` of them held out)
    plus ``noise`` random items of other blocks (kept in training). Raw ids are strings and the item ids
    are shuffled so that the blocks are not contiguous in index order."""
    rng = np.random.default_rng(seed)
    n_items = n_groups * items_per_group
    item_names = np.array([f"i{j:03d}" for j in rng.permutation(n_items)])  # block of item j: j // per group
    rows: list[tuple[str, str, bool]] = []
    for g in range(n_groups):
        block = np.arange(g * items_per_group, (g + 1) * items_per_group)
        others = np.setdiff1d(np.arange(n_items), block)
        for u in range(users_per_group):
            user = f"u{g}-{u:02d}"
            own = rng.choice(block, per_user, replace=False)
            for pos, j in enumerate(own):
                rows.append((user, item_names[j], pos < held_out))
            for j in rng.choice(others, noise, replace=False):
                rows.append((user, item_names[j], False))
    frame = pd.DataFrame(rows, columns=["user", "item", "held"])
    full = Interactions.from_frame(frame[["user", "item"]])
    held = frame["held"].to_numpy()
    train = Interactions.from_frame(frame.loc[~held, ["user", "item"]], users=full.users, items=full.items)
    heldout = Interactions.from_frame(frame.loc[held, ["user", "item"]], users=full.users, items=full.items).matrix
    group_of_name = {item_names[j]: j // items_per_group for j in range(n_items)}
    item_group = np.array([group_of_name[i] for i in full.items.ids])
    user_group = np.array([int(str(u)[1:].split("-")[0]) for u in full.users.ids])
    return Planted(train=train, heldout=heldout, user_group=user_group, item_group=item_group)


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
