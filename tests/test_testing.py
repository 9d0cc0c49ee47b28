"""`recforge.testing` checks a model that is not one of recforge's: a user's own, unregistered recommender."""

from __future__ import annotations

from typing import ClassVar

import pydantic
import torch

from recforge.models.base import BaseRecommender
from recforge.testing import RecommenderContract


class CoOccurrence(BaseRecommender):
    """A user's scores: their history times the item co-occurrence counts, ``x_u (X^T X - diag)^alpha``."""

    name: ClassVar[str] = "my-cooccurrence"  # not in recforge's registry

    def __init__(self, *, alpha: pydantic.PositiveFloat = 1.0):
        self._store_params(locals())

    def _fit(self, train, valid, options):
        x = torch.from_numpy(train.binary.toarray())
        gram = x.T @ x
        gram.fill_diagonal_(0.0)
        self.weights_ = gram.pow(self.alpha)

    def score(self, history, users=None):
        history = self._check_history(history, users)
        return torch.from_numpy(history.toarray()).float() @ self.weights_

    def _state(self):
        return {"weights": self.weights_}

    def _load_state(self, tensors):
        self.weights_ = tensors["weights"]


class TestOwnModel(RecommenderContract):
    invalid_params = ({"alpha": 0.0}, {"alpha": "many"})

    def make_model(self):
        return CoOccurrence(alpha=1.0)
