r"""The listening-history song recommenders: ``SongMLP`` and ``SongVAE`` (BCE over every song, a latent space z).

Given the list of songs a user has listened to, the network outputs for every song the probability that the user
likes it (a sigmoid per song). The input is the user's row :math:`x_u` (1 at the listened songs; play counts may be
kept and scaled, see ``input_weighting``), read by a sparse input layer
(:class:`~recforge.models.autoencoders.networks.SparseInputLinear`: cost nnz x ``dims[0]``, so the first layer
scales to the 180,198-song catalogue of the reference), then ``dims`` down to the latent size ``dims[-1]``; the
decoder mirrors the sizes back to one logit per song (:class:`~recforge.models.autoencoders.networks.AutoencoderNet`,
tanh between layers). The target is the 0/1 row (:func:`~recforge.models.autoencoders.losses.bernoulli_nll`):

.. math:: \mathcal{L}_{\text{MLP}} = \frac{1}{B}\sum_u \sum_i \bigl[\log(1+e^{f_{ui}}) - y_{ui} f_{ui}\bigr],
          \qquad
          \mathcal{L}_{\text{VAE}} = \mathcal{L}_{\text{BCE}}(f(z_u), y_u)
          + \beta_t\,\mathrm{KL}\bigl(\mathcal{N}(\mu_u,\sigma_u^2)\,\Vert\,\mathcal{N}(0,I)\bigr)

with :math:`z_u = \mu_u + \sigma_u\odot\epsilon` (``reparametrize``) during training and the KL weight annealed as
:math:`\beta_t = \beta\min(1, t/\text{anneal\_steps})`. Scores are the logits at :math:`z=\mu` (the sigmoid is
monotone, so the ranking is that of the probabilities, :meth:`~_SongAutoencoder.predict_proba`). The output bias
starts at each song's log-odds of being listened to in the training rows (see ``build_module``).

The reference's pieces are public: :meth:`~_SongAutoencoder.history_row` (``input(SONG_INDEXES)``: a new user is
just a list of song ids), :meth:`~_SongAutoencoder.encode` (``encoder``: ``mu`` and ``logvar``, ``None`` for the
MLP), :meth:`~SongVAE.reparametrize`, :meth:`~_SongAutoencoder.decode` (logits of ``z``),
:meth:`~_SongAutoencoder.latent` (``z``: the mean, or a sample with ``sample=True``) and
:meth:`~_SongAutoencoder.run_name` (the name derived from model, loss, dims and beta).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.samplers import UserRows
from recforge.models.autoencoders.losses import SparseRows, autoencoder_objective, bernoulli_nll
from recforge.models.autoencoders.networks import AutoencoderNet
from recforge.models.autoencoders.params import AutoencoderParams, DropoutRate, HiddenDims, NonNegative
from recforge.models.neural import TorchRecommender
from recforge.models.optim import adam
from recforge.models.params import NonNegativeInt, hyperparameters
from recforge.training.callbacks import BetaAnnealing, Callback
from recforge.training.trainer import Losses, StepContext

#: How stored values (play counts or 1s) enter the network: ``binary`` (1 per listened song), ``log``
#: (:math:`\log(1 + x)`) or ``none`` (as stored). The BCE target is always the 0/1 row.
InputWeighting = Literal["binary", "log", "none"]

History = sp.csr_array | sp.sparray | Sequence[Any]


@hyperparameters
class SongParams(AutoencoderParams):
    """The song models' network: layer sizes ``dims`` (the last is the latent size), input dropout, input scaling."""

    dims: HiddenDims = (600, 200)
    dropout: DropoutRate = 0.0
    input_weighting: InputWeighting = "binary"


