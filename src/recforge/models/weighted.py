r"""Confidence weighting of a model's input as hyper-parameters, shared by the implicit-feedback models that fit
weighted values (iALS, EASE, ADMM-SLIM, ItemKNN).

The schemes are :mod:`recforge.data.weighting`'s (``none``, ``binary``, ``linear``, ``log``, ``bm25``, ``tfidf``);
a model fits the scheme's statistics on its training matrix once (:meth:`WeightingParams.fit_weighting`) and
weights every history row it scores with them (:meth:`WeightingParams.weigh`), so a new user's row is weighted as
a training row was. After :meth:`~recforge.models.base.BaseRecommender.load` the statistics are computed again from
the saved training matrix: nothing more is stored.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import scipy.sparse as sp

from recforge.data.weighting import RowWeighting, Weighting, fit_weighting
from recforge.models.params import NonNegativeFloat, PositiveFloat, hyperparameters

__all__ = ["UnitFloat", "WeightingParams"]

UnitFloat = Annotated[float, pydantic.Field(ge=0, le=1, allow_inf_nan=False)]


@hyperparameters
class WeightingParams:
    r"""``weighting``: how the training values (play counts, ratings) become the values the model fits, and how
    every scored history row is weighted: ``"none"`` (the values as given: 0/1 after ``data.binarize``),
    ``"binary"``, ``"linear"`` :math:`1 + \alpha r`, ``"log"`` :math:`1 + \alpha \log(1 + r / \varepsilon)`,
    ``"bm25"`` (``bm25_k1``, ``bm25_b``; the items as documents, as the ``implicit`` package's Last.fm example) or
    ``"tfidf"`` (:mod:`recforge.data.weighting`)."""

    weighting: Weighting = "none"
    alpha: PositiveFloat = 1.0
    eps: PositiveFloat = 1.0
    bm25_k1: NonNegativeFloat = 100.0
    bm25_b: UnitFloat = 0.8

    def _weighting_params(self) -> dict[str, Any]:
        return {
            "none": {},
            "binary": {},
            "linear": {"alpha": self.alpha},
            "log": {"alpha": self.alpha, "eps": self.eps},
            "bm25": {"k1": self.bm25_k1, "b": self.bm25_b},
            "tfidf": {},
        }[self.weighting]

    def fit_weighting(self, train: sp.csr_array) -> sp.csr_array:
        """Fit the scheme's statistics on the training matrix; the weighted training matrix."""
        fitted = self.__dict__["row_weighting_"] = fit_weighting(train, self.weighting, **self._weighting_params())
        return fitted.transform(train)

    def row_weighting(self) -> RowWeighting:
        """The ``weighting`` with the statistics of the training matrix: how any history row is weighted."""
        fitted = self.__dict__.get("row_weighting_")
        if fitted is None:  # after load: from the saved training matrix
            history = self.__dict__.get("history_")
            if history is None:
                raise AttributeError("row_weighting() needs a fitted model")
            fitted = self.__dict__["row_weighting_"] = fit_weighting(
                history, self.weighting, **self._weighting_params()
            )
        return fitted

    def weigh(self, rows: sp.csr_array) -> sp.csr_array:
        """History rows weighted as the training rows were (the rows themselves with ``weighting="none"``)."""
        return rows if self.weighting == "none" else self.row_weighting().transform(rows)
