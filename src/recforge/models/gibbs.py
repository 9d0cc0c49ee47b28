r"""Gibbs sampling of Bayesian matrix factorisation (Salakhutdinov & Mnih 2008, "BPMF", ICML), with biases.

Model, for a rating :math:`r_{ui}` and a fixed global mean :math:`\mu`:

.. math::
    r_{ui} \sim \mathcal N\bigl(\mu + x_u^\top z(y_i),\ \alpha^{-1}\bigr), \qquad
    x_u \sim \mathcal N(\mu_U, \Lambda_U^{-1}), \quad y_i \sim \mathcal N(\mu_V, \Lambda_V^{-1}),

    (\mu_U, \Lambda_U), (\mu_V, \Lambda_V) \sim \text{Normal-Wishart}(\mu_0 = 0, \beta_0 = 2, W_0 = I, \nu_0 = D),
    \qquad \alpha \sim \text{Gamma}(1, 1).

With biases a row is augmented, :math:`x_u = [b_u, p_u]` and :math:`y_i = [b_i, q_i]`, and the feature the
other side sees is :math:`z(y_i) = [1, q_i]` with :math:`b_i` moved to the target, so that
:math:`x_u^\top z(y_i) + b_i = b_u + b_i + p_u \cdot q_i` (Koren's biased MF); without biases
:math:`z(y) = y`. One sweep draws, in turn, the item and user hyper-parameters, every user row, every item
row and :math:`\alpha`, from their conditionals:

.. math::
    \Lambda^*_u = \Lambda_U + \alpha \sum_{i \in I_u} z_i z_i^\top, \quad
    m^*_u = {\Lambda^*_u}^{-1}\Bigl(\Lambda_U \mu_U + \alpha \sum_{i \in I_u} z_i (r_{ui} - \mu - b_i)\Bigr), \quad
    x_u \sim \mathcal N(m^*_u, {\Lambda^*_u}^{-1}),

    \alpha \sim \text{Gamma}\bigl(1 + n/2,\ 1 + \textstyle\sum (r - \hat r)^2 / 2\bigr),

and for the hyper-parameters of :math:`N` rows with mean :math:`\bar x` and scatter :math:`S`:
:math:`\Lambda \sim \mathcal W\bigl((I + S + \tfrac{\beta_0 N}{\beta_0 + N}\bar x \bar x^\top)^{-1}, \nu_0 + N\bigr)`,
:math:`\mu \sim \mathcal N\bigl(\tfrac{N \bar x}{\beta_0 + N}, ((\beta_0 + N)\Lambda)^{-1}\bigr)`.

Every row is drawn at once: the sums over a row's ratings are sparse (rows x cols) by dense (cols x D^2)
products, in row blocks that bound memory, followed by a batched Cholesky factorisation. Every draw comes from
the ``generator`` passed down (in training, the Trainer's per-epoch ``ctx.generator``), never from torch's
global generator, so a chain is reproducible and resumes exactly. Computation is in float64.

Beside the conditionals: :class:`SampledFactorModule`, the sampler's state and posterior-mean predictor,
:class:`GibbsData`, the training ratings as a sweep reads them, and :class:`GibbsInference`, how ClassicMF and
BiasedMF train with ``inference="gibbs"`` (one Trainer epoch is one sweep).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.models.base import csr_to_torch
from recforge.models.factors import FactorModule
from recforge.models.inference import Inference
from recforge.models.rating import PAIR_CHUNK
from recforge.training.trainer import Losses, StepContext

if TYPE_CHECKING:
    from recforge.models.mf import FactorMF

#: prior strength of the Normal-Wishart hyper-prior's mean (BPMF's beta_0)
BETA0 = 2.0
#: shape and rate of the Gamma prior of the noise precision alpha
ALPHA_SHAPE, ALPHA_RATE = 1.0, 1.0
#: bytes of the per-row outer-product sums (rows x D x D float64) built at a time
_BLOCK_BYTES = 64 << 20


@dataclass
class RatingBlocks:
    """One side's view of the centred ratings: row blocks of the 0/1 pattern and of :math:`r - \\mu`."""

    n_rows: int
    blocks: list[tuple[int, torch.Tensor, torch.Tensor]]  # (first row, pattern CSR, centred-ratings CSR)

    @classmethod
    def build(cls, matrix: sp.csr_array, dim: int, device: torch.device) -> RatingBlocks:
        """``matrix``: rows x cols CSR of centred ratings (explicit zeros allowed); ``dim``: the row size D."""
        matrix = sp.csr_array(matrix)
        rows_per_block = max(1, _BLOCK_BYTES // (8 * dim * dim))
        blocks = []
        for start in range(0, matrix.shape[0], rows_per_block):
            part = matrix[start : start + rows_per_block]
            pattern = sp.csr_array((np.ones_like(part.data), part.indices, part.indptr), shape=part.shape)
            blocks.append(
                (
                    start,
                    csr_to_torch(pattern, device, dtype=torch.float64),
                    csr_to_torch(part, device, dtype=torch.float64),
                )
            )
        return cls(matrix.shape[0], blocks)


def sample_normal_wishart(rows: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (mean, precision) from the Normal-Wishart posterior of ``rows`` (N x D), prior (0, BETA0, I, D)."""
    n, d = rows.shape
    mean = rows.mean(0)
    centred = rows - mean
    scale_inv = torch.eye(d, dtype=rows.dtype, device=rows.device) + centred.T @ centred
    scale_inv += (BETA0 * n / (BETA0 + n)) * torch.outer(mean, mean)
    scale = torch.linalg.inv(scale_inv)
    precision = sample_wishart(0.5 * (scale + scale.T), d + n, generator=generator)
    chol = torch.linalg.cholesky((BETA0 + n) * precision)
    noise = torch.randn(d, 1, dtype=rows.dtype, device=rows.device, generator=generator)
    mu = n * mean / (BETA0 + n) + torch.linalg.solve_triangular(chol.T, noise, upper=True)[:, 0]
    return mu, precision


def sample_gamma(shape: torch.Tensor, rate: torch.Tensor | float, *, generator: torch.Generator) -> torch.Tensor:
    """Draws from Gamma(``shape``, ``rate``) (elementwise), from ``generator``.

    ``torch.distributions`` takes no generator; this is the draw its ``Gamma`` makes, a standard Gamma variate
    (``torch._standard_gamma``, which does) divided by the rate.
    """
    value = torch._standard_gamma(shape, generator=generator) / rate
    return value.clamp_(min=torch.finfo(value.dtype).tiny)


def sample_wishart(scale: torch.Tensor, dof: float, *, generator: torch.Generator) -> torch.Tensor:
    """A draw from the Wishart distribution W(scale, dof), by Bartlett's decomposition."""
    d = scale.shape[0]
    factor = torch.zeros_like(scale)
    dofs = torch.tensor([dof - j for j in range(d)], dtype=scale.dtype, device=scale.device)
    factor.diagonal().copy_(sample_gamma(0.5 * dofs, 0.5, generator=generator).sqrt())  # chi-square(dofs)
    low = torch.tril_indices(d, d, -1, device=scale.device)
    factor[low[0], low[1]] = torch.randn(low.shape[1], dtype=scale.dtype, device=scale.device, generator=generator)
    lf = torch.linalg.cholesky(scale) @ factor
    return lf @ lf.T


def features(rows: torch.Tensor, biases: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the other side sees of ``rows``: (features z, bias moved to the target, or None)."""
    if not biases:
        return rows, None
    return torch.cat([torch.ones_like(rows[:, :1]), rows[:, 1:]], dim=1), rows[:, 0]


def sample_rows(
    data: RatingBlocks,
    other: torch.Tensor,
    biases: bool,
    prior_mean: torch.Tensor,
    prior_precision: torch.Tensor,
    alpha: float,
    *,
    generator: torch.Generator | None,
    draw: bool = True,
) -> torch.Tensor:
    """Every row of one side (n_rows x D), drawn from its Gaussian conditional given the other side's rows.

    ``draw=False`` returns the conditional means :math:`m^*` instead (the fold-in of new users; ``generator``
    may then be None).
    """
    if draw and generator is None:
        raise ValueError("sample_rows needs a generator to draw from (or draw=False for the conditional means)")
    z, other_bias = features(other, biases)
    d = z.shape[1]
    outer = (z[:, :, None] * z[:, None, :]).reshape(len(z), d * d)
    shifted = z * other_bias[:, None] if other_bias is not None else None
    prior_term = prior_precision @ prior_mean
    out = torch.empty((data.n_rows, d), dtype=z.dtype, device=z.device)
    for start, pattern, centred in data.blocks:
        gram = (pattern @ outer).reshape(-1, d, d)
        rhs = centred @ z
        if shifted is not None:
            rhs -= pattern @ shifted
        chol = torch.linalg.cholesky(prior_precision + alpha * gram)
        mean = torch.cholesky_solve((prior_term + alpha * rhs)[:, :, None], chol)
        if draw:
            noise = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
            mean += torch.linalg.solve_triangular(chol.mT, noise, upper=True)
        out[start : start + len(gram)] = mean[:, :, 0]
    return out


def sample_alpha(sse: float, n: int, *, generator: torch.Generator) -> float:
    """A draw of the noise precision from its Gamma conditional."""
    shape = torch.tensor(ALPHA_SHAPE + n / 2.0, dtype=torch.float64, device=generator.device)
    return float(sample_gamma(shape, ALPHA_RATE + sse / 2.0, generator=generator))


# ====================================================================== the sampler in training
@dataclass
class GibbsData:
    """The training ratings as a Gibbs sweep reads them: row blocks per side and the centred events."""

    by_user: RatingBlocks
    by_item: RatingBlocks
    users: torch.Tensor
    items: torch.Tensor
    centred: torch.Tensor


class SampledFactorModule(FactorModule):
    r"""The posterior-mean predictor of Gibbs-sampled factors (the conditionals above), and the sampler's state.

    After ``n`` kept samples the biases are their averages and the factor tables hold the samples side by side
    (``embedding_dim`` columns each), scaled by :math:`1/\sqrt n`, so that
    :math:`U_u \cdot I_i = \frac1n \sum_s p^s_u \cdot q^s_i`: prediction, scoring and saving are those of the
    point-estimate module. During burn-in the tables hold the current sample. The buffers keep the chain's state
    (rows ``[b, p]`` in float64, the noise precision ``alpha``, the user hyper-parameters for fold-in), so that
    a checkpoint resumes the chain exactly.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        n_slots: int,
        *,
        biases: bool,
        mean: float,
        init_std: float,
        generator: torch.Generator,
    ):
        super().__init__(n_users, n_items, dim * n_slots, biases=biases, mean=mean, init_std=1.0, sparse=False)
        self.dim, self.n_slots = dim, n_slots
        for table in (self.user_factors, self.item_factors):
            nn.init.zeros_(table.weight)
        width = dim + int(biases)
        start = init_std * torch.randn(n_users + n_items, width, dtype=torch.float64, generator=generator)
        self.register_buffer("user_rows", start[:n_users].clone())  # the chain's first state, from ``generator``
        self.register_buffer("item_rows", start[n_users:].clone())
        self.register_buffer("alpha", torch.tensor(1.0, dtype=torch.float64))
        self.register_buffer("user_prior_mean", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("user_prior_precision", torch.eye(width, dtype=torch.float64))
        self.register_buffer("n_kept", torch.tensor(0))

    @torch.no_grad()
    def sweep(self, data: GibbsData, *, keep: bool, generator: torch.Generator) -> dict[str, float]:
        """One Gibbs sweep, drawing from ``generator``; ``keep`` adds the new sample to the average (after burn-in)."""
        alpha = float(self.alpha)
        item_mean, item_precision = sample_normal_wishart(self.item_rows, generator=generator)
        user_mean, user_precision = sample_normal_wishart(self.user_rows, generator=generator)
        self.user_rows.copy_(
            sample_rows(
                data.by_user, self.item_rows, self.biases, user_mean, user_precision, alpha, generator=generator
            )
        )
        self.item_rows.copy_(
            sample_rows(
                data.by_item, self.user_rows, self.biases, item_mean, item_precision, alpha, generator=generator
            )
        )
        sse = self._squared_error(data)
        self.alpha.fill_(sample_alpha(sse, len(data.centred), generator=generator))
        self.user_prior_mean.copy_(user_mean)
        self.user_prior_precision.copy_(user_precision)
        self._record(keep)
        return {"rmse": (sse / len(data.centred)) ** 0.5, "alpha": float(self.alpha)}

    def _squared_error(self, data: GibbsData) -> float:
        z, other_bias = features(self.item_rows, self.biases)
        sse = 0.0
        for start in range(0, len(data.centred), PAIR_CHUNK):
            sl = slice(start, start + PAIR_CHUNK)
            users, items = data.users[sl], data.items[sl]
            pred = torch.einsum("bd,bd->b", self.user_rows[users], z[items])
            if other_bias is not None:
                pred += other_bias[items]
            sse += float((data.centred[sl] - pred).square().sum())
        return sse

    @torch.no_grad()
    def _record(self, keep: bool) -> None:
        k = self.dim
        if keep:
            self.n_kept += 1
        n = max(int(self.n_kept), 1)
        users, items = self.user_factors.weight, self.item_factors.weight
        if keep and n > 1:
            scale = ((n - 1) / n) ** 0.5
            users[:, : (n - 1) * k] *= scale
            items[:, : (n - 1) * k] *= scale
        offset = int(self.biases)
        users[:, (n - 1) * k : n * k] = self.user_rows[:, offset:] / n**0.5
        items[:, (n - 1) * k : n * k] = self.item_rows[:, offset:] / n**0.5
        if self.biases:
            for table, rows in ((self.user_bias, self.user_rows), (self.item_bias, self.item_rows)):
                table.weight[:, 0] = table.weight[:, 0] * (n - 1) / n + rows[:, 0] / n

    @torch.no_grad()
    def fold_in(self, history: sp.csr_array, mean: float) -> torch.Tensor:
        """Scores of new users: per kept sample, the posterior mean of the user's row given that sample's item
        factors (and the averaged item biases), then averaged over samples."""
        device = self.user_rows.device
        n = max(int(self.n_kept), 1)
        centred = sp.csr_array(history, dtype=np.float64, copy=True)
        centred.data -= mean
        blocks = RatingBlocks.build(centred, self.user_rows.shape[1], device)
        item_bias = self.item_bias.weight[:, :1].double() if self.biases else None
        scores = torch.zeros((history.shape[0], self.item_factors.num_embeddings), dtype=torch.float64, device=device)
        for s in range(n):
            factors = self.item_factors.weight[:, s * self.dim : (s + 1) * self.dim].double() * n**0.5
            item_rows = torch.cat([item_bias, factors], dim=1) if item_bias is not None else factors
            rows = sample_rows(
                blocks,
                item_rows,
                self.biases,
                self.user_prior_mean,
                self.user_prior_precision,
                float(self.alpha),
                generator=None,
                draw=False,
            )
            z, other_bias = features(item_rows, self.biases)
            scores += rows @ z.T
            if other_bias is not None:
                scores += other_bias[None, :]
        return (scores / n + mean).float()


class GibbsInference(Inference):
    """``inference="gibbs"``: one Gibbs sweep per Trainer epoch, drawn from the epoch's ``ctx.generator``; no
    optimiser and no early stopping; new users folded in by their posterior mean per kept sample."""

    def prepare(self, model: FactorMF, train: Interactions) -> GibbsData:
        name = type(model).__name__
        if model.burn_in >= model.max_epochs:
            raise ValueError(
                f"{name}: burn_in ({model.burn_in}) must be smaller than max_epochs ({model.max_epochs}),"
                " the number of Gibbs sweeps"
            )
        device = model.device_
        if device.type == "mps":
            raise ValueError(f"{name}: Gibbs sampling computes in float64, which MPS lacks; use cpu")
        centred = np.asarray(train.values, dtype=np.float64) - model.rating_stats_["mean"]
        shape = (len(train.users), len(train.items))
        by_user = sp.csr_array((centred, (train.user_idx, train.item_idx)), shape=shape)
        width = model.embedding_dim + int(model.biases)
        return GibbsData(
            by_user=RatingBlocks.build(by_user, width, device),
            by_item=RatingBlocks.build(sp.csr_array(by_user.T), width, device),
            users=torch.from_numpy(np.asarray(train.user_idx, dtype=np.int64)).to(device),
            items=torch.from_numpy(np.asarray(train.item_idx, dtype=np.int64)).to(device),
            centred=torch.from_numpy(centred).to(device),
        )

    def build_module(self, model: FactorMF, n_users: int, n_items: int, mean: float) -> FactorModule:
        """The sampler's module; the chain starts from rows drawn with ``seed`` (on the CPU, whatever the device)."""
        return SampledFactorModule(
            n_users,
            n_items,
            model.embedding_dim,
            model.max_epochs - model.burn_in,
            biases=model.biases,
            mean=mean,
            init_std=model.init_std,
            generator=torch.Generator().manual_seed(model.seed),
        )

    def configure_optimizers(self, model: FactorMF, module: FactorModule) -> Sequence[torch.optim.Optimizer]:
        """None: a sweep updates the module itself."""
        return []

    def batches(self, model: FactorMF, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        yield model.inference_data_  # one sweep over all the ratings per epoch

    def training_step(self, model: FactorMF, module: FactorModule, batch: Any, ctx: StepContext) -> Losses:
        assert isinstance(module, SampledFactorModule) and isinstance(batch, GibbsData)
        if ctx.generator is None:
            raise ValueError("a Gibbs sweep draws from the step's generator (ctx.generator), which is None")
        values = module.sweep(batch, keep=ctx.epoch >= model.burn_in, generator=ctx.generator)
        return {name: torch.tensor(value) for name, value in values.items()}

    def early_stopping_patience(self, model: FactorMF) -> int | None:
        """None: the chain runs all ``max_epochs`` sweeps (the best average is kept)."""
        return None

    def fold_in(self, model: FactorMF, module: FactorModule, history: sp.csr_array) -> torch.Tensor:
        assert isinstance(module, SampledFactorModule)
        return module.fold_in(history, float(module.global_mean))
