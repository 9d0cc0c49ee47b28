r"""Predicting a review's words from the item (the tutorial's part 3 and its final model).

Review text is written after consumption, so instead of reading it these models **predict** it: an item vector is
pulled towards the words of the item's reviews and away from random words by the negative-sampling loss of
:mod:`recforge.models.text.common`. Both are recommenders (registered) whose item vectors can be read as words
(``most_similar_words``; ``recforge words RUN_DIR ITEM_ID``).

* :class:`TextItem` -- item embeddings trained on text alone; it recommends by content (the cosine between the
  user's items and the other items in that text-trained space).
* :class:`TextMF` / :class:`TextBiasedMF` -- ClassicMF / BiasedMF plus a linear map from the item factors to the
  word space, trained jointly on the ratings and the text; a rating recommender (score, recommend, ridge fold-in
  of new users) whose item factors explain themselves in words.
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
from recforge.data.text import review_texts
from recforge.models.factors import FactorModule
from recforge.models.mf import FactorMF
from recforge.models.neural import TorchRecommender
from recforge.models.optim import adam
from recforge.models.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, hyperparameters
from recforge.models.rating import check_ratings
from recforge.models.text.common import (
    ReviewTextState,
    VocabularyParams,
    WordInspection,
    epoch_order,
    negative_sampling_loss,
    sampled_words,
)
from recforge.training.trainer import Losses, StepContext

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart

__all__ = ["TextBiasedMF", "TextItem", "TextMF"]

#: seed of the words drawn to compute a validation text loss (the same draw after every epoch)
_VALID_SEED = 12345


def _sampled_batches(
    model: Any, rng: np.random.Generator, device: torch.device, arrays: Sequence[np.ndarray]
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Shuffled batches of ``arrays`` (per event) plus each event's real and fake words, sampled for the whole
    epoch at once (one vectorised draw) and sliced per batch."""
    order, slices = epoch_order(len(arrays[0]), rng, model.batch_size)
    real, fake = sampled_words(model.tokens_, order, model.n_words, model.n_negatives, len(model.vocabulary_), rng)
    tensors = [torch.from_numpy(a[order]).to(device) for a in arrays]
    real_t, fake_t = torch.from_numpy(real).to(device), torch.from_numpy(fake).to(device)
    for sl in slices:
        yield (*(t[sl] for t in tensors), real_t[sl], fake_t[sl])


def _validation_text_loss(model: Any, events: Interactions, query: Any) -> float:
    """The negative-sampling loss of the events' reviews (a fixed draw of words), in batches."""
    tokens = model.vocabulary_.encode(review_texts(events))
    rows = np.arange(len(tokens))
    real, fake = sampled_words(
        tokens, rows, model.n_words, model.n_negatives, len(model.vocabulary_), np.random.default_rng(_VALID_SEED)
    )
    device = model.device_
    total = weight = 0.0
    with torch.no_grad():
        for start in range(0, len(rows), 8192):
            sl = slice(start, start + 8192)
            items = torch.from_numpy(events.item_idx[sl].astype(np.int64)).to(device)
            real_t = torch.from_numpy(real[sl]).to(device)
            n = float((real_t != 0).sum())
            if n == 0:
                continue
            loss = negative_sampling_loss(
                query(items), model._words(), real_t, torch.from_numpy(fake[sl]).to(device), model.cosine_scale
            )
            total += float(loss) * n
            weight += n
    return total / weight if weight else float("nan")


