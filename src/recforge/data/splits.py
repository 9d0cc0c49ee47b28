"""Split protocols: every function returns one `Split` (train + evaluation parts), seeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recforge.data.interactions import Interactions


@dataclass(frozen=True)
class EvalPart:
    """Users to evaluate: what a model may know of them (``history``) and what it must find (``target``).

    ``history`` and ``target`` share one user id map and the training item id map. With
    ``known_users=True`` that user map *is* the training user map (weak generalisation: the model
    has seen these users); otherwise the users are new and must be folded in from ``history``
    (strong generalisation). ``history`` items are excluded from the ranking. ``negatives``
    (one row per user, item indices) are set for the sampled-negatives protocol.
    """

    history: Interactions
    target: Interactions
    known_users: bool
    negatives: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.history.users != self.target.users or self.history.items != self.target.items:
            raise ValueError("EvalPart history and target must share their user and item id maps")
        if self.negatives is not None and len(self.negatives) != self.history.n_users:
            raise ValueError("EvalPart.negatives needs one row per user")

    @property
    def n_users(self) -> int:
        """Users with at least one target event."""
        return int((self.target.user_counts() > 0).sum())


@dataclass(frozen=True)
class Split:
    """The result of a split protocol: ``train``, optional ``valid`` and ``test`` parts, and how it was made."""

    train: Interactions
    test: EvalPart
    valid: EvalPart | None = None
    protocol: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Sizes of every part, for logs and run directories."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "train_users": int((self.train.user_counts() > 0).sum()),
            "items": self.train.n_items,
            "train_interactions": self.train.nnz,
        }
        for name, part in (("valid", self.valid), ("test", self.test)):
            if part is not None:
                out[f"{name}_users"] = part.n_users
                out[f"{name}_history_interactions"] = part.history.nnz
                out[f"{name}_target_interactions"] = part.target.nnz
        return out
