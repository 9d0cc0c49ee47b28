"""The most-popular baseline: every user gets the items most training users interacted with."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models.base import BaseRecommender

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart
    from recforge.training.options import TrainingOptions


class Popularity(BaseRecommender):
    r"""Non-personalised popularity ranking.

    .. math:: \text{score}(u, i) = \lvert \{ v : (v, i) \in \text{train} \} \rvert

    the number of distinct training users who interacted with item ``i`` (whatever the values:
    ratings or play counts do not weigh in), the same for every user. It is the standard
    "MostPop" baseline of top-N evaluation (e.g. Cremonesi, Koren, Turrin 2010, *Performance of
    recommender algorithms on top-N recommendation tasks*, RecSys '10). Ties keep torch's ``topk`` order.
    """

    name: ClassVar[str] = "popularity"
    folds_in_from_history: ClassVar[bool] = True

    def __init__(self) -> None:
        pass

    def _fit(self, train: Interactions, valid: EvalPart | None, options: TrainingOptions) -> None:
        # the CSR has one stored entry per distinct (user, item) pair
        counts = np.bincount(train.matrix.indices, minlength=train.n_items)
        self.counts_ = torch.from_numpy(counts.astype(np.float32))

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        history = self._check_history(history, users)
        return self.counts_.expand(history.shape[0], -1).clone()  # a fresh tensor: callers write into it

    def _state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts_}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.counts_ = tensors["counts"].to(torch.float32)