class _SongAutoencoder(SongParams, TorchRecommender):
    """What SongMLP and SongVAE share: batches of user rows, BCE over all songs, the latent-space API."""

    folds_in_from_history: ClassVar[bool] = True
    variational: ClassVar[bool] = False
    #: the loss name used in :meth:`run_name`
    loss_name: ClassVar[str] = "bce"

    beta: float
    anneal_steps: int

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        self._sampler = UserRows(train.matrix, batch_size=self.batch_size)
        listeners = np.diff(train.matrix.tocsc().indptr).astype(np.float64)
        share = (listeners + 0.5) / (train.n_users + 1.0)
        self._item_log_odds = torch.from_numpy(np.log(share / (1.0 - share)).astype(np.float32))

    def _release(self) -> None:
        self._sampler = None
        self._item_log_odds = None

    def build_module(self) -> AutoencoderNet:
        """The network; when training starts, the output bias is each song's log-odds of being listened to.

        With the popularity in the bias from the first step, the BCE gradients of the ~all-zero rows no longer
        spend the first epochs learning it (pushing every logit down), and the weights learn the users' tastes
        (on Last.fm 2K the default initialisation left both models at popularity's NDCG for 30 epochs).
        """
        net = AutoencoderNet(
            len(self.items_), self.dims, variational=self.variational, normalize=False, dropout=self.dropout
        )
        prior = getattr(self, "_item_log_odds", None)
        if prior is not None and len(prior) == len(self.items_):
            with torch.no_grad():
                net.decoder[-1].bias.copy_(prior)
        return net

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        return [adam(module, self.learning_rate)]

    def _inputs(self, rows: SparseRows) -> SparseRows:
        """The batch with its values scaled as ``input_weighting`` says."""
        if self.input_weighting == "binary":
            values = torch.ones_like(rows.values)
        elif self.input_weighting == "log":
            values = torch.log1p(rows.values.clamp_min(0))
        else:
            values = rows.values
        return dataclasses.replace(rows, values=values)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]:
        for _, rows in self._sampler(rng):
            yield SparseRows.from_scipy(rows, device)

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        x = self._inputs(batch)
        logits, mu, logvar = module(x, noise=True)
        target = dataclasses.replace(batch, values=torch.ones_like(batch.values))
        bce = bernoulli_nll(logits, target)
        beta = ctx.values.get("beta", self.beta) if logvar is not None else 0.0  # AEs have no beta
        return autoencoder_objective(module, bce, "bce", mu, logvar, beta=beta, l2=self.l2, batch_size=self.batch_size)

    # ------------------------------------------------------------------ the latent-space API
    def history_row(self, item_ids: Sequence[Any], values: Sequence[float] | None = None) -> sp.csr_array:
        """The 1 x n_items input row of a listening history given as raw song ids (the reference's ``input``)."""
        self.check_fitted()
        idx = self.items_.index(list(item_ids))
        data = np.ones(len(idx), dtype=np.float32) if values is None else np.asarray(values, dtype=np.float32)
        if data.shape != idx.shape:
            raise ValueError(f"{len(data)} values for {len(idx)} songs")
        uniq, last = np.unique(idx[::-1], return_index=True)
        return sp.csr_array((data[::-1][last], uniq, np.array([0, len(uniq)])), shape=(1, self.n_items))

    def _as_rows(self, history: History) -> sp.csr_array:
        if sp.issparse(history):
            return self._check_history(sp.csr_array(history), None)
        return self.history_row(list(history))

    def _rows(self, history: sp.csr_array) -> SparseRows:
        return self._inputs(SparseRows.from_scipy(history, self.device_))

    def encode(self, history: History) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mu, logvar)`` of each history row (the reference's ``encoder``; ``logvar`` is None for the MLP).

        ``history``: users x items rows, or one listening history as a list of raw song ids.
        """
        rows = self._as_rows(history)
        with torch.no_grad():
            mu, logvar = self.module_.encode(self._rows(rows), noise=False)
        return mu.float(), None if logvar is None else logvar.float()

    def latent(self, history: History, *, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        """z of each history row: the code (MLP) or ``mu`` (VAE); ``sample=True`` draws ``mu + sigma * eps`` (VAE)."""
        mu, logvar = self.encode(history)
        if not sample or logvar is None:
            return mu
        return self.reparametrize(mu, logvar, seed=seed)

    @staticmethod
    def reparametrize(mu: torch.Tensor, logvar: torch.Tensor | None, *, seed: int | None = None) -> torch.Tensor:
        """``mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (``mu`` itself when ``logvar`` is None)."""
        if logvar is None:
            return mu
        generator = None
        if seed is not None:
            generator = torch.Generator(device=mu.device).manual_seed(seed)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits of every song (rows x n_items) for latent vectors ``z`` (rows x ``dims[-1]``)."""
        self.check_fitted()
        z = torch.as_tensor(np.asarray(z, dtype=np.float32) if not isinstance(z, torch.Tensor) else z)
        if z.ndim == 1:
            z = z[None, :]
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"z has {z.shape[1]} dimensions, the model's latent space has {self.latent_dim}")
        with torch.no_grad():
            return self.module_.decode(z.to(self.device_, torch.float32)).float()

    def predict_proba(self, history: History) -> torch.Tensor:
        """The probability that the user likes each song (sigmoid of the scores), rows x n_items."""
        return torch.sigmoid(self.score(self._as_rows(history)))

    @property
    def latent_dim(self) -> int:
        return int(self.dims[-1])

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Logits at ``z = mu`` (no sampling, no dropout): the scores depend on the history only."""
        history = self._check_history(history, users)
        with torch.no_grad():
            logits, _, _ = self.module_(self._rows(history), noise=False)
        return logits.float()

    def steered_latent(self, history: History, toward: Any, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, z')`` of each history row, ``z' = z + factor * (toward - z)``: z moved toward a point of the latent
        space (e.g. a tag's mean) by ``factor`` (0: unchanged, 1: at the point; the reference's "tuning")."""
        if not np.isfinite(factor) or factor < 0:
            raise ValueError(f"steering factor must be a finite number >= 0, got {factor}")
        z = self.latent(history)
        target = torch.as_tensor(np.asarray(toward, dtype=np.float32)).to(z.device)
        if target.shape[-1] != self.latent_dim:
            raise ValueError(
                f"steering target has {target.shape[-1]} dimensions, the latent space has {self.latent_dim}"
            )
        return z, z + float(factor) * (target - z)

    def _ranking_scores(self, history: sp.csr_array, users: np.ndarray | None, steer: Any = None) -> torch.Tensor:
        """The scores, or with ``steer=(toward, factor)`` the decoded steered z (:meth:`steered_latent`).

        ``recommend``/``recommend_for_history`` pass ``steer=`` through to here.
        """
        if steer is None:
            return self.score(history, users)
        toward, factor = steer
        _, z = self.steered_latent(self._check_history(history, users), toward, factor)
        return self.decode(z)

    def run_name(self) -> str:
        """A name from the model's parameters, as the reference's ``update_name``: model, loss, dims (and beta)."""
        parts = [self.name, self.loss_name, "dims-" + "-".join(str(d) for d in self.dims)]
        if self.variational:
            parts.append(f"beta-{self.beta:g}")
        return "_".join(parts)


