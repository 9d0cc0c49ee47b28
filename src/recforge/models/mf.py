r"""Explicit-feedback matrix factorisation with a dot product, trained by the one Trainer.

* :class:`ClassicMF` -- global mean plus a dot product, :math:`\hat r_{ui} = \mu + U_u \cdot I_i`.
* :class:`BiasedMF` -- Koren, Bell, Volinsky (2009), *Matrix Factorization Techniques for Recommender
  Systems*, IEEE Computer 42(8): :math:`\hat r_{ui} = \mu + b_u + b_i + U_u \cdot I_i`.

Both are :class:`FactorMF`, a :class:`~recforge.models.rating.RatingRecommender` (rating triples as batches,
``predict``/``predict_indices``, early stopping on the validation RMSE, ``recommend_for_history`` with ratings;
ranking uses the predicted rating, unclipped, as the score). The regularised CoFi cost is
:class:`~recforge.models.cofi.CoFiMF`.

How the parameters are estimated is the ``inference`` hyper-parameter, which picks a strategy object once
(:data:`INFERENCE`; :mod:`recforge.models.inference`) that the model delegates its training and fold-in to:

* ``"map"`` (:class:`~recforge.models.inference.MapInference`) -- a penalised point estimate by mini-batch
  Adam (or sparse Adam, or SGD);
* ``"gibbs"`` (:class:`~recforge.models.gibbs.GibbsInference`) -- Gibbs sampling of the Bayesian version
  (:mod:`recforge.models.gibbs`; each Trainer epoch is one sweep, the prediction is the posterior mean).

A ``checkpoint_dir`` in the training options makes training resumable: an interrupted ``fit`` of the same model
on the same data continues from the last epoch (or Gibbs sweep) saved there, with the same result as an
uninterrupted one.

**New users** (``score(history, users=None)``) are folded in from their ratings (the values of the history
rows): by the exact solve of the regularised least-squares problem of the training objective for the user's own
parameters, vector and bias, against the fixed item parameters (MAP;
:func:`~recforge.models.foldin.solve_ridge_rows`), or by the user's posterior mean per kept sample (Gibbs).
Known users are scored with their learned factors, so ``folds_in_from_history`` is False.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.models.factors import FactorModule
from recforge.models.gibbs import GibbsInference
from recforge.models.inference import Inference, MapInference
from recforge.models.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from recforge.models.rating import RatingRecommender, check_ratings
from recforge.training.callbacks import Callback
from recforge.training.trainer import Losses, StepContext

__all__ = ["INFERENCE", "BiasedMF", "ClassicMF", "FactorMF"]

FactorOptimizer = Literal["adam", "sparse_adam", "sgd", "lazy_adam"]
InferenceName = Literal["map", "gibbs"]

#: The strategy of each value of the ``inference`` hyper-parameter.
INFERENCE: dict[str, Inference] = {"map": MapInference(), "gibbs": GibbsInference()}


class FactorMF(RatingRecommender):
    """Shared implementation of ClassicMF and BiasedMF: hyper-parameters, and the training, scoring and fold-in
    that the ``inference`` strategy supplies."""

    #: whether the model has user and item biases
    biases: ClassVar[bool] = True

    embedding_dim: int
    l2: float
    bias_l2: float
    optimizer: FactorOptimizer
    inference: InferenceName
    burn_in: int
    init_std: float

    def __init__(
        self,
        *,
        embedding_dim: PositiveInt = 128,
        l2: NonNegativeFloat = 0.1,
        bias_l2: NonNegativeFloat = 0.005,
        learning_rate: PositiveFloat = 0.002,
        batch_size: PositiveInt = 1024,
        max_epochs: PositiveInt = 100,
        patience: NonNegativeInt = 5,
        optimizer: FactorOptimizer = "adam",
        inference: InferenceName = "map",
        burn_in: NonNegativeInt = 50,
        init_std: PositiveFloat = 0.1,
        clip: bool = True,
        seed: int = 0,
    ):
        self._store_params(locals())

    @property
    def inference_strategy(self) -> Inference:
        """The estimation strategy of the ``inference`` hyper-parameter (:data:`INFERENCE`)."""
        return INFERENCE[self.inference]

    # ------------------------------------------------------------------ training: delegated to the strategy
    def _prepare(self, train: Interactions) -> None:
        check_ratings(train, type(self).__name__)
        super()._prepare(train)
        self.inference_data_ = self.inference_strategy.prepare(self, train)

    def _release(self) -> None:
        super()._release()
        self.__dict__.pop("inference_data_", None)

    def build_module(self) -> nn.Module:
        return self.inference_strategy.build_module(self, len(self.users_), len(self.items_), self._training_mean())

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        assert isinstance(module, FactorModule)
        return self.inference_strategy.configure_optimizers(self, module)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        return self.inference_strategy.batches(self, rng, device)

    def early_stopping_patience(self) -> int | None:
        return self.inference_strategy.early_stopping_patience(self)

    def extra_callbacks(self) -> list[Callback]:
        return [*super().extra_callbacks(), *self.inference_strategy.extra_callbacks(self)]

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        assert isinstance(module, FactorModule)
        return self.inference_strategy.training_step(self, module, batch, ctx)

    # ------------------------------------------------------------------ predictions and scores
    def _known_user_scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.module_.user_scores(users)

    def _new_user_scores(self, history: sp.csr_array) -> torch.Tensor:
        return self.inference_strategy.fold_in(self, self.module_, history)


class ClassicMF(FactorMF):
    r"""Global mean plus a dot product ("classic SVD" of the PyTorch recommender tutorial).

    .. math::
        \hat r_{ui} = \mu + U_u \cdot I_i, \qquad
        \min \frac{1}{|B|} \sum_{(u,i) \in B} \left[(r_{ui} - \hat r_{ui})^2
            + \lambda \left(\lVert U_u \rVert^2 + \lVert I_i \rVert^2\right)\right]

    over shuffled mini-batches :math:`B` of the training ratings (``optimizer``: see :class:`BiasedMF`).
    :math:`\mu` is learnable and starts at the training mean; factors start at
    :math:`\mathcal N(0, \text{init\_std}^2)`. The L2 term is per event, i.e. a user's or item's penalty grows
    with its number of ratings (as in SGD matrix factorisation); ``bias_l2`` is unused here. Early stopping on
    the validation RMSE when ``valid`` is given.

    Fold-in of a new user: :math:`\min_p \sum_i (r_i - \mu - I_i \cdot p)^2 + \lambda n_u \lVert p \rVert^2`.
    ``inference="gibbs"``: Bayesian posterior sampling of the same model (BPMF), as for :class:`BiasedMF`.
    """

    name: ClassVar[str] = "classicmf"
    biases: ClassVar[bool] = False


class BiasedMF(FactorMF):
    r"""Koren's biased matrix factorisation (Koren, Bell, Volinsky 2009, IEEE Computer 42(8), eq. 4-5).

    .. math::
        \hat r_{ui} = \mu + b_u + b_i + U_u \cdot I_i,

        \min \frac{1}{|B|} \sum_{(u,i) \in B} \left[(r_{ui} - \hat r_{ui})^2
            + \lambda \left(\lVert U_u \rVert^2 + \lVert I_i \rVert^2\right)
            + \lambda_b \left(b_u^2 + b_i^2\right)\right]

    over shuffled mini-batches :math:`B` of the training ratings (``l2`` = :math:`\lambda`, ``bias_l2`` =
    :math:`\lambda_b`). :math:`\mu` is learnable and starts at the training mean (Koren fixes it; the reference
    tutorial learns it), biases at 0, factors at :math:`\mathcal N(0, \text{init\_std}^2)`. The per-event L2 term
    makes a user's or item's penalty grow with its number of ratings, as in SGD matrix factorisation. Early
    stopping on the validation RMSE when ``valid`` is given. The defaults were tuned on MovieLens 100K (official
    folds u1-u5, see ``benchmarks/bench_explicit.py``).

    ``optimizer``: ``"adam"`` (default; dense gradients, fused kernel), ``"sparse_adam"`` (lazy Adam on sparse
    gradients: a step touches only its batch's rows), ``"lazy_adam"`` (the same lazy Adam rule with the whole
    gradient written out, :meth:`~recforge.models.factors.FactorModule.row_gradients`: no autograd and no torch
    optimiser, the cheapest step for small batches -- at batch size 16 several times faster than ``adam``) or
    ``"sgd"`` (row updates with the gradient written out; the learning rate applies to the batch-mean loss, so it
    must grow with ``batch_size``). The factor part of the loss has a hand-written gradient (fewer passes over the
    batch x dim blocks); both that and the written-out steps are checked against autograd in the tests. For tens of
    millions of ratings use large batches (e.g. 65,536; ``benchmarks/bench_explicit.py`` times an epoch).

    Fold-in of a new user with ratings :math:`r_i`: :math:`\min_{p, b} \sum_i (r_i - \mu - b_i - b - I_i \cdot p)^2
    + n_u (\lambda \lVert p \rVert^2 + \lambda_b b^2)`, the user's part of the training objective.

    ``inference="gibbs"`` estimates the same model by Bayesian posterior sampling instead of a penalised point
    estimate (Salakhutdinov & Mnih 2008, BPMF, with biases; formulas in :mod:`recforge.models.gibbs`): Gaussian
    priors on the rows :math:`[b_u, p_u]` and :math:`[b_i, q_i]` with Normal-Wishart hyper-priors, a Gamma prior
    on the noise precision, :math:`\mu` fixed at the training mean. Each epoch of the Trainer is one Gibbs
    sweep; of ``max_epochs`` sweeps the first ``burn_in`` are discarded and the prediction is the posterior
    mean, the average over the kept samples of :math:`\mu + b_u + b_i + p_u \cdot q_i`. There is no penalty to
    tune and no early stopping (a ``valid`` part is logged and the best average is kept), so the whole training
    set is used; ``l2``, ``bias_l2``, ``learning_rate``, ``batch_size``, ``optimizer`` and ``patience`` are
    unused. The tables hold the kept samples side by side: memory and scoring cost grow with
    ``embedding_dim * (max_epochs - burn_in)``, so keep ``embedding_dim`` small (10 is enough on MovieLens). A
    new user is folded in per kept sample by the posterior mean of their row, and the scores averaged. On
    MovieLens 100K u1-u5 this reaches a mean RMSE of 0.896 (``embedding_dim=10``, 200 sweeps, burn-in 50)
    against 0.917 for the Adam estimate (``benchmarks/RESULTS.md``).
    """

    name: ClassVar[str] = "biasedmf"
    biases: ClassVar[bool] = True
