r"""What the review-text models share: the vocabulary hyper-parameters and state, epoch batches cut from the
tokenised reviews, the negative-sampling loss and the nearest-word inspection.

**Negative sampling** (Mikolov et al. 2013, as the PyTorch recommender tutorial uses it to "predict" a review's
words from an item vector :math:`q`): for every real word :math:`w` drawn from the review and :math:`k` words
:math:`v_1..v_k` drawn uniformly from the vocabulary,

.. math::
    \ell(q, w) = -\Big[\log\sigma\big(s \cos(q, e_w)\big) + \sum_{j=1}^{k} \log\sigma\big(-s \cos(q, e_{v_j})\big)\Big]

averaged over the real words of the batch (padding excluded); :math:`e` are the word embeddings and :math:`s`
the ``cosine_scale``: 1 in the tutorial, where the cosine only moves :math:`\sigma` between 0.27 and 0.73 and the
loss barely separates an item's words from random ones; the models' default is 5 (on Amazon Instruments the
nearest words of an item overlap its distinctive review words 0.43 against 0.34 with :math:`s = 1`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.text import PAD, UNKNOWN, TokenArrays, Tokenizer, Vocabulary, review_texts
from recforge.models.params import NonNegativeInt, PositiveInt, hyperparameters

__all__ = ["VocabularyParams", "WordInspection", "negative_sampling_loss", "sampled_words", "word_negatives"]


@hyperparameters
class VocabularyParams:
    """The vocabulary of a text model, built on the training reviews only (:meth:`Vocabulary.build`):
    ``skip_most_common`` most common words dropped, the next ``max_words`` kept, ``tokenizer`` ("words":
    lower-case word tokens; "whitespace": the tutorial's ``split(" ")``)."""

    max_words: PositiveInt = 10_000
    skip_most_common: NonNegativeInt = 0
    tokenizer: Tokenizer = "words"


class ReviewTextState:
    """Mixin: builds ``vocabulary_`` and the training ``tokens_`` in ``_prepare_text``; saves the vocabulary as
    JSON in the model's ``config.json`` (``state_info``) and restores it before the module is rebuilt."""

    max_words: int
    skip_most_common: int
    tokenizer: Tokenizer
    vocabulary_: Vocabulary
    tokens_: TokenArrays

    def _prepare_text(self, train: Any) -> None:
        texts = review_texts(train)
        self.vocabulary_ = Vocabulary.build(
            texts, max_words=self.max_words, skip_most_common=self.skip_most_common, tokenizer=self.tokenizer
        )
        if len(self.vocabulary_.words) == 0:
            raise ValueError(
                f"{type(self).__name__}: no word left in the vocabulary of the training reviews (they are empty, or "
                f"skip_most_common={self.skip_most_common} drops every word)"
            )
        self.tokens_ = self.vocabulary_.encode(texts)

    def _release_text(self) -> None:
        self.__dict__.pop("tokens_", None)

    # cooperative: the model class after this mixin in the MRO saves and loads the rest
    def _state_info(self) -> dict[str, Any]:
        return {**super()._state_info(), "vocabulary": self.vocabulary_.to_json()}  # type: ignore[misc]

    def _load_state_info(self, info: dict[str, Any]) -> None:
        super()._load_state_info(info)  # type: ignore[misc]
        self.vocabulary_ = Vocabulary.from_json(info["vocabulary"])


def sampled_words(
    tokens: TokenArrays, rows: np.ndarray, n_words: int, n_negatives: int, vocab_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(real, fake)`` words of the reviews ``rows``: ``n_words`` words of each review without replacement
    (0-padded; unknown words left out) and ``n_negatives`` uniform vocabulary words (never pad/unknown) per real
    word, rows x n_words x n_negatives."""
    real = tokens.sample(rows, n_words, rng)
    return real, word_negatives(real.shape, n_negatives, vocab_size, rng)


def word_negatives(shape: tuple[int, ...], n_negatives: int, vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform words in ``[2, vocab_size)`` (the tutorial's ``random_(2, dic_size)``), ``shape + (n_negatives,)``."""
    return rng.integers(UNKNOWN + 1, max(vocab_size, UNKNOWN + 2), size=(*shape, n_negatives), dtype=np.int64)


def negative_sampling_loss(
    query: torch.Tensor, words: nn.Embedding, real: torch.Tensor, fake: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    r"""Mean over the non-padding real words of
    :math:`-[\log\sigma(s\cos(q_b, e_{w})) + \sum_j \log\sigma(-s\cos(q_b, e_{v_j}))]` (module docstring).

    ``query`` is batch x d, ``real`` batch x n word indices (0 = padding), ``fake`` batch x n x k.
    """
    q = F.normalize(query, dim=-1)
    close = torch.einsum("bd,bnd->bn", q, F.normalize(words(real), dim=-1))
    far = torch.einsum("bd,bnkd->bnk", q, F.normalize(words(fake), dim=-1))
    per_word = F.logsigmoid(scale * close) + F.logsigmoid(-scale * far).sum(-1)
    mask = (real != PAD).to(per_word.dtype)
    return -(per_word * mask).sum() / mask.sum().clamp_min(1.0)


class WordInspection:
    """Mixin: the nearest vocabulary words of an item's text-side vector (cosine), ``most_similar_words``."""

    vocabulary_: Vocabulary
    items_: Any
    check_fitted: Any  # the model's

    def _item_word_queries(self, items: torch.Tensor) -> torch.Tensor:
        """The text-side vectors (rows x word dim) of item indices: what is compared with the word embeddings."""
        raise NotImplementedError

    def _word_table(self) -> torch.Tensor:
        raise NotImplementedError

    def most_similar_words(self, item_id: Any, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` vocabulary words closest (cosine) to the item's text vector, best first, as (word, cosine).

        Padding and the unknown word are never returned. Raises :class:`~recforge.data.ids.UnknownIdError` for an
        item the model does not know.
        """
        self.check_fitted()
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        item = self.items_.index([item_id])
        with torch.no_grad():
            table = self._word_table()
            query = self._item_word_queries(torch.as_tensor(item, device=table.device))
            cos = F.normalize(query, dim=-1) @ F.normalize(table, dim=-1).T
            cos[:, : UNKNOWN + 1] = -torch.inf
            k = min(int(k), table.shape[0] - UNKNOWN - 1)
            values, indices = torch.topk(cos[0], k)
        words = self.vocabulary_.word(indices.cpu().tolist())
        return list(zip(words, values.cpu().tolist(), strict=True))


def epoch_order(n: int, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, list[slice]]:
    """A shuffled order of ``n`` events and the slices of its consecutive batches."""
    order = rng.permutation(n)
    return order, [slice(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