@hyperparameters
class TextItem(VocabularyParams, ReviewTextState, WordInspection, TorchRecommender):
    r"""Item embeddings that predict their reviews' words (the tutorial's ``TextItem``); recommends by content.

    .. math::
        \min \; \frac{1}{|W_B|}\sum_{(i, w) \in W_B} -\Big[\log\sigma\big(s\cos(I_i, E_w)\big)
            + \sum_{j=1}^{k}\log\sigma\big(-s\cos(I_i, E_{v_j})\big)\Big]

    :math:`W_B`: ``n_words`` words drawn without replacement from each review of the batch (the tutorial's 5),
    :math:`v_j`: ``n_negatives`` uniform vocabulary words per real word, :math:`s` = ``cosine_scale``; item and
    word tables of ``embedding_dim`` columns start at :math:`\mathcal N(0, 0.1^2)`. Adam at ``learning_rate``.
    With ``valid``, early stopping on the validation reviews' loss (a fixed draw of their words).

    **Recommending** (``score``): by content only -- a user's profile is the sum of the unit item vectors of their
    history, :math:`p = \sum_{j \in H} \hat I_j`, and every item scores :math:`\cos(p, I_i)`. The history alone
    defines it, so new users fold in for free (``folds_in_from_history``). Ratings are not used except to know
    which items the user reviewed.
    """

    name: ClassVar[str] = "textitem"
    monitor_mode: ClassVar[str] = "min"  # type: ignore[misc]

    embedding_dim: PositiveInt = 50
    n_words: PositiveInt = 5
    n_negatives: PositiveInt = 1
    cosine_scale: PositiveFloat = 5.0
    skip_most_common: NonNegativeInt = 1000
    learning_rate: PositiveFloat = 0.01
    batch_size: PositiveInt = 64
    max_epochs: PositiveInt = 50
    patience: NonNegativeInt = 3
    seed: int = 0

    def _prepare(self, train: Interactions) -> None:
        self._prepare_text(train)
        self.events_item_ = train.item_idx.astype(np.int64)

    def _release(self) -> None:
        self.__dict__.pop("events_item_", None)
        self._release_text()

    def build_module(self) -> nn.Module:
        module = nn.Module()
        module.items = nn.Embedding(len(self.items_), self.embedding_dim)
        module.words = nn.Embedding(len(self.vocabulary_), self.embedding_dim)
        nn.init.normal_(module.items.weight, 0.0, 0.1)
        nn.init.normal_(module.words.weight, 0.0, 0.1)
        return module

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        return [adam(module.parameters(), self.learning_rate)]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
        return _sampled_batches(self, rng, device, [self.events_item_])

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        items, real, fake = batch
        loss = negative_sampling_loss(module.items(items), module.words, real, fake, self.cosine_scale)
        return {"loss": loss}

    def monitor_name(self) -> str:
        return "text_loss"

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """The negative-sampling loss of the validation reviews (the same draw of words every epoch)."""
        return {"text_loss": _validation_text_loss(self, valid.target, self.module_.items)}

    def _words(self) -> nn.Embedding:
        return self.module_.words

    # ------------------------------------------------------------------ words and scores
    def _item_word_queries(self, items: torch.Tensor) -> torch.Tensor:
        return self.module_.items(items)

    def _word_table(self) -> torch.Tensor:
        return self.module_.words.weight

    def item_vectors(self) -> np.ndarray:
        """The learned item embeddings (n_items x embedding_dim, float32): text as item side information."""
        self.check_fitted()
        return self.module_.items.weight.detach().float().cpu().numpy()

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Cosine between the sum of the unit vectors of the user's items and every item (class docstring)."""
        history = self._check_history(history, users)
        with torch.no_grad():
            unit = F.normalize(self.module_.items.weight, dim=-1)
            pattern = sp.csr_array((np.ones(history.nnz, np.float32), history.indices, history.indptr), history.shape)
            dense = torch.from_numpy(pattern.toarray()).to(unit.device)
            return F.normalize(dense @ unit, dim=-1) @ unit.T


class TextFactorModule(FactorModule):
    r"""The factor network plus word embeddings :math:`E` and the map :math:`T` (linear, no bias) from item
    factors to the word space: the text vector of item ``i`` is :math:`T I_i`. (The tutorial's ``nn.Linear`` has
    a bias :math:`c`; with the item factors shrunk by the L2 term, :math:`T I_i + c` is then close to :math:`c`
    for every item and every item gets the same words. The cosine ignores the scale, so without :math:`c` the
    direction of :math:`I_i` alone picks the item's words.)"""

    def __init__(self, n_users: int, n_items: int, dim: int, *, vocab_size: int, word_dim: int, **kw: Any):
        super().__init__(n_users, n_items, dim, sparse=False, **kw)
        self.word_embeddings = nn.Embedding(vocab_size, word_dim)
        nn.init.normal_(self.word_embeddings.weight, 0.0, 0.1)
        self.to_text = nn.Linear(dim, word_dim, bias=False)