@hyperparameters
class SongMLP(_SongAutoencoder):
    r"""The song MLP: encoder [songs - dims] to a deterministic code z, decoder back to a logit per song, BCE.

    .. math:: \mathcal{L} = \frac{1}{B}\sum_u \sum_i \bigl[\log(1+e^{f_{ui}}) - y_{ui} f_{ui}\bigr]
              + \frac{\text{l2}}{\text{batch\_size}}\sum_W \lVert W\rVert_F^2, \qquad f_u = g(h(\tilde{x}_u))

    ``h`` the encoder (tanh on the code, as a deterministic :class:`AutoencoderNet`), ``g`` the decoder, ``y`` the
    0/1 row, :math:`\tilde{x}` the scaled input with input dropout. ``latent(x)`` is ``h(x)``.
    """

    name: ClassVar[str] = "songmlp"

    beta: ClassVar[float] = 0.0
    anneal_steps: ClassVar[int] = 0


@hyperparameters
class SongVAE(_SongAutoencoder):
    r"""The song VAE: encoder to (mu, log-variance), ``reparametrize``, decoder to a logit per song; BCE + beta x KL.

    .. math:: \mathcal{L}_t = \frac{1}{B}\sum_u \Bigl(\sum_i \bigl[\log(1+e^{f_{ui}(z_u)}) - y_{ui} f_{ui}(z_u)\bigr]
              + \beta_t\,\mathrm{KL}\bigl(\mathcal{N}(\mu_u,\sigma_u^2)\,\Vert\,\mathcal{N}(0,I)\bigr)\Bigr),
              \quad z_u = \mu_u + \sigma_u\odot\epsilon

    :math:`\beta_t = \beta \min(1, t / \text{anneal\_steps})` over optimiser updates (constant ``beta`` when
    ``anneal_steps = 0``; ``BetaAnnealing(schedule="scaled")``). Scores use :math:`z = \mu`.
    """

    name: ClassVar[str] = "songvae"
    variational: ClassVar[bool] = True
    loss_name: ClassVar[str] = "bce-kld"

    beta: NonNegative = 1.0
    anneal_steps: NonNegativeInt = 0

    def extra_callbacks(self) -> list[Callback]:
        return [BetaAnnealing(self.beta, self.anneal_steps, schedule="scaled")]
