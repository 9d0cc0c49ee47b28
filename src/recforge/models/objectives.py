r"""Training objectives of models that output one value per (user, item) pair: one object per ``loss`` value.

A pair model (the NCF family of :mod:`recforge.models.ncf`) picks its objective once, from its ``loss``
hyper-parameter (:func:`objective_for`), and delegates to it everything that depends on the target:

* :class:`RatingObjective` (``"mse"``) -- the output is the rating: squared error on the observed ratings,
  shuffled rating triples as batches, validated by RMSE (lower is better); the output bias starts at the mean
  rating.
* :class:`ImplicitObjective` (``"bce"``) -- the output is a logit: binary cross-entropy of every observed
  interaction (label 1) and ``n_negatives`` items per positive drawn uniformly among the user's unseen items each
  epoch (label 0), as in He et al. (2017); validated by a ranking metric (higher is better).

Each supplies the per-event loss, the prediction transform, the validation metrics and direction, the epoch's
events and the events a new user is folded in on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn import functional as F

from recforge.data.interactions import Interactions
from recforge.data.samplers import RatingTriples, binary_rows, sample_negatives
from recforge.evaluation.evaluate import evaluate_ranking, evaluate_ratings, evaluate_sampled
from recforge.metrics import parse_metric
from recforge.metrics.rating import MAE, RMSE
from recforge.models.rating import EventSource
from recforge.training.callbacks import Mode

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart
    from recforge.models.rating import RatingRecommender

__all__ = ["ImplicitObjective", "NegativeSampledEvents", "Objective", "RatingObjective", "objective_for"]

#: (history row of each event, item of each event, target of each event)
Events = tuple[np.ndarray, np.ndarray, np.ndarray]


class Objective(ABC):
    """What a pair model's training, validation and fold-in depend on when the target changes."""

    #: the ``loss`` value, and the name the data part of the loss is logged under
    name: ClassVar[str]
    #: direction of the monitored validation value
    monitor_mode: ClassVar[Mode]
    #: whether the (transformed) output is a rating, clipped to the training range when the model's ``clip``
    predicts_ratings: ClassVar[bool]

    @abstractmethod
    def initial_output(self, rating_mean: float) -> float:
        """The start of the output bias, given the training mean rating."""

    @abstractmethod
    def event_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-event loss of raw outputs against targets."""

    @abstractmethod
    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        """What ``predict`` returns of raw outputs."""

    @abstractmethod
    def monitor_name(self) -> str:
        """The validation figure that drives early stopping and the best checkpoint."""

    @abstractmethod
    def validation_metrics(self, model: RatingRecommender, valid: EvalPart) -> dict[str, float]:
        """The validation figures of ``model`` on ``valid``."""

    @abstractmethod
    def training_events(self, train: Interactions, batch_size: int) -> EventSource:
        """What an epoch's (users, items, targets) batches are drawn from."""

    @abstractmethod
    def fold_in_events(self, history: sp.csr_array) -> Events:
        """The events new users (the rows of ``history``) are folded in on."""


class RatingObjective(Objective):
    """``loss="mse"``: ratings, squared error, RMSE."""

    name: ClassVar[str] = "mse"
    monitor_mode: ClassVar[Mode] = "min"
    predicts_ratings: ClassVar[bool] = True

    def initial_output(self, rating_mean: float) -> float:
        return rating_mean

    def event_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output - target).square()

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def monitor_name(self) -> str:
        return "rmse"

    def validation_metrics(self, model: RatingRecommender, valid: EvalPart) -> dict[str, float]:
        """RMSE and MAE of the predicted ratings of the validation events."""
        return evaluate_ratings(model, valid, [RMSE(), MAE()]).metrics

    def training_events(self, train: Interactions, batch_size: int) -> EventSource:
        values = np.asarray(train.values, dtype=np.float32)
        return RatingTriples(train.user_idx, train.item_idx, values, batch_size=batch_size)

    def fold_in_events(self, history: sp.csr_array) -> Events:
        """The user's ratings."""
        rows = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
        return rows, history.indices.astype(np.int64), history.data.astype(np.float32)


