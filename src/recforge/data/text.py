r"""Review text as model input: tokenizer, vocabulary, CSR-like token arrays, batches and word sampling (no torch).

The pieces of the review-text models of :mod:`recforge.models.text` (the PyTorch recommender tutorial's part 2):

* :func:`tokenize` -- lower-case word tokens (``"words"``, default) or the tutorial's ``t.split(" ")``
  (``"whitespace"``); a whole column at once (pandas string kernels), never a Python loop per token.
* :class:`Vocabulary` -- built on **training text only** with the tutorial's pruning: count the words, skip the
  ``skip_most_common`` most common, keep the next ``max_words`` (ties in first-seen order, as
  ``collections.Counter.most_common``); index 0 is padding, 1 the unknown word, words start at 2. Saved as JSON.
* :class:`TokenArrays` -- every review tokenised once, as one flat ``tokens`` array and ``indptr`` offsets (CSR
  rows); batches are cut from them with numpy: :meth:`~TokenArrays.padded` (rows x longest, 0-padded),
  :meth:`~TokenArrays.bag` (flat tokens + offsets, what ``torch.nn.EmbeddingBag`` takes) and
  :meth:`~TokenArrays.sample` (a fixed number of words per review, drawn without replacement: the tutorial's
  ``shuffle(rev_words)[:max_len]`` for the negative-sampling objective).
* :func:`item_text_profiles` -- an item x word matrix (counts or tf-idf) from the training reviews of each item:
  text as side information, with no word of a validation or test review; :func:`item_text_embeddings` reduces
  it to dense item vectors (truncated SVD) and :func:`write_item_embeddings` writes them for
  :class:`~recforge.models.ncf.HybridNeuMF` (``item_embeddings=...npz``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "PAD",
    "REVIEW_TEXT",
    "UNKNOWN",
    "TokenArrays",
    "Tokenizer",
    "Vocabulary",
    "item_text_embeddings",
    "item_text_profiles",
    "review_texts",
    "tokenize",
    "write_item_embeddings",
]

#: the per-event column (``Interactions.extra``) that holds review texts
REVIEW_TEXT = "review_text"
#: index of padding (and of the empty bag position)
PAD = 0
#: index of every word outside the vocabulary
UNKNOWN = 1

Tokenizer = Literal["words", "whitespace"]
TOKENIZERS: tuple[str, ...] = ("words", "whitespace")

#: a word token of the default tokenizer: letters and digits, with inner apostrophes ("don't", "80's")
_WORD = r"[^\W_]+(?:'[^\W_]+)*"


def _texts(texts: Iterable[Any]) -> pd.Series:
    """Texts as a string Series; None/NaN (a review without text) become ""."""
    if not isinstance(texts, pd.Series):
        texts = pd.Series(texts if isinstance(texts, np.ndarray) else list(texts), dtype=object)
    return texts.reset_index(drop=True).fillna("").astype(str)


def tokenize(texts: Iterable[Any], method: Tokenizer = "words") -> list[list[str]]:
    """Token lists of ``texts``: ``"words"`` -- lower-case runs of letters/digits (inner apostrophes kept);
    ``"whitespace"`` -- the tutorial's ``text.split(" ")`` as written (case kept, empty strings between double
    spaces kept). Missing texts give no tokens."""
    return _token_series(_texts(texts), method).tolist()


def _token_series(series: pd.Series, method: str) -> pd.Series:
    if method == "words":
        return series.str.lower().str.findall(_WORD)
    if method == "whitespace":
        return series.str.split(" ", regex=False)
    raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}, got {method!r}")


def _flat_tokens(texts: Iterable[Any], method: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat token strings, indptr) of ``texts``: the CSR layout of the tokenised column."""
    lists = _token_series(_texts(texts), method)
    lengths = lists.str.len().fillna(0).to_numpy(dtype=np.int64)
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat = lists.explode().dropna().to_numpy(dtype=object) if indptr[-1] else np.empty(0, dtype=object)
    return flat, indptr


def review_texts(data: Any, column: str = REVIEW_TEXT) -> np.ndarray:
    """The review texts of an :class:`~recforge.data.interactions.Interactions` (its ``extra[column]``), with a
    clear error when the events carry none (e.g. a data set without texts, or a split made without them)."""
    extra = getattr(data, "extra", {})
    if column not in extra:
        have = ", ".join(sorted(extra)) or "none"
        raise ValueError(
            f"the events have no {column!r} column (per-event columns: {have}); read reviews with their text "
            "(read_amazon_reviews) and index them with Interactions.from_frame(..., extra_cols=('review_text',))"
        )
    return np.asarray(extra[column], dtype=object)


