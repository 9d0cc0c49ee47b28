r"""The shared half of the NCF family (:mod:`recforge.models.ncf`): the network and :class:`NCFRecommender`.

:class:`NCFModule` holds GMF and/or MLP towers and an optional fixed item-feature block, fused by one linear
prediction layer. :class:`NCFRecommender` trains, validates, scores and folds in for every member; what depends on
the ``loss`` hyper-parameter comes from its objective (:mod:`recforge.models.objectives`), what depends on the
member from :meth:`NCFRecommender._towers` (and :meth:`NCFRecommender._feature_dim`).

**New users** (``score(history, users=None)``): a user has no learned embedding, so fold-in *learns* one
(:func:`~recforge.models.foldin.fold_in_by_gradient`): the new users' embeddings (every tower's) start at the mean
training user embedding and are optimised for ``fold_in_steps`` Adam steps on the training loss of their history
rows (the objective's fold-in events), the network and the item side frozen -- the gradient is taken with
respect to the new vectors only, so the shared network is never modified and concurrent fold-ins are safe.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import pydantic
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.models.foldin import fold_in_by_gradient
from recforge.models.neural import Monitor
from recforge.models.objectives import Objective, objective_for
from recforge.models.params import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    hyperparameters,
)
from recforge.models.rating import PAIR_CHUNK, EventSource, Optimizer, RatingRecommender, check_ratings
from recforge.training.trainer import Losses, StepContext

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart

__all__ = ["FOLD_IN_LR", "Layers", "Loss", "NCFModule", "NCFRecommender", "Towers"]

Loss = Literal["mse", "bce"]
#: Adam step size of the fold-in of new users (embeddings are O(0.01-1)).
FOLD_IN_LR = 0.05


def _check_layers(value: tuple[int, ...]) -> tuple[int, ...]:
    if len(value) < 1 or any(v < 1 for v in value):
        raise ValueError("layers must be one or more positive sizes, e.g. (64, 32, 16, 8)")
    if value[0] % 2:
        raise ValueError(f"layers[0] must be even (user and item MLP embeddings of layers[0] / 2 each), got {value[0]}")
    return value


Layers = Annotated[tuple[int, ...], pydantic.AfterValidator(_check_layers)]

Dropout = Probability | tuple[Probability, ...]
"""Dropout before the MLP tower's layers: one rate for every layer, or one per layer (``(0.5, 0.3, 0.3)`` for
``layers=(64, 32, 16, 8)``, as in the Goodreads notebook)."""


def tower_dropouts(dropout: float | tuple[float, ...], layers: tuple[int, ...]) -> tuple[float, ...]:
    """One dropout rate per tower layer (``len(layers) - 1`` of them); a clear error naming ``dropout`` otherwise."""
    n = max(len(layers) - 1, 0)
    if isinstance(dropout, int | float):
        return (float(dropout),) * n
    if len(dropout) != n:
        raise ValueError(f"dropout: {len(dropout)} rates for the {n} tower layers of layers={layers}; give one or {n}")
    return tuple(float(d) for d in dropout)


class Towers(NamedTuple):
    """A member's network: the GMF size (0: no GMF tower), the MLP widths (empty: no MLP tower) and dropout."""

    gmf_dim: int = 0
    layers: tuple[int, ...] = ()
    dropout: float | tuple[float, ...] = 0.0


UserVectors = tuple[torch.Tensor | None, torch.Tensor | None]