@dataclass
class NegativeSampledEvents:
    """Every positive (label 1) and ``n_negatives`` unseen items per positive (label 0), drawn anew each epoch,
    shuffled together into batches of ``batch_size``."""

    users: np.ndarray
    items: np.ndarray
    seen: sp.csr_array
    n_negatives: int
    batch_size: int

    def __call__(self, rng: np.random.Generator) -> Iterator[Events]:
        users, n_neg = self.users, self.n_negatives
        negatives = sample_negatives(self.seen, users, n_neg, rng)  # (n_pos, n_negatives)
        all_users = np.concatenate([users, np.repeat(users, n_neg)])
        all_items = np.concatenate([self.items, negatives.ravel()])
        labels = np.concatenate([np.ones(len(users), np.float32), np.zeros(negatives.size, np.float32)])
        order = rng.permutation(len(all_users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield all_users[idx], all_items[idx], labels[idx]


class ImplicitObjective(Objective):
    """``loss="bce"``: interactions against sampled negatives, cross-entropy on logits, a ranking ``monitor``.

    ``seed`` draws the negatives of the fold-in of new users (the same every call: fold-in is deterministic).
    """

    name: ClassVar[str] = "bce"
    monitor_mode: ClassVar[Mode] = "max"
    predicts_ratings: ClassVar[bool] = False

    def __init__(self, *, n_negatives: int, monitor: str, seed: int):
        self.n_negatives, self.monitor, self.seed = n_negatives, monitor, seed

    def initial_output(self, rating_mean: float) -> float:
        return 0.0

    def event_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # = binary_cross_entropy_with_logits(output, target), whose CPU kernel goes parallel even for a batch of 256:
        # with spinning OpenMP workers and a core busy elsewhere it took ~10 ms a call, these elementwise ops ~10 us
        return F.softplus(output) - output * target

    def prediction(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output)

    def monitor_name(self) -> str:
        return parse_metric(self.monitor).name

    def validation_metrics(self, model: RatingRecommender, valid: EvalPart) -> dict[str, float]:
        """The ranking ``monitor``, among the part's sampled negatives (He et al.'s protocol) when it has them and
        the metric is ``hr@k``/``ndcg@k``, else by full ranking."""
        metric = parse_metric(self.monitor)
        if valid.negatives is not None and metric.name.split("@")[0] in ("hr", "ndcg"):
            return evaluate_sampled(model, valid, ks=(metric.k,)).metrics
        return evaluate_ranking(model, valid, [metric]).metrics

    def training_events(self, train: Interactions, batch_size: int) -> EventSource:
        return NegativeSampledEvents(train.user_idx, train.item_idx, train.binary, self.n_negatives, batch_size)

    def fold_in_events(self, history: sp.csr_array) -> Events:
        """The user's items (label 1) and ``n_negatives`` unseen items each (label 0), drawn with ``seed``."""
        rows, items, _ = RatingObjective().fold_in_events(history)
        rng = np.random.default_rng(self.seed)
        seen = binary_rows(history)
        negatives = sample_negatives(seen, rows, self.n_negatives, rng).ravel()
        return (
            np.concatenate([rows, np.repeat(rows, self.n_negatives)]),
            np.concatenate([items, negatives]),
            np.concatenate([np.ones(history.nnz, np.float32), np.zeros(len(negatives), np.float32)]),
        )


def objective_for(loss: str, *, n_negatives: int, monitor: str, seed: int) -> Objective:
    """The objective of a ``loss`` hyper-parameter value: ``"mse"`` or ``"bce"``."""
    if loss == "mse":
        return RatingObjective()
    if loss == "bce":
        return ImplicitObjective(n_negatives=n_negatives, monitor=monitor, seed=seed)
    raise ValueError(f"unknown loss {loss!r}; use 'mse' or 'bce'")
