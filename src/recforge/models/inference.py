"""How ClassicMF and BiasedMF estimate their parameters: one strategy object per value of ``inference``.

:class:`Inference` is what a factor model delegates its training and its fold-in to; the model picks the
strategy once, from its ``inference`` hyper-parameter (:data:`recforge.models.mf.INFERENCE`), and never tests
the mode itself. Strategies are stateless (one shared instance each): everything they need comes from the model
they are given, and what they keep of the training data is stored on the model (``inference_data_``).

* :class:`MapInference` (``"map"``) -- a penalised point estimate: Adam (or sparse Adam, or SGD) on shuffled
  mini-batches of the ratings, early stopping, new users folded in by the exact ridge solve of their part of
  the objective (:func:`~recforge.models.foldin.solve_ridge_rows`);
* :class:`~recforge.models.gibbs.GibbsInference` (``"gibbs"``) -- Bayesian posterior sampling, one Gibbs sweep
  per epoch (:mod:`recforge.models.gibbs`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models.factors import FactorModule
from recforge.models.foldin import solve_ridge_rows
from recforge.models.optim import adam
from recforge.models.rating import event_batches
from recforge.training.trainer import Losses, StepContext

if TYPE_CHECKING:
    from recforge.models.mf import FactorMF

__all__ = ["Inference", "MapInference"]


class Inference(ABC):
    """The training and fold-in of a factor model (:class:`~recforge.models.mf.FactorMF`) that depend on how its
    parameters are estimated. Each method gets the model, whose hyper-parameters and fitted sizes it reads."""

    def prepare(self, model: FactorMF, train: Interactions) -> Any:
        """Check the set-up and return what training needs beyond the model's rating events (kept on the model as
        ``inference_data_`` until training ends); default: nothing."""
        return None

    @abstractmethod
    def build_module(self, model: FactorMF, n_users: int, n_items: int, mean: float) -> FactorModule:
        """The module, :math:`\\mu` started at ``mean``."""

    @abstractmethod
    def configure_optimizers(self, model: FactorMF, module: FactorModule) -> Sequence[torch.optim.Optimizer]:
        """The optimisers; none when the steps update the module themselves."""

    @abstractmethod
    def batches(self, model: FactorMF, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        """One epoch of batches."""

    @abstractmethod
    def training_step(self, model: FactorMF, module: FactorModule, batch: Any, ctx: StepContext) -> Losses:
        """One step: a loss to minimise, or (no optimiser) the figures of an update made in place."""

    @abstractmethod
    def early_stopping_patience(self, model: FactorMF) -> int | None:
        """Epochs without improvement before training stops; None: never early."""

    @abstractmethod
    def fold_in(self, model: FactorMF, module: FactorModule, history: sp.csr_array) -> torch.Tensor:
        """Scores (rows x n_items) of new users given by their rating rows."""


class MapInference(Inference):
    """The penalised point estimate (MAP): mini-batch gradient steps, early stopping, ridge fold-in."""

    def build_module(self, model: FactorMF, n_users: int, n_items: int, mean: float) -> FactorModule:
        return FactorModule(
            n_users,
            n_items,
            model.embedding_dim,
            biases=model.biases,
            mean=mean,
            init_std=model.init_std,
            sparse=model.optimizer in ("sparse_adam", "sgd"),
        )

    def configure_optimizers(self, model: FactorMF, module: FactorModule) -> Sequence[torch.optim.Optimizer]:
        """``adam``: Adam on dense gradients; ``sparse_adam``: lazy Adam on sparse gradients (only the batch's rows
        are updated); ``sgd``: plain SGD on sparse gradients. The L2 penalty is part of the loss."""
        if model.optimizer == "sparse_adam":
            return [torch.optim.SparseAdam(list(module.parameters()), lr=model.learning_rate)]
        if model.optimizer == "sgd":
            return [torch.optim.SGD(module.parameters(), lr=model.learning_rate)]
        return [adam(module.parameters(), model.learning_rate)]

    def batches(self, model: FactorMF, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        return event_batches(model.events_, rng, device)

    def training_step(self, model: FactorMF, module: FactorModule, batch: Any, ctx: StepContext) -> Losses:
        users, items, ratings = batch
        loss, mse = module.loss(users, items, ratings, model.l2, model.bias_l2)
        return {"loss": loss, "mse": mse}

    def early_stopping_patience(self, model: FactorMF) -> int | None:
        return model.patience

    def fold_in(self, model: FactorMF, module: FactorModule, history: sp.csr_array) -> torch.Tensor:
        """The user's part of the training objective, solved exactly for the vector (and bias): per-event L2, so
        the penalty is weighted by the user's number of ratings."""
        device = model.device_
        item_f = module.item_factors.weight
        base = module.item_offset()
        features, reg = item_f, torch.full((model.embedding_dim,), float(model.l2), device=device)
        if module.biases:
            features = torch.cat([item_f, torch.ones((len(item_f), 1), device=device)], dim=1)
            reg = torch.cat([reg, torch.tensor([max(float(model.bias_l2), 1e-8)], device=device)])
        reg = reg.clamp_min(1e-8)  # keeps a row without ratings solvable (x = 0)
        x = solve_ridge_rows(history, features, base, reg, count_weighted=True)
        return x @ features.T + base[None, :]
