r"""The user-row autoencoders: AE, VAE, Mult-DAE and Mult-VAE, on their common base ``_RowAutoencoder``.

They read a user's whole history row :math:`x_u` (users x items CSR, values as given: the pipeline
binarises implicit data beforehand, as for EASE) and output one logit per item; the score of a row is
that output at :math:`z = \mu` (no sampling, no dropout), so it depends on the history only and new
users fold in for free. Each model's loss is in its class docstring, built from the functions of
:mod:`~recforge.models.autoencoders.losses` (which states the conventions on ``l2`` and ``beta``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.samplers import UserRows
from recforge.models.autoencoders.losses import (
    SparseRows,
    autoencoder_objective,
    bernoulli_nll,
    multinomial_nll,
    squared_error,
)
from recforge.models.autoencoders.networks import AutoencoderNet
from recforge.models.autoencoders.params import DropoutRate, HiddenDims, NonNegative, RowParams, annealing
from recforge.models.neural import TorchRecommender
from recforge.models.optim import adam
from recforge.models.params import NonNegativeInt, PositiveInt, hyperparameters
from recforge.training.callbacks import Callback
from recforge.training.trainer import Losses, StepContext


class _RowAutoencoder(RowParams, TorchRecommender):
    """The user-row autoencoders' common half: batches of rows, the loss, scoring at z = mu."""

    folds_in_from_history: ClassVar[bool] = True
    #: whether the latent code is Gaussian (a KL term, beta annealing)
    variational: ClassVar[bool] = False
    #: whether input rows are L2-normalised before the dropout (Liang et al.)
    normalize_input: ClassVar[bool] = False

    beta: float
    anneal_steps: int | None

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        """The negative log-likelihood of the target rows (per model family)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training
    def _n_conditions(self) -> int:
        return 0

    def _prepare(self, train: Interactions) -> None:
        self._sampler = UserRows(train.matrix, batch_size=self.batch_size)

    def _release(self) -> None:
        self._sampler = None

    def build_module(self) -> AutoencoderNet:
        return AutoencoderNet(
            len(self.items_),  # not n_items: it requires the module built here
            self.hidden_dims,
            variational=self.variational,
            normalize=self.normalize_input,
            dropout=self.dropout,
            n_conditions=self._n_conditions(),
        )

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam at ``learning_rate``, no weight decay: ``l2`` is a term of the loss (see ``losses``)."""
        return [adam(module, self.learning_rate)]

    def extra_callbacks(self) -> list[Callback]:
        if not self.variational:
            return []
        planned = self.max_epochs * len(self._sampler) if self.anneal_steps is None else 0
        return [annealing(self.beta, self.anneal_steps, planned)]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]:
        for _, rows in self._sampler(rng):
            yield SparseRows.from_scipy(rows, device)

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        logits, mu, logvar = module(batch, noise=True)
        return self._loss(module, logits, mu, logvar, batch, ctx)

    def _loss(
        self,
        module: nn.Module,
        logits: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor | None,
        target: SparseRows,
        ctx: StepContext,
    ) -> dict[str, torch.Tensor]:
        nll = self.reconstruction_loss(logits, target)
        beta = ctx.values.get("beta", self.beta) if logvar is not None else 0.0  # AEs have no beta
        return autoencoder_objective(module, nll, "nll", mu, logvar, beta=beta, l2=self.l2, batch_size=self.batch_size)

    # ------------------------------------------------------------------ scoring
    def _rows(self, history: sp.csr_array) -> SparseRows:
        return SparseRows.from_scipy(history, self.device_)

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Decoder logits at ``z = mu`` for the history rows (``users`` is not needed: scores fold in)."""
        history = self._check_history(history, users)
        with torch.no_grad():
            logits, _, _ = self.module_(self._rows(history), noise=False)
        return logits.float()

    def latent(self, history: sp.csr_array) -> torch.Tensor:
        """The code of each history row: ``mu`` of ``q(z | x)`` for the VAEs (the deterministic code for AE/DAE)."""
        history = self._check_history(history, None)
        with torch.no_grad():
            mu, _ = self.module_.encode(self._rows(history), noise=False)
        return mu.float()


@hyperparameters
class AE(_RowAutoencoder):
    r"""A plain (optionally denoising) autoencoder over user rows with the squared-error reconstruction loss.

    .. math:: \mathcal{L} = \frac{1}{B}\sum_u \lVert f(\tilde{x}_u) - x_u \rVert^2
              + \frac{\text{l2}}{\text{batch\_size}}\sum_W \lVert W\rVert_F^2

    ``x`` is the raw row (no normalisation), :math:`\tilde{x}` its input-dropout version, ``f`` the
    tanh network [I-hidden_dims-reversed-I] with a linear output (see :class:`AutoencoderNet`).
    """

    name: ClassVar[str] = "ae"

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return squared_error(logits, target)


@hyperparameters
class VAE(_RowAutoencoder):
    r"""Variational autoencoder (Kingma & Welling 2014) over user rows, Bernoulli likelihood, Gaussian latent.

    .. math:: \mathcal{L} = \frac{1}{B}\sum_u \Bigl(\sum_i \bigl[\log(1+e^{f_{ui}(z_u)}) - x_{ui} f_{ui}(z_u)\bigr]
              + \beta_t\, \mathrm{KL}\bigl(\mathcal{N}(\mu_u, \sigma_u^2) \,\Vert\, \mathcal{N}(0, I)\bigr)\Bigr)
              + \frac{\text{l2}}{\text{batch\_size}}\sum_W \lVert W\rVert_F^2,
              \quad z_u = \mu_u + \sigma_u \odot \epsilon

    The reconstruction is the binary cross-entropy (a Bernoulli per item, as the song VAE and rectorch's
    ``VAE``): rows are implicit 0/1 feedback. ``beta`` is 1 (the plain ELBO) unless set; with
    ``anneal_steps > 0`` it follows :math:`\beta_t = \min(\beta, t/\text{anneal\_steps})`.
    """

    name: ClassVar[str] = "vae"
    variational: ClassVar[bool] = True

    beta: NonNegative = 1.0
    anneal_steps: NonNegativeInt = 0

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return bernoulli_nll(logits, target)


@hyperparameters
class MultiDAE(_RowAutoencoder):
    r"""Mult-DAE: denoising autoencoder with a multinomial likelihood (Liang et al. 2018, WWW '18).

    .. math:: \mathcal{L} = -\frac{1}{B}\sum_u \sum_i x_{ui}\log\operatorname{softmax}\bigl(f(\tilde{x}_u)\bigr)_i
              + \frac{\text{l2}}{\text{batch\_size}}\sum_W \lVert W\rVert_F^2,
              \qquad \tilde{x}_u = \operatorname{dropout}_p\bigl(x_u / \lVert x_u\rVert_2\bigr)

    ``f``: [I-200-I] by default (``hidden_dims=(200,)``, the architecture of Liang et al.'s reference code,
    dawenl/vae_cf, for Mult-DAE: one tanh hidden layer, linear output). ``l2 = 0.01`` with
    ``batch_size = 500`` is vae_cf's ``lam = 0.01 / batch_size`` (the weight matrices only; biases are not
    penalised). Adam at 1e-3.
    """

    name: ClassVar[str] = "multidae"
    normalize_input: ClassVar[bool] = True

    hidden_dims: HiddenDims = (200,)
    dropout: DropoutRate = 0.5
    l2: NonNegative = 0.01
    max_epochs: PositiveInt = 200

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return multinomial_nll(logits, target)


@hyperparameters
class MultiVAE(_RowAutoencoder):
    r"""Mult-VAE: variational autoencoder with a multinomial likelihood and an annealed KL weight (Liang et al. 2018).

    Minimises the negative beta-ELBO averaged over the batch's users:

    .. math:: \mathcal{L}_t = \frac{1}{B}\sum_u \Bigl(
              -\sum_i x_{ui}\log\operatorname{softmax}\bigl(f_\theta(z_u)\bigr)_i
              + \beta_t\,\mathrm{KL}\bigl(q_\phi(z_u \mid \tilde{x}_u)\,\Vert\,\mathcal{N}(0, I)\bigr)\Bigr)
              + \frac{\text{l2}}{\text{batch\_size}}\sum_W \lVert W\rVert_F^2

    with :math:`\tilde{x}_u = \operatorname{dropout}_{0.5}(x_u / \lVert x_u\rVert_2)`, encoder
    [I-600-(200 mu, 200 log-variance)], decoder [200-600-I], tanh, one reparameterised sample
    :math:`z_u = \mu_u + \sigma_u\odot\epsilon` per step, and vae_cf's schedule
    :math:`\beta_t = \min(\beta, t / \text{anneal\_steps})` with cap ``beta = 0.2``. ``anneal_steps = None``
    (the default) derives it from the planned number of updates, so that beta reaches its cap after 80% of
    ``max_epochs`` x updates per epoch (:func:`~recforge.models.autoencoders.params.derived_anneal_steps`: about
    vae_cf's 200,000 on ML-20M; with a fixed 200,000 beta would stay below 0.002 on ML-100K); give a number for
    vae_cf's fixed schedule (``anneal_steps=200000``). ``l2`` is 0 as in vae_cf's Mult-VAE. Scores use
    :math:`z = \mu`.
    """

    name: ClassVar[str] = "multivae"
    variational: ClassVar[bool] = True
    normalize_input: ClassVar[bool] = True

    dropout: DropoutRate = 0.5
    beta: NonNegative = 0.2
    anneal_steps: NonNegativeInt | None = None
    max_epochs: PositiveInt = 200

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return multinomial_nll(logits, target)