# ====================================================================== the network
class NCFModule(nn.Module):
    """GMF and/or MLP towers and an optional fixed item-feature block, fused by one linear prediction layer."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        gmf_dim: int,
        layers: tuple[int, ...],
        dropout: float | tuple[float, ...],
        feature_dim: int = 0,
        output_bias: float = 0.0,
    ):
        super().__init__()
        self.gmf_dim, self.feature_dim = gmf_dim, feature_dim
        self.has_mlp = bool(layers)
        width = 0
        if gmf_dim:
            self.user_gmf = nn.Embedding(n_users, gmf_dim)
            self.item_gmf = nn.Embedding(n_items, gmf_dim)
            width += gmf_dim
        if layers:
            self.user_mlp = nn.Embedding(n_users, layers[0] // 2)
            self.item_mlp = nn.Embedding(n_items, layers[0] // 2)
            tower: list[nn.Module] = []
            for (a, b), rate in zip(itertools.pairwise(layers), tower_dropouts(dropout, layers), strict=True):
                tower += [nn.Dropout(rate), nn.Linear(a, b), nn.ReLU()]
            self.tower = nn.Sequential(*tower)
            width += layers[-1]
        if feature_dim:
            self.register_buffer("item_features", torch.zeros(n_items, feature_dim))
            self.register_buffer("has_features", torch.zeros(n_items, dtype=torch.bool))
            self.feature_fallback = nn.Parameter(torch.zeros(feature_dim))  # items without a pretrained embedding
            width += feature_dim
        self.predict = nn.Linear(width, 1)
        # He et al.: embeddings N(0, 0.01^2), Glorot-uniform layers
        for emb in self.embeddings():
            nn.init.normal_(emb.weight, std=0.01)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.predict.bias, output_bias)

    def embeddings(self) -> list[nn.Embedding]:
        return [m for m in self.modules() if isinstance(m, nn.Embedding)]

    def user_vectors(self, users: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gmf = self.user_gmf(users) if self.gmf_dim else None
        mlp = self.user_mlp(users) if self.has_mlp else None
        return gmf, mlp

    def mean_user(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gmf = self.user_gmf.weight.mean(0) if self.gmf_dim else None
        mlp = self.user_mlp.weight.mean(0) if self.has_mlp else None
        return gmf, mlp

    def forward_users(
        self, user_gmf: torch.Tensor | None, user_mlp: torch.Tensor | None, items: torch.Tensor
    ) -> torch.Tensor:
        """The output for given user vectors (one row per pair) and item indices."""
        parts = []
        if self.feature_dim:
            known = self.has_features[items, None]
            parts.append(torch.where(known, self.item_features[items], self.feature_fallback))
        if self.gmf_dim:
            assert user_gmf is not None
            parts.append(user_gmf * self.item_gmf(items))
        if self.has_mlp:
            assert user_mlp is not None
            parts.append(self.tower(torch.cat([user_mlp, self.item_mlp(items)], dim=-1)))
        return self.predict(torch.cat(parts, dim=-1)).squeeze(-1)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.forward_users(*self.user_vectors(users), items)

    def penalty(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the squared norms of every embedding row it uses (user and item, all towers)."""
        total = torch.zeros((), device=users.device)
        if self.gmf_dim:
            total = total + self.user_gmf(users).square().sum(-1).mean() + self.item_gmf(items).square().sum(-1).mean()
        if self.has_mlp:
            total = total + self.user_mlp(users).square().sum(-1).mean() + self.item_mlp(items).square().sum(-1).mean()
        return total


# ====================================================================== shared half
@hyperparameters
class NCFParams:
    """The hyper-parameters every NCF model has: the objective (``loss``: "mse" on ratings, "bce" on implicit
    feedback with ``n_negatives`` sampled negatives per positive), the per-event L2 on the batch's embedding rows,
    Adam's (or SGD's) step, batch, epochs, early stopping (on the validation RMSE for "mse", on ``monitor`` for
    "bce"), the fold-in steps of new users, clipping of predicted ratings to the training range, and the seed."""

    loss: Loss = "mse"
    n_negatives: PositiveInt = 4
    l2: NonNegativeFloat = 0.0
    learning_rate: PositiveFloat = 0.001
    batch_size: PositiveInt = 256
    max_epochs: PositiveInt = 20
    patience: NonNegativeInt = 3
    monitor: Monitor = "ndcg@10"
    optimizer: Optimizer = "adam"
    fold_in_steps: NonNegativeInt = 100
    clip: bool = True
    seed: int = 0


