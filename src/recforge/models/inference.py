"""How ClassicMF and BiasedMF estimate their parameters: one strategy object per value of ``inference``.

:class:`Inference` is what a factor model delegates its training and its fold-in to; the model picks the
strategy once, from its ``inference`` hyper-parameter (:data:`recforge.models.mf.INFERENCE`), and never tests
the mode itself. Strategies are stateless (one shared instance each): everything they need comes from the model
they are given, and what they keep of the training data is stored on the model (``inference_data_``).

* :class:`MapInference` (``"map"``) -- a penalised point estimate: Adam (or sparse Adam, or lazy Adam or SGD with
  the gradient written out) on shuffled mini-batches of the ratings, early stopping, new users folded in by the
  exact ridge solve of their part of the objective (:func:`~recforge.models.foldin.solve_ridge_rows`);
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

from recforge import distributed
from recforge.data.interactions import Interactions
from recforge.models.factors import FactorModule
from recforge.models.foldin import solve_ridge_rows
from recforge.models.optim import RowMoments, adam, lazy_adam_, row_sgd_
from recforge.models.rating import event_batches
from recforge.training.callbacks import Callback
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

    def extra_callbacks(self, model: FactorMF) -> list[Callback]:
        """Callbacks of this strategy's training (e.g. optimiser state to checkpoint); default: none."""
        return []

    @abstractmethod
    def early_stopping_patience(self, model: FactorMF) -> int | None:
        """Epochs without improvement before training stops; None: never early."""

    @abstractmethod
    def fold_in(self, model: FactorMF, module: FactorModule, history: sp.csr_array) -> torch.Tensor:
        """Scores (rows x n_items) of new users given by their rating rows."""


#: optimisers whose step writes the gradient out (:meth:`FactorModule.row_gradients`) and updates rows itself
WRITTEN_OUT = ("lazy_adam", "sgd")


class MapInference(Inference):
    """The penalised point estimate (MAP): mini-batch gradient steps, early stopping, ridge fold-in.

    ``lazy_adam`` and ``sgd`` steps run without autograd or a torch optimiser: the batch's gradient rows
    (:meth:`FactorModule.row_gradients`) and the row updates of :func:`~recforge.models.optim.lazy_adam_` /
    :func:`~recforge.models.optim.row_sgd_`, which makes a step of a small batch several times cheaper (the same
    update as autograd + :class:`torch.optim.SparseAdam` / :class:`torch.optim.SGD`, checked in the tests). Lazy
    Adam's moments ride in the checkpoints (:class:`~recforge.models.optim.RowMoments`). With several processes
    (``torchrun``) ``sgd`` keeps the autograd step, whose gradients DistributedDataParallel averages;
    ``lazy_adam`` runs in one process.
    """

    def prepare(self, model: FactorMF, train: Interactions) -> Any:
        """Whether the steps write their gradient out (``{"written": bool}``), and the lazy-Adam moments."""
        written = model.optimizer in WRITTEN_OUT and not (model.optimizer == "sgd" and distributed.world().parallel)
        return {"written": written, "moments": RowMoments() if model.optimizer == "lazy_adam" else None}

    def extra_callbacks(self, model: FactorMF) -> list[Callback]:
        moments = model.inference_data_["moments"]
        return [moments] if moments is not None else []

    @staticmethod
    def _written(model: FactorMF) -> bool:
        data = getattr(model, "inference_data_", None)
        return bool(data["written"]) if data is not None else model.optimizer in WRITTEN_OUT

    def build_module(self, model: FactorMF, n_users: int, n_items: int, mean: float) -> FactorModule:
        return FactorModule(
            n_users,
            n_items,
            model.embedding_dim,
            biases=model.biases,
            mean=mean,
            init_std=model.init_std,
            sparse=model.optimizer in ("sparse_adam", "sgd") and not self._written(model),
        )

    def configure_optimizers(self, model: FactorMF, module: FactorModule) -> Sequence[torch.optim.Optimizer]:
        """``adam``: Adam on dense gradients; ``sparse_adam``: lazy Adam on sparse gradients (only the batch's rows
        are updated); ``sgd``: plain SGD on sparse gradients. The L2 penalty is part of the loss. None for the
        steps that write their gradient out (``lazy_adam``, ``sgd`` in one process)."""
        if self._written(model):
            return []
        if model.optimizer == "sparse_adam":
            return [torch.optim.SparseAdam(list(module.parameters()), lr=model.learning_rate)]
        if model.optimizer == "sgd":
            return [torch.optim.SGD(module.parameters(), lr=model.learning_rate)]
        return [adam(module.parameters(), model.learning_rate)]

    def batches(self, model: FactorMF, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        return event_batches(model.events_, rng, device)

    def training_step(self, model: FactorMF, module: FactorModule, batch: Any, ctx: StepContext) -> Losses:
        users, items, ratings = batch
        if self._written(model):
            return self._written_step(model, module, users, items, ratings, ctx.global_step + 1)
        loss, mse = module.loss(users, items, ratings, model.l2, model.bias_l2)
        return {"loss": loss, "mse": mse}

    @staticmethod
    def _written_step(
        model: FactorMF,
        module: FactorModule,
        users: torch.Tensor,
        items: torch.Tensor,
        ratings: torch.Tensor,
        step: int,
    ) -> Losses:
        """One step without autograd: the batch's gradient rows, then lazy Adam (global step ``step``) or SGD on
        those rows only."""
        losses, grads = module.row_gradients(users, items, ratings, model.l2, model.bias_l2)
        lr = model.learning_rate
        if model.optimizer == "sgd":
            for _, param, rows, grad in grads:
                row_sgd_(param, rows, grad, lr)
        else:
            moments = model.inference_data_["moments"].moments
            for name, param, rows, grad in grads:
                lazy_adam_(param, moments, rows, grad, step, lr, key=name)
        return losses

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
