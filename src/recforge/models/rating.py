"""`RatingRecommender`: the half every rating model of recforge has in common.

The models trained on (user, item, rating) events -- :class:`~recforge.models.cofi.CoFiMF`, the factor models of
:mod:`recforge.models.mf` and the NCF family of :mod:`recforge.models.ncf` -- share: the training events as
batches, ``predict`` (raw ids) and ``predict_indices`` (indices, what
:func:`~recforge.evaluation.evaluate.evaluate_ratings` calls), early stopping on the validation RMSE, and
``recommend_for_history`` with ratings. Ranking uses the predicted rating (unclipped) as the score.

Also here: the optimiser choice these models declare (Adam from :mod:`recforge.models.optim`, or SGD).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.samplers import RatingTriples
from recforge.evaluation.evaluate import evaluate_ratings
from recforge.metrics.rating import MAE, RMSE
from recforge.models.neural import TorchRecommender
from recforge.models.optim import adam

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart

__all__ = ["PAIR_CHUNK", "EventSource", "RatingRecommender", "check_ratings", "event_batches"]

Optimizer = Literal["adam", "sgd"]

#: (user, item) pairs per forward pass when predicting or scoring many pairs at once.
PAIR_CHUNK = 1 << 20

#: One epoch of training events, shuffled with the given generator: (users, items, targets) numpy batches.
EventSource = Callable[[np.random.Generator], Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def event_batches(
    source: EventSource, rng: np.random.Generator, device: torch.device
) -> Iterator[tuple[torch.Tensor, ...]]:
    """The numpy batches of ``source`` for one epoch, as tensors on ``device``. Shuffled rating triples are
    gathered and moved once per epoch and sliced per batch (same batches; no per-batch copies)."""
    if isinstance(source, RatingTriples):
        epoch = [torch.from_numpy(a).to(device, non_blocking=True) for a in source.epoch(rng)]
        size = source.batch_size
        for start in range(0, len(epoch[0]), size):
            yield tuple(a[start : start + size] for a in epoch)
        return
    for users, items, targets in source(rng):
        yield (
            torch.from_numpy(users).to(device, non_blocking=True),
            torch.from_numpy(items).to(device, non_blocking=True),
            torch.from_numpy(targets).to(device, non_blocking=True),
        )


def check_ratings(train: Interactions, model: str) -> None:
    """Refuse data without finite values (the ratings a rating model learns from)."""
    if not np.isfinite(train.values).all():
        raise ValueError(f"{model}: the training values (ratings) must be finite")


class RatingRecommender(TorchRecommender):
    """Common half of the rating-prediction models trained on (user, item, rating) triples.

    * batches: the training events of :meth:`_training_events`, by default shuffled
      :class:`~recforge.data.samplers.RatingTriples` (``values`` are the ratings when the data is explicit);
    * validation: RMSE and MAE of :func:`evaluate_ratings` on the ``valid`` part; the RMSE drives early stopping
      and the best checkpoint (``monitor_mode = "min"``);
    * ``predict`` / ``predict_indices``: predicted ratings, clipped to the training range when ``clip``;
    * ``recommend_for_history(item_ids, k, values=...)``: a new user given with their ratings.

    Subclasses supply the module, :meth:`_known_user_scores` and :meth:`_new_user_scores` (what :meth:`score`
    returns for training users and for new users folded in from their history), and, when the module's forward
    is not the prediction itself, :meth:`_pair_predictions`.
    """

    folds_in_from_history: ClassVar[bool] = False
    monitor_mode: ClassVar[Literal["min", "max"]] = "min"
    #: whether ``predict`` returns ratings (clipped when ``clip``); False for models trained on implicit targets
    predicts_ratings: ClassVar[bool] = True
    #: optimiser of :meth:`configure_optimizers` (a subclass's ``optimizer`` hyper-parameter)
    optimizer: str = "adam"

    clip: bool

    # ------------------------------------------------------------------ training data
    def _prepare(self, train: Interactions) -> None:
        values = np.asarray(train.values, dtype=np.float32)
        self.rating_stats_ = {
            "mean": float(values.mean(dtype=np.float64)),
            "low": float(values.min()),
            "high": float(values.max()),
        }
        self.events_ = self._training_events(train)

    def _training_events(self, train: Interactions) -> EventSource:
        """What an epoch's batches are drawn from; default: the shuffled rating triples, ``batch_size`` a batch."""
        values = np.asarray(train.values, dtype=np.float32)
        return RatingTriples(train.user_idx, train.item_idx, values, batch_size=self.batch_size)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
        return event_batches(self.events_, rng, device)

    def _release(self) -> None:
        self.__dict__.pop("events_", None)

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam (default) or plain SGD at ``learning_rate``; the L2 penalty is part of the loss, not weight decay."""
        if self.optimizer == "sgd":
            return [torch.optim.SGD(module.parameters(), lr=self.learning_rate)]
        return [adam(module.parameters(), self.learning_rate)]

    # ------------------------------------------------------------------ validation
    def monitor_name(self) -> str:
        return "rmse"

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """RMSE and MAE of the predicted ratings of the validation events."""
        return evaluate_ratings(self, valid, [RMSE(), MAE()]).metrics

    # ------------------------------------------------------------------ predictions
    def _pair_predictions(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Raw (unclipped) predictions of the index pairs, on the model's device: the module's output."""
        return self.module_(users, items)

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Predicted values of every item: learned users by their parameters, new users folded in (module doc)."""
        history = self._check_history(history, users)
        with torch.no_grad():
            if users is not None:
                return self._known_user_scores(torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device_))
            return self._new_user_scores(history)

    @abstractmethod
    def _known_user_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores (rows x n_items) of training users given as an index tensor on the model's device."""

    @abstractmethod
    def _new_user_scores(self, history: sp.csr_array) -> torch.Tensor:
        """Scores (rows x n_items) of new users, folded in from their history rows (ratings as values)."""

    def predict_indices(self, user_idx: Any, item_idx: Any) -> torch.Tensor:
        """Predicted ratings (float32, CPU) of (user, item) index pairs, clipped to the training range if ``clip``.

        This is what :func:`~recforge.evaluation.evaluate.evaluate_ratings` calls.
        """
        self.check_fitted()
        users = torch.as_tensor(np.asarray(user_idx, dtype=np.int64))
        items = torch.as_tensor(np.asarray(item_idx, dtype=np.int64))
        if users.shape != items.shape or users.dim() != 1:
            raise ValueError(f"user_idx and item_idx must be 1-D of one length, got {users.shape} and {items.shape}")
        for name, idx, n in (("user", users, len(self.users_)), ("item", items, self.n_items)):
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise IndexError(f"{name} index out of range 0..{n - 1}")
        out = torch.empty(len(users), dtype=torch.float32)
        with torch.no_grad():
            for start in range(0, len(users), PAIR_CHUNK):
                sl = slice(start, start + PAIR_CHUNK)
                pred = self._pair_predictions(users[sl].to(self.device_), items[sl].to(self.device_))
                out[sl] = pred.float().cpu()
        if self.clip and self.predicts_ratings:
            out.clamp_(self.rating_stats_["low"], self.rating_stats_["high"])
        return out

    def predict(self, user_ids: Sequence[Any], item_ids: Sequence[Any]) -> np.ndarray:
        """Predicted ratings (float32) of (user id, item id) pairs given as raw ids; unknown ids raise
        :class:`~recforge.data.ids.UnknownIdError`."""
        self.check_fitted()
        users = self.users_.index(list(user_ids))
        items = self.items_.index(list(item_ids))
        if len(users) != len(items):
            raise ValueError(f"{len(users)} user ids for {len(items)} item ids")
        return self.predict_indices(users, items).numpy()

    def _default_history_value(self) -> float:
        """A new user's items without ratings count as liked: the top of the training rating scale."""
        return float(self.rating_stats_["high"])

    def _training_mean(self) -> float:
        """The training mean rating (the start of a learned global mean or output bias); 0 before any data."""
        stats = getattr(self, "rating_stats_", None)
        return float(stats["mean"]) if stats is not None else 0.0

    # ------------------------------------------------------------------ persistence
    def _state_info(self) -> dict[str, Any]:
        return {**super()._state_info(), "rating_stats": self.rating_stats_}

    def _load_state_info(self, info: dict[str, Any]) -> None:
        super()._load_state_info(info)
        self.rating_stats_ = dict(info["rating_stats"])
