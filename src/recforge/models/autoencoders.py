r"""Autoencoder recommenders: AE, VAE, Mult-DAE, Mult-VAE, the conditioned C-VAE and the sequential SVAE.

The user-row models (``ae``, ``vae``, ``multidae``, ``multivae``, ``cmultivae``) read a user's whole
history row :math:`x_u` (users x items CSR, values as given: the pipeline binarises implicit data
beforehand, as for EASE) and output one logit per item; the score of a row is that output at
:math:`z = \mu` (no sampling, no dropout), so it depends on the history only and new users fold in for
free. ``svae`` reads the time-ordered item sequence instead.

The input is sparse and stays sparse: the first layer is :class:`SparseInputLinear`, whose weight is
stored ``items x hidden`` and multiplied by the CSR batch with :func:`torch.sparse.mm` (cost nnz x
hidden, not items x hidden; the input batch is never densified). The L2 normalisation and the input
dropout act on the stored CSR values. Losses only read the logits at the stored entries (``gather``)
plus one log-sum-exp per row for the multinomial likelihood.

Every loss is a function below, next to its models, with its formula. Conventions shared by all:
losses are means over the users (examples) of a batch; ``l2`` adds
:math:`\frac{\text{l2}}{\text{batch\_size}} \sum_W \lVert W \rVert_F^2` over the weight matrices (not
the biases), which with ``l2 = 0.01`` is exactly dawenl/vae_cf's ``MultiDAE(lam=0.01 / batch_size)``
whose loss adds ``2 * reg_var = lam * sum ||W||^2``; the KL weight follows Liang et al.'s schedule
:math:`\beta_t = \min(\beta, t / \text{anneal\_steps})` (``BetaAnnealing(schedule="capped")``; constant
``beta`` when ``anneal_steps = 0``), ``t`` counting optimiser updates.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
import pydantic
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.samplers import ConditionedRows, Sequences, UserRows, pad_sequences
from recforge.models.base import csr_to_torch
from recforge.models.neural import Monitor, TorchRecommender
from recforge.training.callbacks import BetaAnnealing, Callback
from recforge.training.trainer import Losses, StepContext

PositiveInt = Annotated[int, pydantic.Field(ge=1)]
HiddenDims = Annotated[tuple[PositiveInt, ...], pydantic.Field(min_length=1)]
DropoutRate = Annotated[float, pydantic.Field(ge=0.0, lt=1.0)]
NonNegative = Annotated[float, pydantic.Field(ge=0.0, allow_inf_nan=False)]
LearningRate = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]
Seed = Annotated[int, pydantic.Field(ge=0)]
GradClip = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)] | None


# ====================================================================== sparse batches
@dataclass(frozen=True)
class SparseRows:
    """A CSR block of rows on a device, with the row of every stored entry (what the losses gather with)."""

    crow: torch.Tensor
    col: torch.Tensor
    values: torch.Tensor
    row: torch.Tensor
    shape: tuple[int, int]

    @classmethod
    def from_scipy(cls, matrix: sp.csr_array, device: torch.device | str = "cpu") -> SparseRows:
        t = csr_to_torch(matrix, device)
        crow, col = t.crow_indices(), t.col_indices()
        n_rows = int(matrix.shape[0])
        row = torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow.diff())
        return cls(crow, col, t.values(), row, (n_rows, int(matrix.shape[1])))

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    def tensor(self, values: torch.Tensor | None = None) -> torch.Tensor:
        """The torch sparse CSR tensor of this block, with other ``values`` if given (same structure)."""
        return torch.sparse_csr_tensor(
            self.crow, self.col, self.values if values is None else values, size=self.shape, check_invariants=False
        )


def l2_normalize_values(batch: SparseRows, eps: float = 1e-12) -> torch.Tensor:
    r"""The stored values of each row divided by the row's L2 norm, as ``tf.nn.l2_normalize``.

    :math:`x_u / \max(\lVert x_u \rVert, \sqrt{\epsilon})` (empty rows stay empty).
    """
    sq = torch.zeros(batch.n_rows, dtype=batch.values.dtype, device=batch.values.device)
    sq.index_add_(0, batch.row, batch.values * batch.values)
    return batch.values * torch.rsqrt(sq.clamp_min(eps))[batch.row]


# ====================================================================== losses
def multinomial_nll(logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
    r"""Multinomial negative log-likelihood of Liang et al. (2018), averaged over the rows of the batch.

    .. math:: -\frac{1}{B} \sum_u \sum_i x_{ui} \log \operatorname{softmax}(f_u)_i
              = -\frac{1}{B} \sum_u \sum_{i: x_{ui} \ne 0} x_{ui} \bigl(f_{ui} - \log \textstyle\sum_j e^{f_{uj}}\bigr)

    Only the logits at the stored entries of ``target`` are gathered; one log-sum-exp per row.
    """
    lse = torch.logsumexp(logits, dim=1)
    picked = logits[target.row, target.col]
    return -(target.values * (picked - lse[target.row])).sum() / logits.shape[0]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""KL divergence of the Gaussian posterior from the standard normal prior, mean over rows.

    .. math:: \frac{1}{B} \sum_u \sum_j \tfrac{1}{2}\bigl(-\log\sigma_{uj}^2 + \sigma_{uj}^2 + \mu_{uj}^2 - 1\bigr)

    (Kingma & Welling 2014, appendix B; ``logvar`` is :math:`\log\sigma^2`).
    """
    return (0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0)).sum(dim=1).mean()