# ====================================================================== token arrays
@dataclass(frozen=True)
class TokenArrays:
    """Tokenised reviews as CSR rows: review ``r`` is ``tokens[indptr[r]:indptr[r + 1]]`` (vocabulary indices)."""

    indptr: np.ndarray  # int64, len = n_reviews + 1
    tokens: np.ndarray  # int64 vocabulary indices

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) < 1 or self.indptr[0] != 0 or self.indptr[-1] != len(self.tokens):
            raise ValueError("TokenArrays: indptr must start at 0 and end at len(tokens)")

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per review."""
        return np.diff(self.indptr)

    def take(self, rows: np.ndarray) -> TokenArrays:
        """The reviews ``rows`` (in that order) as new token arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        return TokenArrays(indptr, self.tokens[self._positions(rows, lengths, indptr)])

    def _positions(self, rows: np.ndarray, lengths: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        """Positions in ``tokens`` of the tokens of ``rows``, concatenated (vectorised gather of CSR rows)."""
        total = int(indptr[-1])
        within = np.arange(total, dtype=np.int64) - np.repeat(indptr[:-1], lengths)
        return np.repeat(self.indptr[rows], lengths) + within

    def bag(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(flat tokens, offsets)`` of ``rows`` (all when None): the input of ``torch.nn.EmbeddingBag``.
        An empty review is an empty bag (its offset equals the next one)."""
        part = self if rows is None else self.take(rows)
        return part.tokens, part.indptr[:-1].copy()

    def padded(self, rows: np.ndarray | None = None, max_len: int | None = None) -> np.ndarray:
        """``rows`` (all when None) as a rows x L int64 matrix, 0-padded (the tutorial's collate); L is the longest
        review of the batch, cut at ``max_len`` when given (the first ``max_len`` tokens kept)."""
        part = self if rows is None else self.take(rows)
        lengths = part.lengths
        width = int(lengths.max()) if len(lengths) else 0
        if max_len is not None:
            width = min(width, int(max_len))
        out = np.zeros((len(part), max(width, 0)), dtype=np.int64)
        within = np.arange(len(part.tokens), dtype=np.int64) - np.repeat(part.indptr[:-1], lengths)
        keep = within < width
        row = np.repeat(np.arange(len(part), dtype=np.int64), lengths)
        out[row[keep], within[keep]] = part.tokens[keep]
        return out

    def sample(self, rows: np.ndarray, n: int, rng: np.random.Generator, *, skip_unknown: bool = True) -> np.ndarray:
        """``n`` words of each review of ``rows`` drawn without replacement (rows x n int64; 0-padded where a
        review has fewer): the tutorial's ``shuffle(words)[:n]``, done for the whole batch with one sort.

        ``skip_unknown`` leaves out the unknown-word index (1), so that what is "predicted" is always a word;
        the tutorial keeps it.
        """
        if n < 1:
            raise ValueError(f"n (words per review) must be >= 1, got {n}")
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        tokens = self.tokens[self._positions(rows, lengths, indptr)]
        row = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        if skip_unknown:
            keep = tokens != UNKNOWN
            tokens, row = tokens[keep], row[keep]
        order = np.argsort(row + rng.random(len(row)), kind="stable")  # grouped by row, random within a row
        tokens, row = tokens[order], row[order]
        counts = np.bincount(row, minlength=len(rows))
        starts = np.cumsum(counts) - counts
        rank = np.arange(len(row), dtype=np.int64) - starts[row]
        keep = rank < n
        out = np.zeros((len(rows), n), dtype=np.int64)
        out[row[keep], rank[keep]] = tokens[keep]
        return out


# ====================================================================== vocabulary
class Vocabulary:
    """Words <-> indices: 0 = padding, 1 = unknown, the kept words from 2 on (most common first).

    Build it with :meth:`build` on the training texts only; :meth:`encode` turns any texts into
    :class:`TokenArrays` (words outside the vocabulary -> 1). ``to_json``/``from_json`` and ``save``/``load``
    keep it as JSON beside a model.
    """

    def __init__(self, words: Sequence[str], *, tokenizer: Tokenizer = "words", counts: Sequence[int] | None = None):
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}, got {tokenizer!r}")
        self.words = [str(w) for w in words]
        self.tokenizer: Tokenizer = tokenizer
        self.counts = None if counts is None else [int(c) for c in counts]
        self._index = pd.Index(self.words)
        if not self._index.is_unique:
            dup = self._index[self._index.duplicated()][:3].tolist()
            raise ValueError(f"Vocabulary: repeated words {dup}")

    @classmethod
    def build(
        cls,
        texts: Iterable[Any],
        *,
        max_words: int = 10_000,
        skip_most_common: int = 0,
        min_count: int = 1,
        tokenizer: Tokenizer = "words",
    ) -> Vocabulary:
        """Count the words of ``texts`` (the **training** reviews), drop the ``skip_most_common`` most common
        (the tutorial skips 1,000 for the text-prediction models: stop words), keep the next ``max_words`` that
        occur at least ``min_count`` times. Ties are ordered by first occurrence (``Counter.most_common``)."""
        for name, value, low in (("max_words", max_words, 1), ("skip_most_common", skip_most_common, 0)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        flat, _ = _flat_tokens(texts, tokenizer)
        if len(flat) == 0:
            return cls([], tokenizer=tokenizer, counts=[])
        counted = pd.Series(flat, dtype=object).value_counts(sort=False)  # hashed; in first-occurrence order
        uniques, counts = counted.index.to_numpy(dtype=object), counted.to_numpy(dtype=np.int64)
        order = np.argsort(-counts, kind="stable")  # most common first, ties by first occurrence
        order = order[skip_most_common : skip_most_common + max_words]
        order = order[counts[order] >= min_count]
        return cls([str(w) for w in uniques[order]], tokenizer=tokenizer, counts=counts[order].tolist())

    def __len__(self) -> int:
        """Size of the index space: the words plus padding and unknown."""
        return len(self.words) + 2

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words and self.tokenizer == other.tokenizer

    def __repr__(self) -> str:
        return f"Vocabulary({len(self.words)} words + pad/unknown, tokenizer={self.tokenizer!r})"

    def index(self, words: Sequence[str]) -> np.ndarray:
        """Indices of ``words`` (1 for unknown ones)."""
        values = (
            words if isinstance(words, np.ndarray) and words.dtype == object else np.asarray(list(words), dtype=object)
        )
        pos = self._index.get_indexer(pd.Index(values, dtype=object, copy=False))
        return np.where(pos >= 0, pos + 2, UNKNOWN).astype(np.int64)

    def word(self, indices: Iterable[int]) -> list[str]:
        """The words of ``indices`` ("<pad>" for 0, "<unk>" for 1)."""
        table = ["<pad>", "<unk>", *self.words]
        return [table[int(i)] for i in indices]

    def encode(self, texts: Iterable[Any]) -> TokenArrays:
        """Tokenise ``texts`` with the vocabulary's tokenizer and map the tokens to indices (unknown -> 1)."""
        flat, indptr = _flat_tokens(texts, self.tokenizer)
        tokens = self.index(flat) if len(flat) else np.empty(0, dtype=np.int64)
        return TokenArrays(indptr, tokens)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tokenizer": self.tokenizer, "words": self.words}
        if self.counts is not None:
            out["counts"] = self.counts
        return out

    @classmethod
    def from_json(cls, tree: Any) -> Vocabulary:
        if not isinstance(tree, dict) or not isinstance(tree.get("words"), list):
            raise ValueError("a vocabulary must be a JSON object with a list of 'words'")
        return cls(tree["words"], tokenizer=tree.get("tokenizer", "words"), counts=tree.get("counts"))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON (to a temporary file first, then renamed into place)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_json(), fh, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON vocabulary ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


# ====================================================================== item profiles
def item_text_profiles(
    item_idx: np.ndarray,
    tokens: TokenArrays,
    n_items: int,
    vocabulary_size: int,
    *,
    weighting: Literal["count", "tfidf"] = "tfidf",
    normalize: bool = True,
) -> sp.csr_array:
    r"""Items x words profile of the reviews ``tokens`` (one per event, the item of event ``e`` is ``item_idx[e]``).

    ``count``: :math:`c_{iw}` = occurrences of word ``w`` in item ``i``'s reviews; ``tfidf``:
    :math:`c_{iw} \log\frac{1 + n}{1 + n_w} + c_{iw}` with :math:`n` items and :math:`n_w` items using ``w``
    (smoothed idf, as scikit-learn). Padding and unknown columns are zero. ``normalize``: rows to unit L2 norm.
    Pass the **training** events only: a word of a validation or test review then never reaches a profile.
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    if len(item_idx) != len(tokens):
        raise ValueError(f"{len(item_idx)} item indices for {len(tokens)} reviews")
    rows = np.repeat(item_idx, tokens.lengths)
    keep = tokens.tokens > UNKNOWN
    data = np.ones(int(keep.sum()), dtype=np.float32)
    m = sp.csr_array((data, (rows[keep], tokens.tokens[keep])), shape=(n_items, vocabulary_size), dtype=np.float32)
    m.sum_duplicates()
    if weighting == "tfidf":
        df = np.bincount(m.indices, minlength=vocabulary_size)
        idf = (np.log((1.0 + n_items) / (1.0 + df)) + 1.0).astype(np.float32)
        m = sp.csr_array((m.data * idf[m.indices], m.indices, m.indptr), shape=m.shape)
    elif weighting != "count":
        raise ValueError(f"weighting must be 'count' or 'tfidf', got {weighting!r}")
    if normalize:
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        scale = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        m = sp.csr_array((m.data * np.repeat(scale, np.diff(m.indptr)), m.indices, m.indptr), shape=m.shape)
    return m


def item_text_embeddings(
    train: Any,
    dim: int = 32,
    *,
    max_words: int = 10_000,
    skip_most_common: int = 0,
    tokenizer: Tokenizer = "words",
    weighting: Literal["count", "tfidf"] = "tfidf",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, Vocabulary]:
    r"""Dense item text profiles from the **training** reviews: ``(table n_items x dim float32, known bool,
    vocabulary)``, the pretrained item embeddings of :class:`~recforge.models.ncf.HybridNeuMF` (write them with
    :func:`write_item_embeddings`) or any model's item side input.

    The items x words matrix :math:`X` of :func:`item_text_profiles` (tf-idf rows of unit norm, vocabulary built on
    ``train``'s reviews alone) is reduced by a truncated SVD, :math:`X \approx U_d S_d V_d^\top`, and item ``i``
    gets :math:`U_d[i] S_d` (its coordinates on the ``dim`` main word directions; scipy's ``svds`` with a seeded
    start). Items without a training review get a zero row and ``known = False``. A word that occurs only in
    validation or test reviews reaches neither the vocabulary nor the table.
    """
    from scipy.sparse.linalg import svds

    texts = review_texts(train)
    vocab = Vocabulary.build(texts, max_words=max_words, skip_most_common=skip_most_common, tokenizer=tokenizer)
    profiles = item_text_profiles(train.item_idx, vocab.encode(texts), train.n_items, len(vocab), weighting=weighting)
    known = np.diff(profiles.indptr) > 0
    rank = min(dim, min(profiles.shape) - 1)
    if rank < 1:
        raise ValueError(f"too few items ({profiles.shape[0]}) or words ({len(vocab.words)}) for text embeddings")
    v0 = np.random.default_rng(seed).standard_normal(min(profiles.shape))
    u, s, _ = svds(profiles.astype(np.float64), k=rank, v0=v0)
    order = np.argsort(-s)
    table = np.zeros((train.n_items, dim), dtype=np.float32)
    table[:, :rank] = (u[:, order] * s[order]).astype(np.float32)
    table[~known] = 0.0
    return table, known, vocab


def write_item_embeddings(path: str | Path, items: Any, table: np.ndarray, known: np.ndarray | None = None) -> Path:
    """Write item embeddings as an ``.npz`` (``ids``, ``embeddings``) that
    :func:`~recforge.data.embeddings.read_item_embeddings` reads; only ``known`` rows (all when None) are written.
    Written to a temporary file, then renamed."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: item embeddings are written as .npz")
    keep = np.ones(len(table), dtype=bool) if known is None else np.asarray(known, dtype=bool)
    ids = np.asarray(items.ids)[keep]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, ids=ids if ids.dtype.kind != "O" else ids.astype(str), embeddings=table[keep])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
