r"""Neural collaborative filtering (He, Liao, Zhang, Nie, Hu, Chua 2017, *Neural Collaborative Filtering*, WWW '17).

* :class:`GMF` -- generalised matrix factorisation, :math:`\hat y_{ui} = h^\top (p_u \odot q_i) + c`;
* :class:`MLP` -- a ReLU tower over the concatenated embeddings, :math:`\hat y_{ui} = h^\top \phi_L(\dots
  \phi_1([p_u; q_i])) + c`;
* :class:`NeuMF` -- both, fused by one prediction layer, :math:`\hat y_{ui} = h^\top [p^G_u \odot q^G_i;\;
  \phi(p^M_u, q^M_i)] + c`, optionally started from pretrained GMF and MLP (:meth:`NeuMF.from_pretrained`);
* :class:`HybridNeuMF` -- NeuMF whose prediction layer also sees a fixed, pretrained embedding :math:`e_i` of
  the item read from a file (the Goodreads notebook's hybrid model): :math:`\hat y_{ui} = h^\top [e_i;\;
  p^G_u \odot q^G_i;\; \phi(p^M_u, q^M_i)] + c`.

``loss="mse"``: :math:`\hat y` is the rating, trained with the squared error on the observed ratings (explicit
feedback, as in the Goodreads notebook), validated by RMSE. ``loss="bce"``: :math:`\hat y` is a logit, trained
with the binary cross-entropy of every observed interaction (label 1) and ``n_negatives`` items per positive
drawn uniformly among the user's unseen items each epoch (label 0), as in He et al.; validated by a ranking metric
(``monitor``; the sampled-negatives protocol when the validation part has negatives). Every model is trained by
the one Trainer (Adam, or SGD), with an optional per-event L2 penalty on the embeddings of the batch.

**New users** (``score(history, users=None)``): a user has no learned embedding, so fold-in *learns* one: the new
users' embeddings (every tower's) start at the mean training user embedding and are optimised for
``fold_in_steps`` Adam steps on the training loss of their history rows -- squared error on their ratings
(``mse``) or cross-entropy of their items against ``n_negatives`` unseen items each, drawn once with ``seed``
(``bce``) -- with the network and the item side frozen. All rows are optimised together (one rows x dim
parameter), so it is batched, deterministic and exact in spirit: the same objective as training, restricted to
the user's own parameters. An empty history keeps the mean user.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
import pydantic
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from recforge.data.ids import IdMap
from recforge.data.interactions import Interactions
from recforge.data.samplers import sample_negatives
from recforge.evaluation.evaluate import evaluate_ranking, evaluate_sampled
from recforge.metrics import parse_metric
from recforge.models.mf import (
    PAIR_CHUNK,
    NonNegativeFloat,
    NonNegativeInt,
    Optimizer,
    PositiveFloat,
    PositiveInt,
    Probability,
    RatingRecommender,
)
from recforge.models.neural import Monitor
from recforge.training.trainer import Losses, StepContext

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart

__all__ = ["GMF", "MLP", "HybridNeuMF", "NeuMF", "read_item_embeddings"]

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


# ====================================================================== the network
class _NCFModule(nn.Module):
    """GMF and/or MLP towers and an optional fixed item-feature block, fused by one linear prediction layer."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        gmf_dim: int,
        layers: tuple[int, ...],
        dropout: float,
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
            for a, b in itertools.pairwise(layers):
                tower += [nn.Dropout(dropout), nn.Linear(a, b), nn.ReLU()]
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


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` without gradients for the duration (restored after)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


# ====================================================================== shared half
class _NCF(RatingRecommender):
    """Training, scoring, validation and fold-in shared by GMF, MLP, NeuMF and HybridNeuMF."""

    _gmf: ClassVar[bool] = True
    _mlp: ClassVar[bool] = True

    loss: Loss
    n_negatives: int
    l2: float
    monitor: str
    fold_in_steps: int

    # ------------------------------------------------------------------ what depends on the loss
    @property  # type: ignore[override]
    def monitor_mode(self) -> Literal["min", "max"]:  # type: ignore[override]
        return "min" if self.loss == "mse" else "max"

    @property  # type: ignore[override]
    def predicts_ratings(self) -> bool:  # type: ignore[override]
        return self.loss == "mse"

    def monitor_name(self) -> str:
        return "rmse" if self.loss == "mse" else parse_metric(self.monitor).name

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """``mse``: RMSE/MAE of the ratings. ``bce``: the ranking ``monitor``, among the part's sampled negatives
        (He et al.'s protocol) when it has them and the metric is ``hr@k``/``ndcg@k``, else full ranking."""
        if self.loss == "mse":
            return super().validation_metrics(valid)
        metric = parse_metric(self.monitor)
        if valid.negatives is not None and metric.name.split("@")[0] in ("hr", "ndcg"):
            return evaluate_sampled(self, valid, ks=(metric.k,)).metrics
        return evaluate_ranking(self, valid, [metric]).metrics

    # ------------------------------------------------------------------ network
    def _gmf_dim(self) -> int:
        return int(getattr(self, "embedding_dim", 0)) if self._gmf else 0

    def _layers(self) -> tuple[int, ...]:
        return tuple(getattr(self, "layers", ())) if self._mlp else ()

    def _feature_dim(self) -> int:
        return 0

    def build_module(self) -> nn.Module:
        stats = getattr(self, "rating_stats_", {"mean": 0.0})
        return _NCFModule(
            len(self.users_),
            len(self.items_),
            gmf_dim=self._gmf_dim(),
            layers=self._layers(),
            dropout=float(getattr(self, "dropout", 0.0)),
            feature_dim=self._feature_dim(),
            output_bias=stats["mean"] if self.loss == "mse" else 0.0,
        )

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        if not np.isfinite(train.values).all():
            raise ValueError(f"{type(self).__name__}: the training values must be finite")
        super()._prepare(train)
        if self.loss == "bce":
            self.positives_ = (train.user_idx, train.item_idx)
            self.seen_ = train.binary

    def _release(self) -> None:
        super()._release()
        self.__dict__.pop("positives_", None)
        self.__dict__.pop("seen_", None)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.loss == "mse":
            yield from super().batches(rng, device)
            return
        users, items = self.positives_
        negatives = sample_negatives(self.seen_, users, self.n_negatives, rng)  # (n_pos, n_negatives)
        all_users = np.concatenate([users, np.repeat(users, self.n_negatives)])
        all_items = np.concatenate([items, negatives.ravel()])
        labels = np.concatenate([np.ones(len(users), np.float32), np.zeros(negatives.size, np.float32)])
        order = rng.permutation(len(all_users))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield (
                torch.from_numpy(all_users[idx]).to(device),
                torch.from_numpy(all_items[idx]).to(device),
                torch.from_numpy(labels[idx]).to(device),
            )

    def _objective(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-event loss: squared error (``mse``) or binary cross-entropy with logits (``bce``)."""
        if self.loss == "mse":
            return (output - target).square()
        # = binary_cross_entropy_with_logits(output, target), whose CPU kernel goes parallel even for a batch of 256:
        # with spinning OpenMP workers and a core busy elsewhere it took ~10 ms a call, these elementwise ops ~10 us
        return F.softplus(output) - output * target

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        users, items, target = batch
        assert isinstance(module, _NCFModule)
        data = self._objective(module(users, items), target).mean()
        loss = data + self.l2 * module.penalty(users, items) if self.l2 > 0 else data
        return {"loss": loss, self.loss: data.detach()}

    # ------------------------------------------------------------------ predictions and scores
    def _pair_predictions(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out = self.module_(users, items)
        return out if self.loss == "mse" else torch.sigmoid(out)

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

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Predicted ratings (``mse``) or logits (``bce``) of every item; new users are folded in (module doc)."""
        history = self._check_history(history, users)
        with torch.no_grad():
            if users is not None:
                idx = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device_)
                return self._score_vectors(*self.module_.user_vectors(idx))
            return self._score_vectors(*self.fold_in(history))

    def fold_in(self, history: sp.csr_array) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """User vectors (GMF, MLP; None for an absent tower) learned for new users from their history rows."""
        self.check_fitted()
        history = sp.csr_array(history)
        m = self.module_
        assert isinstance(m, _NCFModule)
        n_rows = history.shape[0]
        means = m.mean_user()
        vectors = [None if v is None else nn.Parameter(v.detach().expand(n_rows, -1).clone()) for v in means]
        counts = np.diff(history.indptr)
        if history.nnz == 0:
            return tuple(None if v is None else v.detach() for v in vectors)  # type: ignore[return-value]
        rows = np.repeat(np.arange(n_rows), counts)
        items = history.indices.astype(np.int64)
        target = history.data.astype(np.float32)
        if self.loss == "bce":
            rng = np.random.default_rng(self.seed)
            seen = sp.csr_array(
                (np.ones(history.nnz, np.float32), history.indices, history.indptr), shape=history.shape
            )
            negatives = sample_negatives(seen, rows, self.n_negatives, rng).ravel()
            rows = np.concatenate([rows, np.repeat(rows, self.n_negatives)])
            items = np.concatenate([items, negatives])
            target = np.concatenate([np.ones(history.nnz, np.float32), np.zeros(len(negatives), np.float32)])
        dev = self.device_
        rows_t, items_t = torch.from_numpy(rows).to(dev), torch.from_numpy(items).to(dev)
        target_t = torch.from_numpy(target).to(dev)
        params = [v for v in vectors if v is not None]
        optimizer = torch.optim.Adam(params, lr=FOLD_IN_LR)
        was_training = m.training
        m.eval()
        with torch.enable_grad(), _frozen(m):
            for _ in range(self.fold_in_steps):
                optimizer.zero_grad(set_to_none=True)
                g, h = (None if v is None else v[rows_t] for v in vectors)
                loss = self._objective(m.forward_users(g, h, items_t), target_t).sum()
                if self.l2 > 0:
                    loss = loss + self.l2 * sum(v[rows_t].square().sum() for v in params)
                loss.backward()
                optimizer.step()
        m.train(was_training)
        return tuple(None if v is None else v.detach() for v in vectors)  # type: ignore[return-value]


# ====================================================================== the models
_COMMON_DOC = """
    Hyper-parameters shared by the family: ``loss`` ("mse": ratings; "bce": implicit feedback with
    ``n_negatives`` sampled negatives per positive), ``l2`` (per-event L2 on the batch's embedding rows),
    ``learning_rate``, ``batch_size``, ``max_epochs``, ``patience`` (early stopping on the validation RMSE for
    "mse", on ``monitor`` for "bce"), ``optimizer`` ("adam" or "sgd"), ``fold_in_steps`` (new users, see
    :mod:`recforge.models.ncf`), ``clip`` (clip predicted ratings to the training range), ``seed``.
    ``predict`` returns ratings ("mse") or interaction probabilities ("bce"); ``score`` ratings or logits.
"""


class GMF(_NCF):
    __doc__ = (
        r"""Generalised matrix factorisation (He et al. 2017, eq. 9): :math:`\hat y_{ui} = h^\top (p_u \odot q_i) + c`.

    ``embedding_dim`` is the size of :math:`p_u, q_i` ("predictive factors"); embeddings start at
    :math:`\mathcal N(0, 0.01^2)`, :math:`h` Glorot-uniform, :math:`c` at the training mean rating ("mse") or 0.
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "gmf"
    _gmf: ClassVar[bool] = True
    _mlp: ClassVar[bool] = False

    def __init__(
        self,
        *,
        embedding_dim: PositiveInt = 8,
        loss: Loss = "mse",
        n_negatives: PositiveInt = 4,
        l2: NonNegativeFloat = 0.0,
        learning_rate: PositiveFloat = 0.001,
        batch_size: PositiveInt = 256,
        max_epochs: PositiveInt = 20,
        patience: NonNegativeInt = 3,
        monitor: Monitor = "ndcg@10",
        optimizer: Optimizer = "adam",
        fold_in_steps: NonNegativeInt = 100,
        clip: bool = True,
        seed: int = 0,
    ):
        self._store_params(locals())


class MLP(_NCF):
    __doc__ = (
        r"""Multi-layer perceptron over concatenated embeddings (He et al. 2017, eq. 10).

    .. math:: z_1 = [p_u; q_i],\quad z_{l+1} = \mathrm{ReLU}(W_l\, \mathrm{dropout}(z_l) + b_l),\quad
              \hat y_{ui} = h^\top z_L + c

    ``layers`` are the tower's widths, the first being the concatenated input (user and item embeddings of
    ``layers[0] / 2`` each; He et al.: (64, 32, 16, 8)); ``dropout`` is applied before every tower layer.
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "mlp"
    _gmf: ClassVar[bool] = False
    _mlp: ClassVar[bool] = True

    def __init__(
        self,
        *,
        layers: Layers = (64, 32, 16, 8),
        dropout: Probability = 0.0,
        loss: Loss = "mse",
        n_negatives: PositiveInt = 4,
        l2: NonNegativeFloat = 0.0,
        learning_rate: PositiveFloat = 0.001,
        batch_size: PositiveInt = 256,
        max_epochs: PositiveInt = 20,
        patience: NonNegativeInt = 3,
        monitor: Monitor = "ndcg@10",
        optimizer: Optimizer = "adam",
        fold_in_steps: NonNegativeInt = 100,
        clip: bool = True,
        seed: int = 0,
    ):
        self._store_params(locals())


class NeuMF(_NCF):
    __doc__ = (
        r"""Neural matrix factorisation: GMF and MLP towers with their own embeddings, fused (He et al. 2017, eq. 12).

    .. math:: \hat y_{ui} = h^\top \left[p^G_u \odot q^G_i;\; \phi_L(\dots \phi_1([p^M_u; q^M_i]))\right] + c

    ``embedding_dim`` is the GMF size, ``layers``/``dropout`` the MLP tower as in :class:`MLP`.

    **Pretraining** (He et al. sec. 3.4.1): :meth:`from_pretrained` takes a fitted :class:`GMF` and :class:`MLP`
    and returns an unfitted NeuMF whose ``fit`` starts from their embeddings and tower, with the prediction layer
    :math:`h = [\alpha h^{GMF}; (1-\alpha) h^{MLP}]` (bias likewise). The origin is an initialisation, not a
    hyper-parameter: it is not saved, and the fit must use the same user and item id maps. He et al. then train
    with plain SGD (``optimizer="sgd"``); Adam works too.
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "neumf"

    def __init__(
        self,
        *,
        embedding_dim: PositiveInt = 8,
        layers: Layers = (64, 32, 16, 8),
        dropout: Probability = 0.0,
        loss: Loss = "mse",
        n_negatives: PositiveInt = 4,
        l2: NonNegativeFloat = 0.0,
        learning_rate: PositiveFloat = 0.001,
        batch_size: PositiveInt = 256,
        max_epochs: PositiveInt = 20,
        patience: NonNegativeInt = 3,
        monitor: Monitor = "ndcg@10",
        optimizer: Optimizer = "adam",
        fold_in_steps: NonNegativeInt = 100,
        clip: bool = True,
        seed: int = 0,
    ):
        self._store_params(locals())

    @classmethod
    def from_pretrained(cls, gmf: GMF, mlp: MLP, *, alpha: float = 0.5, **params: Any) -> Self:
        """An unfitted model that ``fit`` starts from fitted ``gmf`` and ``mlp`` (He et al.'s pretraining).

        ``embedding_dim``, ``layers``, ``dropout``, ``loss`` and ``n_negatives`` default to the pretrained
        models' (``embedding_dim``/``layers``/``loss`` must agree with them); other ``params`` as for the class.
        ``alpha`` in [0, 1] weighs the GMF half of the prediction layer.
        """
        if not isinstance(gmf, GMF) or not isinstance(mlp, MLP):
            raise TypeError("NeuMF.from_pretrained needs a fitted GMF and a fitted MLP")
        gmf.check_fitted()
        mlp.check_fitted()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if gmf.users_ != mlp.users_ or gmf.items_ != mlp.items_:
            raise ValueError("the pretrained GMF and MLP were fitted on different user or item id maps")
        if gmf.loss != mlp.loss:
            raise ValueError(f"the pretrained GMF (loss={gmf.loss!r}) and MLP (loss={mlp.loss!r}) disagree on the loss")
        merged = {
            "embedding_dim": gmf.embedding_dim,
            "layers": mlp.layers,
            "dropout": mlp.dropout,
            "loss": gmf.loss,
            "n_negatives": gmf.n_negatives,
            **params,
        }
        for key, source in (("embedding_dim", gmf.embedding_dim), ("layers", tuple(mlp.layers)), ("loss", gmf.loss)):
            value = tuple(merged[key]) if key == "layers" else merged[key]
            if value != source:
                raise ValueError(f"{key}={merged[key]!r} does not match the pretrained models' {source!r}")
        model = cls(**cls.validate_params(merged))
        model._pretrained = {
            "gmf": {k: v.detach().cpu().clone() for k, v in gmf.module_.state_dict().items()},
            "mlp": {k: v.detach().cpu().clone() for k, v in mlp.module_.state_dict().items()},
            "alpha": float(alpha),
            "users": gmf.users_,
            "items": gmf.items_,
        }
        return model

    def _prepare(self, train: Interactions) -> None:
        pre = getattr(self, "_pretrained", None)
        if pre is not None and (train.users != pre["users"] or train.items != pre["items"]):
            raise ValueError("NeuMF.from_pretrained: fit on data with the pretrained models' user and item id maps")
        super()._prepare(train)

    def build_module(self) -> nn.Module:
        module = super().build_module()
        pre = getattr(self, "_pretrained", None)
        if pre is None or not hasattr(self, "triples_"):  # only when fitting (not when loading saved weights)
            return module
        gmf, mlp, alpha = pre["gmf"], pre["mlp"], pre["alpha"]
        own = module.state_dict()
        with torch.no_grad():
            for key, value in gmf.items():
                if key.startswith(("user_gmf.", "item_gmf.")):
                    own[key].copy_(value)
            for key, value in mlp.items():
                if key.startswith(("user_mlp.", "item_mlp.", "tower.")):
                    own[key].copy_(value)
            # prediction-layer input: [item features (HybridNeuMF); GMF; MLP]; the feature block starts at 0
            start, gmf_end = module.feature_dim, module.feature_dim + self.embedding_dim
            own["predict.weight"][:, :start] = 0.0
            own["predict.weight"][:, start:gmf_end] = alpha * gmf["predict.weight"]
            own["predict.weight"][:, gmf_end:] = (1 - alpha) * mlp["predict.weight"]
            own["predict.bias"].copy_(alpha * gmf["predict.bias"] + (1 - alpha) * mlp["predict.bias"])
        return module


# ====================================================================== hybrid
def read_item_embeddings(
    path: str | Path, items: IdMap, *, id_column: str = "item", dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pretrained item embeddings from a file, aligned to ``items``: ``(table n_items x d float32, known bool)``.

    Formats, by suffix: ``.csv`` / ``.parquet`` (a column ``id_column`` with the raw item ids, every other column a
    numeric dimension), ``.npy`` (a 2-D numeric array whose first column is the integer item id) and ``.npz``
    (arrays ``ids`` and ``embeddings``). File ids that are not training items are ignored; training items absent
    from the file get ``known = False`` (a zero row). Errors name the file: unknown format, missing id column,
    non-numeric or non-finite values, repeated ids, no id in common with ``items``, or ``dim`` given and different.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"item embeddings file {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        if id_column not in frame.columns:
            raise ValueError(f"{path}: no item id column {id_column!r}; columns are {list(frame.columns)}")
        ids = frame[id_column].to_numpy()
        values = frame.drop(columns=[id_column])
        bad = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
        if bad:
            raise ValueError(f"{path}: embedding columns must be numeric; not numeric: {bad[:5]}")
        table = values.to_numpy(dtype=np.float32)
    elif suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] < 2 or array.dtype.kind not in "iuf":
            raise ValueError(
                f"{path}: expected a 2-D numeric array (item id column, then the embedding), got {array.shape}"
            )
        if not np.all(np.isfinite(array[:, 0])) or not np.all(array[:, 0] == np.round(array[:, 0])):
            raise ValueError(f"{path}: the first column must hold integer item ids")
        ids, table = array[:, 0].astype(np.int64), array[:, 1:].astype(np.float32)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            if "ids" not in archive or "embeddings" not in archive:
                raise ValueError(f"{path}: an .npz of item embeddings needs arrays 'ids' and 'embeddings'")
            ids, table = archive["ids"], archive["embeddings"].astype(np.float32)
        if table.ndim != 2 or len(table) != len(ids):
            raise ValueError(f"{path}: 'embeddings' must be 2-D with one row per id; shapes {table.shape}, {ids.shape}")
    else:
        raise ValueError(f"{path}: unknown item embeddings format {suffix!r}; use .csv, .parquet, .npy or .npz")
    if table.shape[1] == 0:
        raise ValueError(f"{path}: no embedding columns besides the item id")
    if dim is not None and table.shape[1] != dim:
        raise ValueError(f"{path}: embeddings have {table.shape[1]} dimensions, but item_embedding_dim={dim}")
    if not np.isfinite(table).all():
        raise ValueError(f"{path}: embeddings contain NaN or infinite values")
    if not pd.Index(ids).is_unique:
        raise ValueError(f"{path}: item ids repeat, e.g. {pd.Index(ids)[pd.Index(ids).duplicated()][:3].tolist()}")
    idx = items.index(ids, missing="minus_one")
    if (idx < 0).all() and len(ids):
        idx = items.index(items.coerce([str(i) for i in ids]), missing="minus_one")  # "12" vs 12
    if not (idx >= 0).any():
        shown = ", ".join(map(str, list(ids[:3])))
        raise ValueError(f"{path}: none of its {len(ids)} item ids ({shown}, ...) is an item of the training data")
    out = np.zeros((len(items), table.shape[1]), dtype=np.float32)
    known = np.zeros(len(items), dtype=bool)
    out[idx[idx >= 0]] = table[idx >= 0]
    known[idx[idx >= 0]] = True
    return out, known


class HybridNeuMF(NeuMF):
    __doc__ = (
        r"""NeuMF whose prediction layer also sees a fixed, pretrained item embedding (the Goodreads notebook's hybrid).

    .. math:: \hat y_{ui} = h^\top \left[e_i;\; p^G_u \odot q^G_i;\; \phi_L(\dots \phi_1([p^M_u; q^M_i]))\right] + c

    :math:`e_i` is read from ``item_embeddings`` (a file, see :func:`read_item_embeddings`; ``item_id_column``
    names its id column) at fit time, aligned to the training item id map and kept as a registered buffer on the
    model's device (gathered by index in every batch; never looked up per item in Python). Items without a row in
    the file use one learned fallback vector. ``item_embedding_dim``, when given, must equal the file's dimension.
    The buffer is part of the saved weights, so a saved model loads without the file. It can also start from
    pretrained GMF and MLP (:meth:`NeuMF.from_pretrained`).
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "hybridneumf"

    def __init__(
        self,
        *,
        item_embeddings: str,
        item_id_column: str = "item",
        item_embedding_dim: Annotated[int, pydantic.Field(ge=1)] | None = None,
        embedding_dim: PositiveInt = 8,
        layers: Layers = (64, 32, 16, 8),
        dropout: Probability = 0.0,
        loss: Loss = "mse",
        n_negatives: PositiveInt = 4,
        l2: NonNegativeFloat = 0.0,
        learning_rate: PositiveFloat = 0.001,
        batch_size: PositiveInt = 256,
        max_epochs: PositiveInt = 20,
        patience: NonNegativeInt = 3,
        monitor: Monitor = "ndcg@10",
        optimizer: Optimizer = "adam",
        fold_in_steps: NonNegativeInt = 100,
        clip: bool = True,
        seed: int = 0,
    ):
        super().__init__(
            embedding_dim=embedding_dim,
            layers=layers,
            dropout=dropout,
            loss=loss,
            n_negatives=n_negatives,
            l2=l2,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_epochs=max_epochs,
            patience=patience,
            monitor=monitor,
            optimizer=optimizer,
            fold_in_steps=fold_in_steps,
            clip=clip,
            seed=seed,
        )
        self.item_embeddings = item_embeddings
        self.item_id_column = item_id_column
        self.item_embedding_dim = item_embedding_dim

    def _prepare(self, train: Interactions) -> None:
        table, known = read_item_embeddings(
            self.item_embeddings, train.items, id_column=self.item_id_column, dim=self.item_embedding_dim
        )
        self._embedding_table = (torch.from_numpy(table), torch.from_numpy(known))
        self.item_embedding_coverage_ = float(known.mean())
        super()._prepare(train)

    def _feature_dim(self) -> int:
        table = getattr(self, "_embedding_table", None)
        if table is None:
            raise RuntimeError("HybridNeuMF: the item embeddings are not loaded")
        return int(table[0].shape[1])

    def build_module(self) -> nn.Module:
        module = super().build_module()
        table, known = self._embedding_table
        module.item_features.copy_(table)
        module.has_features.copy_(known)
        return module

    def _release(self) -> None:
        super()._release()
        self.__dict__.pop("_embedding_table", None)

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        # the buffer in the weights fixes the dimension: build the module from it, never from the file
        self._embedding_table = (tensors["module.item_features"], tensors["module.has_features"])
        self.item_embedding_coverage_ = float(tensors["module.has_features"].float().mean())
        try:
            super()._load_state(tensors)
        finally:
            self.__dict__.pop("_embedding_table", None)
