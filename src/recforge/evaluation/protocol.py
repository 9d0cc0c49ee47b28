"""The test protocol: what a model scores test users from (its *input*) and which items their rankings leave out
(the *exclusion*), two separate choices.

For a split with a validation part (weak generalisation: the test users are training users), the test users'
events before the test are their training events and their validation events. Two protocols are in use:

* ``input = "train+valid"``, ``exclude = "input"`` (recforge's default, unchanged since the first release): the model
  scores each test user from their training *and* validation events and those are removed from the ranking;
* ``input = "train"``, ``exclude = "train+valid"`` (the protocol of most other libraries, e.g. RecBole, Cornac, Elliot):
  the model scores from the training events only, and the validation items are removed from the ranking too (they
  are known not to be test items).

``exclude = "input"`` with ``input = "train"`` is also allowed (what ``recforge recommend --all-users`` gives by
default: the validation items may then be recommended). Without a validation part both inputs are the training
events and every protocol is the same. Users held out of training (``heldout_users``, ``liang2018``) are scored from
their fold-in events, which are also what is excluded, whatever the protocol says (``input = "fold-in"`` in
``metrics.json``).

The protocol is named in the run's ``config.json`` (``evaluation.test_input``, ``evaluation.test_exclude``) and in
``metrics.json`` (``"protocol"`` of each part).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.splits import EvalPart, Split
from recforge.evaluation.ranking import exclude_items_, top_k

TEST_INPUTS = ("train+valid", "train")
TEST_EXCLUSIONS = ("input", "train+valid")


@dataclass(frozen=True)
class TestProtocol:
    """What the model scores test users from (``input``) and what their rankings leave out (``exclude``)."""

    __test__ = False  # not a pytest test class

    input: str = "train+valid"
    exclude: str = "input"

    def __post_init__(self) -> None:
        if self.input not in TEST_INPUTS:
            raise ValueError(f"test input must be one of {', '.join(map(repr, TEST_INPUTS))}, got {self.input!r}")
        if self.exclude not in TEST_EXCLUSIONS:
            raise ValueError(
                f"test exclusion must be one of {', '.join(map(repr, TEST_EXCLUSIONS))}, got {self.exclude!r}"
            )

    @property
    def excluded(self) -> str:
        """What is removed from the rankings, spelled out: ``"train"`` or ``"train+valid"``."""
        return self.input if self.exclude == "input" else self.exclude

    def to_json(self) -> dict[str, str]:
        return {"input": self.input, "exclude": self.excluded}


#: recforge's default test protocol (scores from train + valid, excludes them).
DEFAULT_PROTOCOL = TestProtocol()

#: How a validation part is always evaluated: from the training events, excluding them.
VALID_PROTOCOL = {"input": "train", "exclude": "train"}

#: How held-out (fold-in) users are always evaluated.
FOLD_IN_PROTOCOL = {"input": "fold-in", "exclude": "fold-in"}


@dataclass(frozen=True)
class ProtocolPart:
    """A test part as a protocol evaluates it: ``part.history`` is the model's input, ``exclude`` (rows as
    ``part``'s users, or None) what is removed from the rankings besides the input; ``protocol`` names both."""

    part: EvalPart
    exclude: sp.csr_array | None
    protocol: dict[str, str]


def apply_protocol(split: Split, protocol: TestProtocol = DEFAULT_PROTOCOL) -> ProtocolPart:
    """``split.test`` under ``protocol`` (see the module doc). Held-out users keep their fold-in events."""
    part = split.test
    if not part.known_users:
        return ProtocolPart(part, None, dict(FOLD_IN_PROTOCOL))
    before = part.history  # every event before the test: train + valid
    exclude = None
    if protocol.input == "train":
        if split.train.users != part.target.users or split.train.items != part.target.items:
            raise ValueError("the test part does not share the training id maps; input='train' cannot apply")
        part = replace(part, history=split.train)
        if protocol.exclude == "train+valid":
            exclude = before.matrix
    return ProtocolPart(part, exclude, protocol.to_json())


def score_and_exclude(
    model: Any,
    history: sp.csr_array,
    users: np.ndarray | None,
    exclude: sp.csr_array | None = None,
) -> torch.Tensor:
    """Scores of the rows of ``history`` with the input (``history``) and ``exclude`` (same rows) set to -inf."""
    scores = model.score(history, users).float()
    exclude_items_(scores, history)
    if exclude is not None:
        exclude_items_(scores, exclude)
    return scores


def top_k_lists(
    model: Any,
    history: sp.csr_array,
    users: np.ndarray | None,
    k: int,
    *,
    exclude: sp.csr_array | None = None,
    batch_size: int = 1024,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(item indices, scores)`` of the top ``k`` of each row of ``history`` (known ``users`` or None for new
    ones), the input and ``exclude`` removed; excluded items are never listed, so a list may be shorter than
    ``k``. What the evaluator ranks, for lists to hand to another evaluator."""
    history = sp.csr_array(history)
    for start in range(0, history.shape[0], batch_size):
        rows = slice(start, min(start + batch_size, history.shape[0]))
        block_users = users[rows] if users is not None else None
        block_exclude = exclude[rows] if exclude is not None else None
        scores = score_and_exclude(model, history[rows], block_users, block_exclude)
        values, indices = top_k(scores, k)
        for vals, idxs in zip(values.cpu().numpy(), indices.cpu().numpy(), strict=True):
            ok = idxs >= 0
            yield idxs[ok], vals[ok]


def part_lists(model: Any, protocol_part: ProtocolPart, k: int, *, batch_size: int = 1024) -> dict[Any, list[Any]]:
    """Raw user id -> raw item ids of the top ``k`` for every user of the part with a target: the lists the
    evaluator scores under the part's protocol."""
    part = protocol_part.part
    users = np.flatnonzero(part.target.user_counts() > 0)
    history = part.history.matrix[users]
    exclude = protocol_part.exclude[users] if protocol_part.exclude is not None else None
    known = users if part.known_users else None
    item_ids = part.target.items.ids
    user_ids = part.target.users.ids_of(users).tolist()
    lists = top_k_lists(model, history, known, k, exclude=exclude, batch_size=batch_size)
    return {u: item_ids[idxs].tolist() for u, (idxs, _) in zip(user_ids, lists, strict=True)}