def bernoulli_nll(logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
    r"""Binary cross-entropy with logits summed over all items, mean over rows (the Bernoulli likelihood of a VAE).

    .. math:: \frac{1}{B}\sum_u \sum_i \bigl[\log(1 + e^{f_{ui}}) - x_{ui} f_{ui}\bigr]

    which is :math:`-x\log\sigma(f) - (1-x)\log(1-\sigma(f))`; the :math:`x_{ui} f_{ui}` term is gathered
    at the stored entries only.
    """
    dense_part = F.softplus(logits).sum()
    sparse_part = (target.values * logits[target.row, target.col]).sum()
    return (dense_part - sparse_part) / logits.shape[0]


def squared_error(output: torch.Tensor, target: SparseRows) -> torch.Tensor:
    r"""Squared reconstruction error summed over all items, mean over rows (a plain autoencoder's MSE loss).

    .. math:: \frac{1}{B}\sum_u \sum_i (\hat{x}_{ui} - x_{ui})^2 = \frac{1}{B}\Bigl[\sum_{u,i} \hat{x}_{ui}^2
              + \sum_{x_{ui} \ne 0} \bigl((\hat{x}_{ui} - x_{ui})^2 - \hat{x}_{ui}^2\bigr)\Bigr]
    """
    at = output[target.row, target.col]
    return (output.pow(2).sum() + ((at - target.values).pow(2) - at.pow(2)).sum()) / output.shape[0]


def weight_penalty(module: nn.Module) -> torch.Tensor:
    r""":math:`\sum_W \lVert W \rVert_F^2` over the module's weight matrices (parameters not named ``*bias``)."""
    terms = [p.pow(2).sum() for name, p in module.named_parameters() if not name.endswith("bias")]
    return torch.stack(terms).sum()


def next_k_nll(logits: torch.Tensor, targets: torch.Tensor, next_k: int) -> torch.Tensor:
    r"""SVAE's next-``k`` multinomial loss (Sachdeva et al. 2019), mean over the time steps of the batch.

    .. math:: \frac{1}{N}\sum_{(u,t)} -\frac{1}{k}\sum_{j=1}^{k} \log\operatorname{softmax}(f_{ut})_{s_{u,t+j}}

    over the ``N`` steps that have a next item; ``targets`` is ``N x k`` item indices + 1 (0: beyond the
    end of the sequence, skipped). The :math:`1/k` is noveens/svae_cf's division by the number of targets.
    """
    lse = torch.logsumexp(logits, dim=1, keepdim=True)
    mask = targets > 0
    picked = logits.gather(1, (targets - 1).clamp_min(0))
    return -((picked - lse) * mask).sum() / (next_k * logits.shape[0])


# ====================================================================== networks
def _init_bias_(bias: torch.Tensor) -> None:
    nn.init.trunc_normal_(bias, std=0.001, a=-0.002, b=0.002)  # vae_cf: truncated normal, stddev 0.001


def _linear(d_in: int, d_out: int) -> nn.Linear:
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    _init_bias_(layer.bias)
    return layer


class SparseInputLinear(nn.Module):
    """``x @ W + c @ V + b`` for a sparse CSR ``x`` (``n_in`` columns) and an optional small dense ``c``.

    ``W`` is stored ``n_in x n_out`` (row ``i`` is item ``i``'s vector), so :func:`torch.sparse.mm` costs
    nnz x ``n_out`` and its backward writes the dense gradient of ``W`` directly (with ``nn.Linear``'s
    ``n_out x n_in`` layout, ``sparse.mm(x, W.T)`` forward + backward took 2.5x longer on CPU at 20,000
    items: 116 vs 45 ms for a batch of 500). Xavier-uniform over the fan-in ``n_in + n_dense``.
    """

    def __init__(self, n_in: int, n_out: int, n_dense: int = 0):
        super().__init__()
        bound = float(np.sqrt(6.0 / (n_in + n_dense + n_out)))
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound))
        self.dense_weight = nn.Parameter(torch.empty(n_dense, n_out).uniform_(-bound, bound)) if n_dense else None
        self.bias = nn.Parameter(torch.empty(n_out))
        _init_bias_(self.bias)

    def forward(self, x: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.sparse.mm(x, self.weight) + self.bias
        if self.dense_weight is not None and dense is not None:
            out = out + dense @ self.dense_weight
        return out


class AutoencoderNet(nn.Module):
    """[items (+ conditions)] - hidden_dims - ... - reversed hidden_dims - [items], tanh between layers.

    ``hidden_dims=(600, 200)`` gives Liang et al.'s [I-600-200-600-I]. A variational net's encoder ends in
    ``2 x hidden_dims[-1]`` outputs (mu, then log-variance) and has no activation there; a deterministic
    net applies tanh to its code too (vae_cf's Mult-DAE). The decoder's output is linear (logits).
    ``normalize`` L2-normalises the input rows; ``dropout`` drops input entries (rescaled by 1 / (1 - p))
    when ``noise`` is on, which also samples ``z`` by reparameterisation.
    """

    def __init__(
        self,
        n_items: int,
        hidden_dims: Sequence[int],
        *,
        variational: bool,
        normalize: bool,
        dropout: float,
        n_conditions: int = 0,
    ):
        super().__init__()
        self.variational, self.normalize, self.dropout = variational, normalize, dropout
        latent = hidden_dims[-1]
        enc = [*hidden_dims[:-1], latent * (2 if variational else 1)]
        self.input_layer = SparseInputLinear(n_items, enc[0], n_dense=n_conditions)
        self.encoder = nn.ModuleList(_linear(a, b) for a, b in itertools.pairwise(enc))
        dec = [*reversed(hidden_dims), n_items]
        self.decoder = nn.ModuleList(_linear(a, b) for a, b in itertools.pairwise(dec))

    def encode(
        self, x: SparseRows, conditions: torch.Tensor | None = None, *, noise: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        values = l2_normalize_values(x) if self.normalize else x.values
        if noise and self.dropout > 0:
            values = F.dropout(values, self.dropout, training=True)
        h = self.input_layer(x.tensor(values), conditions)
        for layer in self.encoder:
            h = layer(torch.tanh(h))
        if not self.variational:
            return torch.tanh(h), None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, layer in enumerate(self.decoder):
            h = layer(torch.tanh(h) if i else h)
        return h

    def forward(
        self, x: SparseRows, conditions: torch.Tensor | None = None, *, noise: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        mu, logvar = self.encode(x, conditions, noise=noise)
        z = mu
        if noise and logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


# ====================================================================== user-row models
def adam(module: nn.Module, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam over the module's parameters, the fused kernel where the device has one (CPU, CUDA).

    On CPU at ML-20M size ([20720-600-200-600-20720], batch 500) the fused step makes a training step
    about 20% faster (0.33 vs 0.40 s): the optimiser touches all 25M parameters every step.
    """
    params = list(module.parameters())
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay, fused=fused or None)


class _RowAutoencoder(TorchRecommender):
    """The user-row autoencoders' common half: batches of rows, the loss, scoring at z = mu."""

    folds_in_from_history: ClassVar[bool] = True
    #: whether the latent code is Gaussian (a KL term, beta annealing)
    variational: ClassVar[bool] = False
    #: whether input rows are L2-normalised before the dropout (Liang et al.)
    normalize_input: ClassVar[bool] = False

    hidden_dims: tuple[int, ...]
    dropout: float
    l2: float
    beta: float
    anneal_steps: int

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
        """Adam at ``learning_rate``, no weight decay: ``l2`` is a term of the loss (see the module doc)."""
        return [adam(module, self.learning_rate)]

    def extra_callbacks(self) -> list[Callback]:
        if not self.variational:
            return []
        return [BetaAnnealing(self.beta, self.anneal_steps, schedule="capped")]

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
        loss, parts = nll, {"nll": nll.detach()}
        if logvar is not None:
            kl = gaussian_kl(mu, logvar)
            loss = loss + ctx.values.get("beta", self.beta) * kl
            parts["kl"] = kl.detach()
        if self.l2 > 0:
            reg = weight_penalty(module)
            loss = loss + (self.l2 / self.batch_size) * reg
            parts["weights_sq"] = reg.detach()
        return {"loss": loss, **parts}

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


class AE(_RowAutoencoder):
    r"""A plain (optionally denoising) autoencoder over user rows with the squared-error reconstruction loss.

    .. math:: \mathcal{L} = \frac{1}{B}\sum_u \lVert f(\tilde{x}_u) - x_u \rVert^2
              + \frac{\text{l2}}{\text{batch\_size}}\sum_W \lVert W\rVert_F^2

    ``x`` is the raw row (no normalisation), :math:`\tilde{x}` its input-dropout version, ``f`` the
    tanh network [I-hidden_dims-reversed-I] with a linear output (see :class:`AutoencoderNet`).
    """

    name: ClassVar[str] = "ae"

    def __init__(
        self,
        *,
        hidden_dims: HiddenDims = (600, 200),
        dropout: DropoutRate = 0.0,
        l2: NonNegative = 0.0,
        max_epochs: PositiveInt = 100,
        batch_size: PositiveInt = 500,
        learning_rate: LearningRate = 1e-3,
        patience: Annotated[int, pydantic.Field(ge=0)] = 20,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        self._store_params(locals())

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return squared_error(logits, target)


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

    def __init__(
        self,
        *,
        hidden_dims: HiddenDims = (600, 200),
        dropout: DropoutRate = 0.0,
        beta: NonNegative = 1.0,
        anneal_steps: Annotated[int, pydantic.Field(ge=0)] = 0,
        l2: NonNegative = 0.0,
        max_epochs: PositiveInt = 100,
        batch_size: PositiveInt = 500,
        learning_rate: LearningRate = 1e-3,
        patience: Annotated[int, pydantic.Field(ge=0)] = 20,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        self._store_params(locals())

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return bernoulli_nll(logits, target)


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

    def __init__(
        self,
        *,
        hidden_dims: HiddenDims = (200,),
        dropout: DropoutRate = 0.5,
        l2: NonNegative = 0.01,
        max_epochs: PositiveInt = 200,
        batch_size: PositiveInt = 500,
        learning_rate: LearningRate = 1e-3,
        patience: Annotated[int, pydantic.Field(ge=0)] = 20,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        self._store_params(locals())

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return multinomial_nll(logits, target)


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
    :math:`\beta_t = \min(\beta, t / \text{anneal\_steps})` (cap 0.2, 200,000 updates: on a small data
    set beta stays near 0 for the whole training, as it would in vae_cf). ``l2`` is 0 as in vae_cf's
    Mult-VAE. Scores use :math:`z = \mu`.
    """

    name: ClassVar[str] = "multivae"
    variational: ClassVar[bool] = True
    normalize_input: ClassVar[bool] = True

    def __init__(
        self,
        *,
        hidden_dims: HiddenDims = (600, 200),
        dropout: DropoutRate = 0.5,
        beta: NonNegative = 0.2,
        anneal_steps: Annotated[int, pydantic.Field(ge=0)] = 200_000,
        l2: NonNegative = 0.0,
        max_epochs: PositiveInt = 200,
        batch_size: PositiveInt = 500,
        learning_rate: LearningRate = 1e-3,
        patience: Annotated[int, pydantic.Field(ge=0)] = 20,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        self._store_params(locals())

    def reconstruction_loss(self, logits: torch.Tensor, target: SparseRows) -> torch.Tensor:
        return multinomial_nll(logits, target)


# ====================================================================== conditioned Mult-VAE
def item_condition_matrix(info: pd.DataFrame | None, column: str, n_items: int) -> tuple[sp.csr_array, list[Any]]:
    """Items x conditions 0/1 CSR from ``info[column]`` (row ``i`` describes item ``i``) and the sorted labels.

    A cell is a list-like of labels (e.g. ML-100K ``genres``), one label, or missing (no condition).
    """
    if info is None or column not in info.columns:
        have = [] if info is None else list(info.columns)
        raise ValueError(f"CMultiVAE needs train.item_info[{column!r}] (the item conditions); item_info has {have}")
    if len(info) != n_items:
        raise ValueError(f"item_info has {len(info)} rows for {n_items} items")
    exploded = info[column].reset_index(drop=True).explode().dropna()
    labels, codes = np.unique(exploded.to_numpy(dtype=object).astype(str), return_inverse=True)
    if len(labels) == 0:
        raise ValueError(f"item_info[{column!r}] holds no condition label")
    items = exploded.index.to_numpy(dtype=np.int64)
    m = sp.csr_array((np.ones(len(items), dtype=np.float32), (items, codes)), shape=(n_items, len(labels)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m, labels.tolist()


class CMultiVAE(MultiVAE):
    r"""C-VAE: a Mult-VAE whose encoder also reads a condition vector (Carraro, Polato & Aiolli 2020, arXiv 2004.11141).

    The conditions are the labels of ``train.item_info[condition_col]`` (e.g. ML-100K genres; an item
    may have several). Training examples come from :class:`~recforge.data.samplers.ConditionedRows`: for
    each user, one per condition ``c`` that some of the user's items satisfy, with encoder input
    :math:`[\tilde{x}_u; e_c]` (the normalised, dropped-out row and the one-hot condition) and target
    :math:`x_u \odot m_c` (the user's items satisfying ``c``), plus one unconditioned example
    (:math:`e = 0`, target :math:`x_u`). The loss is Mult-VAE's on that target:

    .. math:: \mathcal{L} = \frac{1}{B}\sum_{(u,c)} \Bigl(-\sum_i x_{ui} m_{ci}
              \log\operatorname{softmax}\bigl(f_\theta(z_{uc})\bigr)_i
              + \beta_t\,\mathrm{KL}\bigl(q_\phi(z_{uc}\mid\tilde{x}_u, e_c)\,\Vert\,\mathcal{N}(0,I)\bigr)\Bigr)

    :meth:`score` is the unconditioned output (zero condition vector), so the model is a drop-in
    recommender (and early stopping monitors that unconditioned validation ranking);
    :meth:`score_conditioned` feeds conditions and sets the items satisfying none of them to ``-inf``;
    ``recommend``/``recommend_for_history`` take ``condition=`` (a label or a list of labels).
    """

    name: ClassVar[str] = "cmultivae"

    def __init__(
        self,
        *,
        condition_col: str = "genres",
        hidden_dims: HiddenDims = (600, 200),
        dropout: DropoutRate = 0.5,
        beta: NonNegative = 0.2,
        anneal_steps: Annotated[int, pydantic.Field(ge=0)] = 200_000,
        l2: NonNegative = 0.0,
        max_epochs: PositiveInt = 200,
        batch_size: PositiveInt = 500,
        learning_rate: LearningRate = 1e-3,
        patience: Annotated[int, pydantic.Field(ge=0)] = 20,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        super().__init__(
            hidden_dims=hidden_dims,
            dropout=dropout,
            beta=beta,
            anneal_steps=anneal_steps,
            l2=l2,
            max_epochs=max_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            patience=patience,
            monitor=monitor,
            grad_clip=grad_clip,
            seed=seed,
        )
        self.condition_col = condition_col

    # ------------------------------------------------------------------ training
    def _n_conditions(self) -> int:
        return len(self.conditions_)

    def _prepare(self, train: Interactions) -> None:
        matrix, self.conditions_ = item_condition_matrix(train.item_info, self.condition_col, train.n_items)
        self.item_conditions_ = torch.from_numpy(matrix.toarray() != 0)
        self._sampler = ConditionedRows(train.matrix, matrix, batch_size=self.batch_size)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]:
        for _, conditions, rows, targets in self._sampler(rng):
            yield (
                SparseRows.from_scipy(rows, device),
                self._one_hot(conditions, device),
                SparseRows.from_scipy(targets, device),
            )

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        rows, conditions, targets = batch
        logits, mu, logvar = module(rows, conditions, noise=True)
        return self._loss(module, logits, mu, logvar, targets, ctx)

    def _one_hot(self, conditions: np.ndarray, device: torch.device) -> torch.Tensor:
        out = torch.zeros((len(conditions), len(self.conditions_)), dtype=torch.float32)
        has = np.flatnonzero(conditions >= 0)
        out[torch.from_numpy(has), torch.from_numpy(conditions[has])] = 1.0
        return out.to(device)

    # ------------------------------------------------------------------ conditions
    def condition_indices(self, labels: Any) -> np.ndarray:
        """Indices of condition labels (one label or a list of them); unknown labels raise ``ValueError``."""
        self.check_fitted()
        wanted = [labels] if isinstance(labels, str) or not isinstance(labels, Iterable) else list(labels)
        index = {str(c): i for i, c in enumerate(self.conditions_)}
        missing = [w for w in wanted if str(w) not in index]
        if missing:
            raise ValueError(f"unknown condition(s) {missing}; known: {', '.join(map(str, self.conditions_))}")
        return np.array([index[str(w)] for w in wanted], dtype=np.int64)

    def _condition_block(self, conditions: Any, n_rows: int) -> torch.Tensor:
        """``n_rows x n_conditions`` float block from condition indices (one per row, -1: none) or multi-hot rows."""
        arr = np.asarray(conditions)
        n_cond = len(self.conditions_)
        if arr.ndim == 1:
            if len(arr) != n_rows:
                raise ValueError(f"{len(arr)} conditions for {n_rows} history rows")
            if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < -1 or arr.max(initial=0) >= n_cond:
                raise ValueError(f"conditions must be integers in [-1, {n_cond}), got {arr!r}")
            block = self._one_hot(arr.astype(np.int64), torch.device("cpu"))
        elif arr.ndim == 2 and arr.shape == (n_rows, n_cond):
            block = torch.from_numpy((arr != 0).astype(np.float32))
        else:
            raise ValueError(f"conditions must be {n_rows} indices or a {n_rows} x {n_cond} array, got {arr.shape}")
        return block.to(self.device_)

    def score_conditioned(
        self, history: sp.csr_array, conditions: Any, users: np.ndarray | None = None
    ) -> torch.Tensor:
        """Scores of the history rows under their conditions; items satisfying none of a row's conditions get ``-inf``.

        ``conditions``: one condition index per row (``-1``: unconditioned, nothing masked) or a rows x
        conditions multi-hot array (an item is kept if it satisfies any active condition).
        """
        history = self._check_history(history, users)
        block = self._condition_block(conditions, history.shape[0])
        with torch.no_grad():
            logits, _, _ = self.module_(self._rows(history), block, noise=False)
            allowed = (block @ self.item_conditions_.to(block.device, torch.float32).T) > 0
            allowed |= (block.sum(dim=1) == 0)[:, None]
            return logits.float().masked_fill_(~allowed, float("-inf"))

    def latent(self, history: sp.csr_array, conditions: Any = None) -> torch.Tensor:
        """``mu`` of ``q(z | x, c)`` per history row (``conditions`` as in :meth:`score_conditioned`; None: zeros)."""
        history = self._check_history(history, None)
        block = None if conditions is None else self._condition_block(conditions, history.shape[0])
        with torch.no_grad():
            mu, _ = self.module_.encode(self._rows(history), block, noise=False)
        return mu.float()

    def _ranking_scores(self, history: sp.csr_array, users: np.ndarray | None, condition: Any = None) -> torch.Tensor:
        """Unconditioned scores, or with ``condition`` (a label or labels) only items satisfying it ranked.

        ``recommend``/``recommend_for_history`` pass ``condition=`` through to here.
        """
        if condition is None:
            return self.score(history, users)
        block = np.zeros((history.shape[0], len(self.conditions_)), dtype=np.float32)
        block[:, self.condition_indices(condition)] = 1.0
        return self.score_conditioned(history, block, users)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {**super()._state(), "item_conditions": self.item_conditions_.to(torch.uint8)}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.item_conditions_ = tensors["item_conditions"].bool()
        super()._load_state(tensors)

    def _state_info(self) -> dict[str, Any]:
        return {**super()._state_info(), "conditions": list(self.conditions_)}

    def _load_state_info(self, info: dict[str, Any]) -> None:
        super()._load_state_info(info)
        self.conditions_ = list(info["conditions"])


# ====================================================================== SVAE
class SVAENet(nn.Module):
    """Item embedding -> GRU -> per step [hidden (tanh) -> (mu, log-variance)] -> z -> [hidden (tanh) -> items].

    Item ``i`` is token ``i + 1``; token 0 is padding (zero embedding). Sequences are left-aligned, so a
    step's GRU state never depends on the padding after it.
    """

    def __init__(self, n_items: int, embedding_dim: int, rnn_dim: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, rnn_dim, batch_first=True)
        self.encoder = _linear(rnn_dim, hidden_dim)
        self.to_latent = _linear(hidden_dim, 2 * latent_dim)
        self.decoder = nn.ModuleList([_linear(latent_dim, hidden_dim), _linear(hidden_dim, n_items)])

    def states(self, padded: torch.Tensor) -> torch.Tensor:
        """GRU output at every step: ``B x L x rnn_dim``."""
        out, _ = self.gru(self.embedding(padded))
        return out

    def encode(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(torch.tanh(self.encoder(states))).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder[1](torch.tanh(self.decoder[0](z)))

    def last_mu(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``mu`` after the last item of each sequence (after the initial zero state for an empty one)."""
        out = self.states(padded)
        last = out[torch.arange(len(lengths), device=out.device), (lengths - 1).clamp_min(0)]
        last = torch.where((lengths > 0)[:, None], last, torch.zeros_like(last))
        return self.encode(last)[0]


def next_k_targets(padded: torch.Tensor, next_k: int) -> torch.Tensor:
    """``B x L x k`` tokens: entry ``[b, t, j - 1]`` is the ``j``-th item after step ``t`` (0 past the end)."""
    length = padded.shape[1]
    extended = F.pad(padded, (0, next_k))
    return torch.stack([extended[:, j : j + length] for j in range(1, next_k + 1)], dim=2)


class SVAE(TorchRecommender):
    r"""Sequential VAE (Sachdeva, Manco, Ritacco & Pudi 2019, WSDM '19): a VAE per step of a GRU over the item sequence.

    For user ``u`` with time-ordered items :math:`s_{u,1..T}`, the GRU state :math:`h_{ut}` after
    :math:`s_{u,\le t}` parameterises :math:`q(z_{ut}\mid h_{ut}) = \mathcal{N}(\mu_{ut}, \sigma^2_{ut})`
    and the decoder a multinomial :math:`\operatorname{softmax}(f(z_{ut}))` over the next ``next_k``
    items. The loss is the per-step negative beta-ELBO averaged over the ``N`` steps that have a next item:

    .. math:: \mathcal{L} = \frac{1}{N}\sum_{(u,t)}\Bigl(-\frac{1}{k}\sum_{j=1}^{k}
              \log\operatorname{softmax}\bigl(f(z_{ut})\bigr)_{s_{u,t+j}}
              + \beta_t\,\mathrm{KL}\bigl(q(z_{ut}\mid h_{ut})\,\Vert\,\mathcal{N}(0, I)\bigr)\Bigr)

    (svae_cf sums over one user's steps with batch size 1; the mean over the batch's steps is that up to
    a constant per batch). :math:`\beta_t = \min(\beta, t/\text{anneal\_steps})` as in svae_cf, ``l2`` is
    Adam's weight decay (svae_cf: 5e-3).

    **Order of a history.** Training uses each training user's events in time order (``Interactions``
    keeps them sorted by user then timestamp; without timestamps, event order), the last ``max_length``
    of each. :meth:`score` predicts from the state after the last item of the history: for known users
    (``users`` given) the history's items are taken in the order of that user's stored training sequence
    (repeats kept), followed by the history's items absent from it (events after training, e.g. the
    validation item of ``leave_last_out``) in column order; for new users (``users=None``) a CSR row has
    no time order, so the history's **column order** is used. Scores therefore depend on per-user state.
    """

    name: ClassVar[str] = "svae"
    folds_in_from_history: ClassVar[bool] = False

    #: rows scored per GRU pass (bounds the ``rows x max_length x rnn_dim`` activations)
    score_chunk: ClassVar[int] = 256

    def __init__(
        self,
        *,
        embedding_dim: PositiveInt = 256,
        rnn_dim: PositiveInt = 200,
        hidden_dim: PositiveInt = 150,
        latent_dim: PositiveInt = 64,
        next_k: PositiveInt = 4,
        max_length: PositiveInt = 200,
        beta: NonNegative = 0.2,
        anneal_steps: Annotated[int, pydantic.Field(ge=0)] = 200_000,
        l2: NonNegative = 0.0,
        max_epochs: PositiveInt = 25,
        batch_size: PositiveInt = 64,
        learning_rate: LearningRate = 1e-3,
        patience: Annotated[int, pydantic.Field(ge=0)] = 5,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        data = train.sorted()
        self.sequence_indptr_ = np.searchsorted(data.user_idx, np.arange(data.n_users + 1)).astype(np.int64)
        self.sequence_items_ = data.item_idx.astype(np.int64)
        keep = np.diff(self.sequence_indptr_)[data.user_idx] >= 2  # a step needs a next item
        if not keep.any():
            raise ValueError("SVAE needs at least one training user with two or more events")
        self._sampler = Sequences(
            data.user_idx[keep],
            data.item_idx[keep],
            data.n_users,
            batch_size=self.batch_size,
            max_length=self.max_length,
        )

    def _release(self) -> None:
        self._sampler = None

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam at ``learning_rate`` with weight decay ``l2`` (svae_cf: 5e-3)."""
        return [adam(module, self.learning_rate, self.l2)]

    def build_module(self) -> SVAENet:
        return SVAENet(len(self.items_), self.embedding_dim, self.rnn_dim, self.hidden_dim, self.latent_dim)

    def extra_callbacks(self) -> list[Callback]:
        return [BetaAnnealing(self.beta, self.anneal_steps, schedule="capped")]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        for _, padded, _ in self._sampler(rng):
            yield torch.from_numpy(padded).to(device)

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        targets = next_k_targets(batch, self.next_k)
        has_next = targets[..., 0] > 0
        states = module.states(batch)[has_next]
        mu, logvar = module.encode(states)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        nll = next_k_nll(module.decode(z), targets[has_next], self.next_k)
        kl = gaussian_kl(mu, logvar)
        loss = nll + ctx.values.get("beta", self.beta) * kl
        return {"loss": loss, "nll": nll.detach(), "kl": kl.detach()}

    # ------------------------------------------------------------------ scoring
    def _history_sequences(self, history: sp.csr_array, users: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per history row, its items in sequence order as ``(indptr, items)`` (see the class doc)."""
        n_rows, n_items = history.shape
        hist_row = np.repeat(np.arange(n_rows), np.diff(history.indptr))
        hist_item = history.indices.astype(np.int64)
        if users is None:
            order = np.lexsort((hist_item, hist_row))  # column order within a row
            rows, items = hist_row[order], hist_item[order]
        else:
            users = np.asarray(users, dtype=np.int64)
            start = self.sequence_indptr_[users]
            length = self.sequence_indptr_[users + 1] - start
            offsets = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(length.sum())
            seq_row = np.repeat(np.arange(n_rows), length)
            seq_item = self.sequence_items_[offsets]
            hist_keys = hist_row * n_items + hist_item
            seq_keys = seq_row * n_items + seq_item
            in_history = np.isin(seq_keys, hist_keys)
            new = ~np.isin(hist_keys, seq_keys)
            new_order = np.lexsort((hist_item[new], hist_row[new]))
            rows = np.concatenate([seq_row[in_history], hist_row[new][new_order]])
            items = np.concatenate([seq_item[in_history], hist_item[new][new_order]])
            order = np.argsort(rows, kind="stable")  # stored sequence first, then the new items
            rows, items = rows[order], items[order]
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64)
        return indptr, items

    def _last_mu(self, history: sp.csr_array, users: np.ndarray | None) -> Iterator[torch.Tensor]:
        indptr, items = self._history_sequences(history, users)
        for start in range(0, history.shape[0], self.score_chunk):
            rows = np.arange(start, min(start + self.score_chunk, history.shape[0]))
            padded, lengths = pad_sequences(indptr, items, rows, self.max_length)
            with torch.no_grad():
                yield self.module_.last_mu(
                    torch.from_numpy(padded).to(self.device_), torch.from_numpy(lengths).to(self.device_)
                )

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Next-items logits after the last item of each history row's sequence (order: see the class doc)."""
        history = self._check_history(history, users)
        if history.shape[0] == 0:
            return torch.zeros((0, self.n_items), dtype=torch.float32, device=self.device_)
        with torch.no_grad():
            return torch.cat([self.module_.decode(mu) for mu in self._last_mu(history, users)]).float()

    def latent(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """``mu`` of ``q(z | h)`` after the last item of each history row's sequence."""
        history = self._check_history(history, users)
        if history.shape[0] == 0:
            return torch.zeros((0, self.latent_dim), dtype=torch.float32, device=self.device_)
        return torch.cat(list(self._last_mu(history, users))).float()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {
            **super()._state(),
            "sequence.indptr": torch.from_numpy(self.sequence_indptr_),
            "sequence.items": torch.from_numpy(self.sequence_items_),
        }

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.sequence_indptr_ = tensors["sequence.indptr"].numpy().astype(np.int64)
        self.sequence_items_ = tensors["sequence.items"].numpy().astype(np.int64)
        super()._load_state(tensors)