class NCFRecommender(NCFParams, RatingRecommender):
    """Training, scoring, validation and fold-in shared by GMF, MLP, NeuMF and HybridNeuMF."""

    # ------------------------------------------------------------------ what the member declares
    @abstractmethod
    def _towers(self) -> Towers:
        """The member's towers, from its hyper-parameters."""

    def _feature_dim(self) -> int:
        """Size of the fixed item-feature block of the prediction layer's input (0: none)."""
        return 0

    # ------------------------------------------------------------------ what depends on the loss
    @property
    def objective(self) -> Objective:
        """The objective of the ``loss`` hyper-parameter (:func:`~recforge.models.objectives.objective_for`)."""
        return objective_for(self.loss, n_negatives=self.n_negatives, monitor=self.monitor, seed=self.seed)

    @property  # type: ignore[override]
    def monitor_mode(self) -> Literal["min", "max"]:  # type: ignore[override]
        return self.objective.monitor_mode

    @property  # type: ignore[override]
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.objective.predicts_ratings

    def monitor_name(self) -> str:
        return self.objective.monitor_name()

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """``mse``: RMSE/MAE of the ratings. ``bce``: the ranking ``monitor``, among the part's sampled negatives
        (He et al.'s protocol) when it has them and the metric is ``hr@k``/``ndcg@k``, else full ranking."""
        return self.objective.validation_metrics(self, valid)

    # ------------------------------------------------------------------ network
    def build_module(self) -> nn.Module:
        towers = self._towers()
        return NCFModule(
            len(self.users_),
            len(self.items_),
            gmf_dim=towers.gmf_dim,
            layers=towers.layers,
            dropout=towers.dropout,
            feature_dim=self._feature_dim(),
            output_bias=self.objective.initial_output(self._training_mean()),
        )

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        check_ratings(train, type(self).__name__)
        super()._prepare(train)

    def _training_events(self, train: Interactions) -> EventSource:
        return self.objective.training_events(train, self.batch_size)

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        users, items, target = batch
        assert isinstance(module, NCFModule)
        objective = self.objective
        data = objective.event_loss(module(users, items), target).mean()
        loss = data + self.l2 * module.penalty(users, items) if self.l2 > 0 else data
        return {"loss": loss, objective.name: data.detach()}

    # ------------------------------------------------------------------ predictions and scores
    def _pair_predictions(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.objective.prediction(self.module_(users, items))

    def _score_vectors(self, user_gmf: torch.Tensor | None, user_mlp: torch.Tensor | None) -> torch.Tensor:
        """Scores of every item for rows of user vectors, in chunks of about ``PAIR_CHUNK`` pairs."""
        m = self.module_
        n_rows = (user_gmf if user_gmf is not None else user_mlp).shape[0]  # type: ignore[union-attr]
        out = torch.empty((n_rows, self.n_items), dtype=torch.float32, device=self.device_)
        items = torch.arange(self.n_items, device=self.device_)
        step = max(1, PAIR_CHUNK // max(self.n_items, 1))
        for start in range(0, n_rows, step):
            rows = slice(start, start + step)
            b = min(step, n_rows - start)
            g = None if user_gmf is None else user_gmf[rows].repeat_interleave(self.n_items, dim=0)
            h = None if user_mlp is None else user_mlp[rows].repeat_interleave(self.n_items, dim=0)
            out[rows] = m.forward_users(g, h, items.repeat(b)).view(b, self.n_items).float()
        return out

    def _known_user_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Predicted ratings (``mse``) or logits (``bce``) of every item."""
        return self._score_vectors(*self.module_.user_vectors(users))

    def _new_user_scores(self, history: sp.csr_array) -> torch.Tensor:
        return self._score_vectors(*self.fold_in(history))

    def fold_in(self, history: sp.csr_array) -> UserVectors:
        """User vectors (GMF, MLP; None for an absent tower) learned for new users from their history rows.

        Thread-safe: the network is only read (no ``requires_grad`` flag, ``.grad`` or train/eval mode changes).
        """
        self.check_fitted()
        history = sp.csr_array(history)
        m = self.module_
        assert isinstance(m, NCFModule)
        n_rows = history.shape[0]
        means = m.mean_user()
        present = [v is not None for v in means]
        start = [v.detach().expand(n_rows, -1) for v in means if v is not None]
        if history.nnz == 0 or self.fold_in_steps == 0:
            return _as_towers(present, [v.clone() for v in start])  # the mean user
        rows, items, target = self.objective.fold_in_events(history)
        dev = self.device_

        def forward(vectors: Sequence[torch.Tensor], items: torch.Tensor) -> torch.Tensor:
            return m.forward_users(*_as_towers(present, vectors), items)

        vectors = fold_in_by_gradient(
            start,
            torch.from_numpy(rows).to(dev),
            torch.from_numpy(items).to(dev),
            torch.from_numpy(target).to(dev),
            forward=forward,
            event_loss=self.objective.event_loss,
            steps=self.fold_in_steps,
            lr=FOLD_IN_LR,
            l2=self.l2,
        )
        return _as_towers(present, vectors)


def _as_towers(present: Sequence[bool], vectors: Sequence[torch.Tensor]) -> UserVectors:
    """(GMF, MLP) user vectors from the present towers' vectors, None for an absent tower."""
    it = iter(vectors)
    gmf, mlp = (next(it) if here else None for here in present)
    return gmf, mlp