class TextMF(ReviewTextState, WordInspection, FactorMF):
    r"""ClassicMF joined with the prediction of the review text (the tutorial's ``TextClassicMF``).

    .. math::
        \hat r_{ui} = \mu + U_u \cdot I_i, \qquad
        \min \frac{1}{|B|}\sum_{(u,i)\in B}\Big[(r_{ui} - \hat r_{ui})^2
            + \lambda\big(\lVert U_u\rVert^2 + \lVert I_i\rVert^2\big)\Big]
            + \alpha\, \frac{1}{|W_B|}\sum_{(i,w)\in W_B} \ell\big(T I_i, w\big)

    with :math:`\ell` the negative-sampling loss of :mod:`recforge.models.text.common` (``n_words`` words of each
    review against ``n_negatives`` uniform words each, cosine scale ``cosine_scale``), :math:`T` a linear map from
    the ``embedding_dim`` item factors to the ``word_dim`` word space and :math:`\alpha` = ``text_weight``
    (0: plain ClassicMF). The text term shapes the item factors, so they also explain themselves in words:
    :meth:`most_similar_words`. Everything else is ClassicMF's (``inference="map"`` only): Adam (or SGD) on
    shuffled mini-batches, early stopping on the validation RMSE, known users scored by their factors, new users
    folded in by the exact ridge solve of their part of the rating objective. :class:`TextBiasedMF` adds the
    biases :math:`b_u + b_i` of BiasedMF.
    """

    name: ClassVar[str] = "textmf"
    biases: ClassVar[bool] = False
    inference = "map"  # the point estimate only (the text term has no Gibbs sampler)
    burn_in = 0

    word_dim: int
    text_weight: float
    n_words: int
    n_negatives: int
    cosine_scale: float

    def __init__(
        self,
        *,
        embedding_dim: PositiveInt = 25,
        word_dim: PositiveInt = 50,
        text_weight: NonNegativeFloat = 1.0,
        n_words: PositiveInt = 5,
        n_negatives: PositiveInt = 1,
        cosine_scale: PositiveFloat = 5.0,
        max_words: PositiveInt = 10_000,
        skip_most_common: NonNegativeInt = 1000,
        tokenizer: Literal["words", "whitespace"] = "words",
        l2: NonNegativeFloat = 0.1,
        bias_l2: NonNegativeFloat = 0.005,
        learning_rate: PositiveFloat = 0.002,
        batch_size: PositiveInt = 256,
        max_epochs: PositiveInt = 100,
        patience: NonNegativeInt = 5,
        optimizer: Literal["adam", "sgd"] = "adam",
        init_std: PositiveFloat = 0.1,
        clip: bool = True,
        seed: int = 0,
    ):
        self._store_params(locals())

    def _prepare(self, train: Interactions) -> None:
        check_ratings(train, type(self).__name__)
        self._prepare_text(train)
        super()._prepare(train)

    def _release(self) -> None:
        super()._release()
        self._release_text()

    def build_module(self) -> nn.Module:
        return TextFactorModule(
            len(self.users_),
            len(self.items_),
            self.embedding_dim,
            vocab_size=len(self.vocabulary_),
            word_dim=self.word_dim,
            biases=self.biases,
            mean=self._training_mean(),
            init_std=self.init_std,
        )

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        if self.optimizer == "sgd":
            return [torch.optim.SGD(module.parameters(), lr=self.learning_rate)]
        return [adam(module.parameters(), self.learning_rate)]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        """Shuffled ``(users, items, ratings, real words, fake words)`` batches."""
        events = self.events_
        users, items = events.user_idx.astype(np.int64), events.item_idx.astype(np.int64)
        return _sampled_batches(self, rng, device, [users, items, events.values])

    def early_stopping_patience(self) -> int | None:
        return self.patience

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        users, items, ratings, real, fake = batch
        assert isinstance(module, TextFactorModule)
        loss, mse = module.loss(users, items, ratings, self.l2, self.bias_l2)
        out: dict[str, torch.Tensor] = {"mse": mse}
        if self.text_weight > 0:
            text = negative_sampling_loss(
                module.to_text(module.item_factors(items)), module.word_embeddings, real, fake, self.cosine_scale
            )
            loss = loss + self.text_weight * text
            out["text_loss"] = text.detach()
        out["loss"] = loss
        return out

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """RMSE and MAE (the monitor: RMSE), and the validation reviews' text loss when they carry text."""
        out = super().validation_metrics(valid)
        if "review_text" in valid.target.extra and len(valid.target):
            module = self.module_
            out["text_loss"] = _validation_text_loss(
                self, valid.target, lambda i: module.to_text(module.item_factors(i))
            )
        return out

    def _words(self) -> nn.Embedding:
        return self.module_.word_embeddings

    def _item_word_queries(self, items: torch.Tensor) -> torch.Tensor:
        return self.module_.to_text(self.module_.item_factors(items))

    def _word_table(self) -> torch.Tensor:
        return self.module_.word_embeddings.weight


class TextBiasedMF(TextMF):
    r"""BiasedMF joined with the prediction of the review text (:class:`TextMF` with user and item biases).

    .. math::
        \hat r_{ui} = \mu + b_u + b_i + U_u \cdot I_i,

    the bias penalty :math:`\lambda_b (b_u^2 + b_i^2)` (``bias_l2``) added to the rating term, the text term
    :math:`\alpha\,\ell(T I_i, w)` unchanged.
    """

    name: ClassVar[str] = "textbiasedmf"
    biases: ClassVar[bool] = True
