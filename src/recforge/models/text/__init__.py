"""Review-text models (the PyTorch recommender tutorial's part 2-3): rating from the text, text + profiles,
item-to-words with negative sampling, and matrix factorisation joined with the text.

* :mod:`.rating` -- :class:`TextRating`, :class:`TextProfileRating`: review-sentiment models (they need the
  review, so they are not recommenders).
* :mod:`.words` -- :class:`TextItem`, :class:`TextMF`, :class:`TextBiasedMF`: recommenders whose item vectors
  predict their reviews' words (``most_similar_words``).
* :mod:`.common` -- vocabulary hyper-parameters and state, the negative-sampling loss, word inspection.

The text pipeline itself (tokenizer, vocabulary, token arrays, item text profiles) is :mod:`recforge.data.text`.
"""

from recforge.models.text.rating import TextProfileRating, TextRating
from recforge.models.text.words import TextBiasedMF, TextItem, TextMF

__all__ = ["TextBiasedMF", "TextItem", "TextMF", "TextProfileRating", "TextRating"]
