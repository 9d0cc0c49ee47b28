r"""Confidence weighting of implicit feedback: play counts or ratings turned into the weights a model fits.

Every scheme maps a users x items CSR matrix of non-negative values :math:`r_{ui}` (counts, ratings, durations) to
one of the same sparsity pattern (stored entries keep their place, nothing is added or removed):

==========  ==============================================================================================
``none``    :math:`c_{ui} = r_{ui}`, the values as given
``binary``  :math:`c_{ui} = 1`
``linear``  :math:`c_{ui} = 1 + \alpha r_{ui}`, the confidence of Hu, Koren & Volinsky (ICDM 2008, eq. 2;
            :math:`\alpha = 40` in their experiments)
``log``     :math:`c_{ui} = 1 + \alpha \log(1 + r_{ui} / \varepsilon)`, the same paper's alternative for values
            spread over orders of magnitude (play counts, watching time); note the ``1 +``: the paper's
            confidence is never below 1, whatever :math:`\alpha`
``bm25``    Okapi BM25, as ``bm25_weight(X, K1, B)`` of the ``implicit`` package (see below)
``tfidf``   :math:`\sqrt{r} \cdot \mathrm{idf}`, as ``tfidf_weight(X)`` of the ``implicit`` package
==========  ==============================================================================================

**BM25 and tf-idf** treat one side as the *documents* and the other as the *terms*. ``implicit``'s functions weight
the rows of the matrix they are given (rows = documents, columns = terms); its Last.fm example applies them to the
items x users play counts, so the documents are the items (``documents="items"``, the default here). With
:math:`N` documents, the document frequency :math:`n_t` of a term (the number of stored entries of its column in
the documents x terms matrix), :math:`\mathrm{idf}_t = \log N - \log(1 + n_t)`, the length of a document
:math:`L_d = \sum_t r_{dt}` and :math:`\bar L` its mean over the documents,

.. math::
    \mathrm{bm25}(r_{dt}) = \frac{r_{dt} (K_1 + 1)}{K_1 \bigl((1 - B) + B L_d / \bar L\bigr) + r_{dt}}\,
    \mathrm{idf}_t, \qquad \mathrm{tfidf}(r_{dt}) = \sqrt{r_{dt}}\, \mathrm{idf}_t .

``documents="items"``: the terms are the users (:math:`N` = number of items, :math:`n_t` = the user's number of
items), the document lengths the items' total values. ``documents="users"``: the users are the documents.

**New rows.** :func:`fit_weighting` keeps the statistics a scheme takes from the training matrix (the items' lengths
and their mean, or the items' idf and the mean user length), so that the rows of new users (fold-in) are weighted
as the training rows were: ``fit_weighting(train, ...).transform(train)`` equals ``weight_matrix(train, ...)``, and
a new row equal to a training row gets that row's weights. :func:`weight_matrix` is the one-call form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import scipy.sparse as sp

__all__ = ["DEFAULTS", "Documents", "RowWeighting", "Weighting", "fit_weighting", "weight_matrix"]

#: A confidence-weighting scheme (a hyper-parameter of the implicit-feedback models that weight their input).
Weighting = Literal["none", "binary", "linear", "log", "bm25", "tfidf"]
#: Which side BM25 / tf-idf treat as the documents (the other side being the terms).
Documents = Literal["items", "users"]

#: Default parameters of each scheme (``alpha``, ``eps``: linear and log; ``k1``, ``b``: BM25; ``documents``: BM25
#: and tf-idf; values of ``implicit``'s ``bm25_weight`` for ``k1`` and ``b``).
DEFAULTS: dict[str, dict[str, Any]] = {
    "none": {},
    "binary": {},
    "linear": {"alpha": 1.0},
    "log": {"alpha": 1.0, "eps": 1.0},
    "bm25": {"k1": 100.0, "b": 0.8, "documents": "items"},
    "tfidf": {"documents": "items"},
}


def _check_params(scheme: str, params: dict[str, Any]) -> dict[str, Any]:
    if scheme not in DEFAULTS:
        raise ValueError(f"unknown weighting {scheme!r}; known: {', '.join(get_args(Weighting))}")
    known = DEFAULTS[scheme]
    unknown = sorted(set(params) - set(known))
    if unknown:
        names = ", ".join(known) or "none"
        raise ValueError(f"weighting {scheme!r} takes no parameter {', '.join(unknown)}; its parameters: {names}")
    out = {**known, **params}
    for name in ("alpha", "eps"):
        if name in out and not (np.isfinite(out[name]) and out[name] > 0):
            raise ValueError(f"weighting {scheme!r}: {name} must be a finite number > 0, got {out[name]!r}")
    if "k1" in out and not (np.isfinite(out["k1"]) and out["k1"] >= 0):
        raise ValueError(f"weighting 'bm25': k1 must be a finite number >= 0, got {out['k1']!r}")
    if "b" in out and not 0.0 <= out["b"] <= 1.0:
        raise ValueError(f"weighting 'bm25': b must be in [0, 1], got {out['b']!r}")
    if "documents" in out and out["documents"] not in get_args(Documents):
        raise ValueError(f"weighting {scheme!r}: documents must be 'items' or 'users', got {out['documents']!r}")
    return out


def _as_csr(matrix: Any, what: str) -> sp.csr_array:
    csr = sp.csr_array(matrix, dtype=np.float64, copy=True)
    csr.sum_duplicates()
    if csr.nnz and not np.isfinite(csr.data).all():
        raise ValueError(f"{what}: values must be finite")
    if csr.nnz and csr.data.min() < 0:
        raise ValueError(f"{what}: values must be >= 0 (counts, ratings, durations), found {csr.data.min()}")
    return csr


@dataclass(frozen=True)
class RowWeighting:
    """A weighting scheme with the statistics it took from a training matrix; :meth:`transform` weights any rows
    (training users or new ones) over the same items. Build it with :func:`fit_weighting`."""

    scheme: Weighting
    params: dict[str, Any]
    n_items: int
    #: per item: the BM25 length norm (documents = items) or the idf (documents = users); None when unused
    item_stats: np.ndarray | None = field(default=None, repr=False)
    #: the mean training row length (BM25, documents = users); None when unused
    mean_row_length: float | None = None

    def transform(self, rows: Any) -> sp.csr_array:
        """The weighted rows (float32 CSR of the same pattern, duplicates summed) of a rows x ``n_items`` matrix."""
        csr = _as_csr(rows, "weight_matrix")
        if csr.shape[1] != self.n_items:
            raise ValueError(f"the rows have {csr.shape[1]} item columns, the weighting was fitted on {self.n_items}")
        r = csr.data
        p = self.params
        scheme = self.scheme
        if scheme == "none":
            data = r
        elif scheme == "binary":
            data = np.ones_like(r)
        elif scheme == "linear":
            data = 1.0 + p["alpha"] * r
        elif scheme == "log":
            data = 1.0 + p["alpha"] * np.log1p(r / p["eps"])
        else:
            row_of = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
            if p["documents"] == "items":  # terms = users: idf of each row from its own number of items
                idf = (np.log(self.n_items) - np.log1p(np.diff(csr.indptr)))[row_of]
            else:  # terms = items: idf from the training users
                assert self.item_stats is not None
                idf = self.item_stats[csr.indices]
            if scheme == "tfidf":
                data = np.sqrt(r) * idf
            else:
                k1 = p["k1"]
                if p["documents"] == "items":
                    assert self.item_stats is not None
                    norm = self.item_stats[csr.indices]
                else:
                    assert self.mean_row_length is not None
                    lengths = np.asarray(csr.sum(axis=1)).ravel()
                    mean = self.mean_row_length if self.mean_row_length > 0 else 1.0
                    norm = ((1.0 - p["b"]) + p["b"] * lengths / mean)[row_of]
                data = r * (k1 + 1.0) / (k1 * norm + r) * idf
        return sp.csr_array((data.astype(np.float32), csr.indices.copy(), csr.indptr.copy()), shape=csr.shape)


def fit_weighting(matrix: Any, scheme: Weighting, **params: Any) -> RowWeighting:
    """The weighting ``scheme`` with ``params`` (:data:`DEFAULTS` for the missing ones) and the statistics it needs
    from the users x items training ``matrix``; a clear ``ValueError`` for an unknown scheme or parameter."""
    params = _check_params(scheme, params)
    csr = _as_csr(matrix, "fit_weighting")
    n_users, n_items = csr.shape
    item_stats, mean_row_length = None, None
    documents = params.get("documents")
    if scheme == "bm25" and documents == "items":
        lengths = np.bincount(csr.indices, weights=csr.data, minlength=n_items)
        mean = lengths.mean() if n_items and lengths.mean() > 0 else 1.0
        item_stats = (1.0 - params["b"]) + params["b"] * lengths / mean
    elif scheme in ("bm25", "tfidf") and documents == "users":
        df = np.bincount(csr.indices, minlength=n_items)
        item_stats = np.log(max(n_users, 1)) - np.log1p(df)
        if scheme == "bm25":
            mean_row_length = float(csr.data.sum() / n_users) if n_users else 0.0
    return RowWeighting(scheme, params, n_items, item_stats, mean_row_length)


def weight_matrix(matrix: Any, scheme: Weighting, **params: Any) -> sp.csr_array:
    """``matrix`` (users x items, values >= 0) weighted by ``scheme`` (module doc): a float32 CSR of the same
    pattern. ``params``: ``alpha``, ``eps`` (linear, log), ``k1``, ``b`` (BM25), ``documents`` (BM25, tf-idf)."""
    return fit_weighting(matrix, scheme, **params).transform(matrix)
