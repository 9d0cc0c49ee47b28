r"""Rating from the review text: :class:`TextRating` and :class:`TextProfileRating` (the tutorial's part 2 A and B).

**These are review-sentiment models, not recommenders.** They need the review, and a review is written after the
item was consumed, so they cannot choose what to recommend: they predict the rating of a (user, item, review)
triple. ``score``/``recommend`` raise a :class:`TypeError` saying so; use :meth:`TextRating.predict_reviews`
(raw ids and texts) or :meth:`TextRating.predict_events` (an :class:`~recforge.data.interactions.Interactions`
whose events carry ``review_text``), and compare their errors with the rating recommenders' on the same split.
They are trained by the one Trainer (early stopping on the validation RMSE of the ``valid`` part's reviews) and
saved like every model (weights + the vocabulary as JSON in ``config.json``); they are not in the model registry
(``recforge train`` evaluates rankings), so load them with ``TextRating.load(path)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.text import PAD, TokenArrays, review_texts
from recforge.models.neural import TorchRecommender
from recforge.models.optim import adam, lazy_adam_
from recforge.models.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, hyperparameters
from recforge.models.rating import check_ratings
from recforge.models.text.common import ReviewTextState, VocabularyParams, epoch_order
from recforge.training.trainer import Losses, StepContext

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart

__all__ = ["TextProfileRating", "TextRating"]

#: reviews per forward pass when predicting
_PREDICT_CHUNK = 8192


class BagRatingModule(nn.Module):
    r""":math:`\hat r = w^\top [\bar e_{\text{review}}; P_u; Q_i] + b`: the mean of the review's word embeddings
    (EmbeddingBag), optionally with user and item embeddings concatenated, through one linear layer.

    The layer :math:`[w; b]` is kept as a one-row table so that, with ``sparse``, every parameter has sparse
    gradients (one lazy-Adam optimiser, :class:`torch.optim.SparseAdam`, then updates only the rows a batch used).
    """

    def __init__(
        self, vocab_size: int, dim: int, *, n_users: int, n_items: int, profile_dim: int, mean: float, sparse: bool
    ):
        super().__init__()
        self.words = nn.EmbeddingBag(vocab_size, dim, mode="mean", padding_idx=PAD, sparse=sparse)
        self.profile_dim = profile_dim
        if profile_dim:
            self.users = nn.Embedding(n_users, profile_dim, sparse=sparse)
            self.items = nn.Embedding(n_items, profile_dim, sparse=sparse)
            nn.init.normal_(self.users.weight, 0.0, 0.1)
            nn.init.normal_(self.items.weight, 0.0, 0.1)
        width = dim + 2 * profile_dim
        self.head = nn.Embedding(1, width + 1, sparse=sparse)  # [w; b], initialised as nn.Linear
        bound = 1.0 / width**0.5
        nn.init.uniform_(self.head.weight, -bound, bound)
        with torch.no_grad():
            self.head.weight[0, -1] = float(mean)

    def forward(
        self, tokens: torch.Tensor, offsets: torch.Tensor, users: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        x = self.words(tokens, offsets)
        if self.profile_dim:
            x = torch.cat([x, self.users(users), self.items(items)], dim=1)
        head = self.head(torch.zeros(1, dtype=torch.long, device=x.device))[0]
        return x @ head[:-1] + head[-1]


@hyperparameters
class TextRating(VocabularyParams, ReviewTextState, TorchRecommender):
    r"""The rating predicted from the review text alone (the tutorial's ``RatingPred``; **not a recommender**).

    .. math::
        \hat r = w^\top \bar e_{\text{review}} + b, \qquad \bar e_{\text{review}} = \frac{1}{|T|}\sum_{t\in T} E_t,
        \qquad \min \frac{1}{|B|}\sum_{B} (r - \hat r)^2

    :math:`E` is a word embedding table of ``embedding_dim`` columns over the vocabulary (built on the training
    reviews: ``max_words``, ``skip_most_common``, ``tokenizer``); :math:`T` the review's in-vocabulary and unknown
    tokens (an empty review is the zero vector); :math:`b` starts at the training mean. Shuffled mini-batches of
    flat token bags (no padding), ``optimizer`` at ``learning_rate``: lazy Adam on sparse gradients
    (``"lazy_adam"``, default: the gradient written out and Adam applied to the batch's rows only, no autograd;
    ``"sparse_adam"``: the same rule by autograd and torch's SparseAdam, slower; ``"adam"``: dense Adam updating
    the whole table every step, as the tutorial). Early stopping on the validation RMSE of ``valid``'s reviews.
    Predictions are clipped to the training rating range when ``clip``.
    """

    name: ClassVar[str] = "textrating"
    monitor_mode: ClassVar[str] = "min"  # type: ignore[misc]
    #: whether user and item embeddings join the text (TextProfileRating)
    profiles: ClassVar[bool] = False

    embedding_dim: PositiveInt = 50
    optimizer: Literal["lazy_adam", "sparse_adam", "adam"] = "lazy_adam"
    learning_rate: PositiveFloat = 1e-3
    batch_size: PositiveInt = 64
    max_epochs: PositiveInt = 50
    patience: NonNegativeInt = 3
    clip: bool = True
    seed: int = 0

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        check_ratings(train, type(self).__name__)
        self._prepare_text(train)
        values = np.asarray(train.values, dtype=np.float32)
        self.rating_stats_ = {
            "mean": float(values.mean(dtype=np.float64)),
            "low": float(values.min()),
            "high": float(values.max()),
        }
        self.events_ = (train.user_idx.astype(np.int64), train.item_idx.astype(np.int64), values)

    def _release(self) -> None:
        self.__dict__.pop("events_", None)
        self.__dict__.pop("moments_", None)
        self._release_text()

    def build_module(self) -> nn.Module:
        profile = getattr(self, "profile_dim", 0) if self.profiles else 0
        return BagRatingModule(
            len(self.vocabulary_),
            self.embedding_dim,
            n_users=len(self.users_),
            n_items=len(self.items_),
            profile_dim=profile,
            mean=self.rating_stats_["mean"],
            sparse=self.optimizer == "sparse_adam",
        )

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """``lazy_adam`` (default): none -- the step updates the rows itself (:meth:`_lazy_adam_step`);
        ``sparse_adam``: torch's SparseAdam on sparse gradients; ``adam``: Adam on dense gradients."""
        if self.optimizer == "lazy_adam":
            return []
        if self.optimizer == "sparse_adam":
            return [torch.optim.SparseAdam(list(module.parameters()), lr=self.learning_rate)]
        return [adam(module.parameters(), self.learning_rate)]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
        """Shuffled batches ``(tokens, offsets, users, items, ratings, bag of each token, 1 / its bag's length)``;
        the epoch's bags are gathered once and sliced per batch."""
        users, items, ratings = self.events_
        order, slices = epoch_order(len(ratings), rng, self.batch_size)
        epoch = self.tokens_.take(order)
        rows = np.arange(len(order), dtype=np.int64)
        first = rows - rows % self.batch_size  # the first row of each row's batch
        offsets = epoch.indptr[:-1] - epoch.indptr[first]  # within the batch, as EmbeddingBag wants them
        bag = np.repeat(rows - first, epoch.lengths)  # each token's row within its batch
        share = np.repeat(1.0 / np.maximum(epoch.lengths, 1), epoch.lengths).astype(np.float32)  # 1 / |T_b|
        tokens, offsets_t, bag_t, share_t = (
            torch.from_numpy(a).to(device) for a in (epoch.tokens, offsets, bag, share)
        )
        u, i, r = (torch.from_numpy(a[order]).to(device) for a in (users, items, ratings))
        bounds = epoch.indptr.tolist()
        for sl in slices:
            lo, hi = bounds[sl.start], bounds[sl.stop]
            yield tokens[lo:hi], offsets_t[sl], u[sl], i[sl], r[sl], bag_t[lo:hi], share_t[lo:hi]

    def _l2(self) -> float:
        return float(getattr(self, "l2", 0.0)) if self.profiles else 0.0

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        if self.optimizer == "lazy_adam":
            return self._lazy_adam_step(module, batch, ctx.global_step + 1)
        tokens, offsets, users, items, ratings, _, _ = batch
        mse = F.mse_loss(module(tokens, offsets, users, items), ratings)
        if not self._l2():
            return {"loss": mse, "mse": mse.detach()}
        penalty = (module.users(users).square().sum(-1) + module.items(items).square().sum(-1)).mean()
        return {"loss": mse + self._l2() * penalty, "mse": mse.detach()}

    def _lazy_adam_step(self, module: nn.Module, batch: Any, step: int) -> Losses:
        r"""One step without autograd: the loss's gradient written out and Adam applied to the batch's rows only.

        With :math:`x_b = [\bar e_b; P_u; Q_i]`, :math:`g_b = \frac{2}{B}(\hat r_b - r_b)`:
        :math:`\partial/\partial w = \sum_b g_b x_b`, :math:`\partial/\partial b = \sum_b g_b`,
        :math:`\partial/\partial E_t = \sum_{b \ni t} g_b w_E / |T_b|`, :math:`\partial/\partial P_u =
        \sum_{b: u} (g_b w_P + \frac{2\lambda}{B} P_u)` (likewise :math:`Q_i`). Each touched row then gets
        Adam's update with its own moments (lazy Adam, as :class:`torch.optim.SparseAdam`; the step count is
        global; the moments live on the model during ``fit`` and are not checkpointed, so a resumed training
        restarts them). The gradient is checked against autograd in the tests.
        """
        tokens, offsets, users, items, ratings, bag, share = batch
        n = len(ratings)
        dim = module.words.embedding_dim
        head = module.head.weight[0]
        w, b = head[:-1], head[-1]
        x = module.words(tokens, offsets)
        parts = [x]
        if module.profile_dim:
            p_u, q_i = module.users.weight[users], module.items.weight[items]
            parts += [p_u, q_i]
        feats = torch.cat(parts, dim=1) if len(parts) > 1 else x
        err = torch.addmv(ratings, feats, w, beta=-1.0).add_(b)  # feats w + b - r
        g = err * (2.0 / n)
        grads = [(module.head.weight, None, torch.cat([g @ feats, g.sum().reshape(1)])[None, :], True)]
        # every token's gradient row is (g_b / |T_b|) w_E: sum the scalars per word, then one outer product per
        # distinct word; the distinct words (sorted) come from a vocabulary-long mark, cheaper than sorting tokens
        vocab = module.words.num_embeddings
        words = torch.zeros(vocab, dtype=torch.bool, device=g.device).index_fill_(0, tokens, True).nonzero()[:, 0]
        per_token = g.index_select(0, bag).mul_(share)
        per_word = torch.zeros(vocab, dtype=g.dtype, device=g.device).index_add_(0, tokens, per_token)[words]
        grads.append((module.words.weight, words, torch.outer(per_word, w[:dim]), True))
        if module.profile_dim:
            k = module.profile_dim
            decay = 2.0 * self._l2() / n
            grads.append((module.users.weight, users, torch.outer(g, w[dim : dim + k]) + decay * p_u, False))
            grads.append((module.items.weight, items, torch.outer(g, w[dim + k :]) + decay * q_i, False))
        moments = self.__dict__.setdefault("moments_", {})
        for param, rows, grad, distinct in grads:
            lazy_adam_(param, moments, rows, grad, step, self.learning_rate, distinct=distinct)
        mse = err.dot(err) / n
        return {"loss": mse, "mse": mse}

    # ------------------------------------------------------------------ validation and prediction
    def monitor_name(self) -> str:
        return "rmse"

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """RMSE and MAE of the predicted ratings of the validation reviews."""
        target = valid.target
        err = self.predict_events(target) - np.asarray(target.values, dtype=np.float64)
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}

    def _predict(self, tokens: TokenArrays, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.empty(len(tokens), dtype=np.float32)
        device = self.device_
        with torch.no_grad():
            for start in range(0, len(tokens), _PREDICT_CHUNK):
                rows = np.arange(start, min(start + _PREDICT_CHUNK, len(tokens)))
                flat, offsets = tokens.bag(rows)
                pred = self.module_(
                    torch.from_numpy(flat).to(device),
                    torch.from_numpy(offsets).to(device),
                    torch.from_numpy(users[rows]).to(device),
                    torch.from_numpy(items[rows]).to(device),
                )
                out[rows] = pred.float().cpu().numpy()
        if self.clip:
            np.clip(out, self.rating_stats_["low"], self.rating_stats_["high"], out=out)
        return out

    def predict_events(self, events: Interactions) -> np.ndarray:
        """Predicted ratings (float32) of events over the training id maps that carry their ``review_text``
        (e.g. a split's ``valid.target`` or ``test.target``)."""
        self.check_fitted()
        if events.items != self.items_ or (self.profiles and events.users != self.users_):
            raise ValueError("the events must use the model's training id maps (a part of the same split)")
        tokens = self.vocabulary_.encode(review_texts(events))
        return self._predict(tokens, events.user_idx.astype(np.int64), events.item_idx.astype(np.int64))

    def predict_reviews(
        self, texts: Sequence[str], user_ids: Sequence[Any] | None = None, item_ids: Sequence[Any] | None = None
    ) -> np.ndarray:
        """Predicted ratings (float32) of reviews given as texts (with their raw user and item ids for
        :class:`TextProfileRating`; unknown ids raise :class:`~recforge.data.ids.UnknownIdError`)."""
        self.check_fitted()
        n = len(texts)
        if self.profiles:
            if user_ids is None or item_ids is None:
                raise ValueError(f"{type(self).__name__} needs the user and item id of every review")
            users, items = self.users_.index(list(user_ids)), self.items_.index(list(item_ids))
            if len(users) != n or len(items) != n:
                raise ValueError(f"{n} reviews for {len(users)} user ids and {len(items)} item ids")
        else:
            users = items = np.zeros(n, dtype=np.int64)
        tokens = self.vocabulary_.encode(list(texts))
        return self._predict(tokens, np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64))

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        if self.__dict__.pop("_load_probe_", False):  # the one shape probe of ``load`` right after the weights
            return torch.zeros((history.shape[0], self.n_items))
        raise TypeError(
            f"{type(self).__name__} predicts the rating of a written review: it needs the review text, which exists "
            "only after the item was consumed, so it cannot rank items to recommend (use predict_reviews or "
            "predict_events; for recommendations use TextMF)"
        )

    # ------------------------------------------------------------------ persistence
    def _state_info(self) -> dict[str, Any]:
        return {**super()._state_info(), "rating_stats": self.rating_stats_}

    def _load_state_info(self, info: dict[str, Any]) -> None:
        super()._load_state_info(info)
        self.rating_stats_ = dict(info["rating_stats"])

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        super()._load_state(tensors)  # raises when the weights do not fit the vocabulary and id maps
        self._load_probe_ = True


@hyperparameters
class TextProfileRating(TextRating):
    r"""The rating from the review text **and** the user and item embeddings (the tutorial's
    ``RatingPredProfile``; not a recommender either: it needs the review).

    .. math::
        \hat r = w^\top [\bar e_{\text{review}}; P_u; Q_i] + b, \qquad
        \min \frac{1}{|B|}\sum_{(u, i) \in B} \left[(r - \hat r)^2 + \lambda (\lVert P_u\rVert^2
            + \lVert Q_i\rVert^2)\right]

    :math:`P, Q` have ``profile_dim`` columns, started at :math:`\mathcal N(0, 0.1^2)`; :math:`\lambda` = ``l2``
    (per event, as in matrix factorisation; the tutorial has none); the rest as :class:`TextRating`. A user or
    item without training reviews keeps its random start.
    """

    name: ClassVar[str] = "textprofilerating"
    profiles: ClassVar[bool] = True

    profile_dim: PositiveInt = 25
    l2: NonNegativeFloat = 0.0
