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
products, in row blocks that bound memory, followed by a batched Cholesky factorisation. Randomness comes
from torch's global generator, which the Trainer seeds per epoch (sweep). Computation is in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recforge.models.base import csr_to_torch

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


def sample_normal_wishart(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (mean, precision) from the Normal-Wishart posterior of ``rows`` (N x D), prior (0, BETA0, I, D)."""
    n, d = rows.shape
    mean = rows.mean(0)
    centred = rows - mean
    scale_inv = torch.eye(d, dtype=rows.dtype, device=rows.device) + centred.T @ centred
    scale_inv += (BETA0 * n / (BETA0 + n)) * torch.outer(mean, mean)
    scale = torch.linalg.inv(scale_inv)
    precision = sample_wishart(0.5 * (scale + scale.T), d + n)
    chol = torch.linalg.cholesky((BETA0 + n) * precision)
    noise = torch.randn(d, 1, dtype=rows.dtype, device=rows.device)
    mu = n * mean / (BETA0 + n) + torch.linalg.solve_triangular(chol.T, noise, upper=True)[:, 0]
    return mu, precision


def sample_wishart(scale: torch.Tensor, dof: float) -> torch.Tensor:
    """A draw from the Wishart distribution W(scale, dof), by Bartlett's decomposition."""
    d = scale.shape[0]
    factor = torch.zeros_like(scale)
    dofs = torch.tensor([dof - j for j in range(d)], dtype=scale.dtype, device=scale.device)
    factor.diagonal().copy_(torch.distributions.Chi2(dofs).sample().sqrt())
    low = torch.tril_indices(d, d, -1, device=scale.device)
    factor[low[0], low[1]] = torch.randn(low.shape[1], dtype=scale.dtype, device=scale.device)
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
    draw: bool = True,
) -> torch.Tensor:
    """Every row of one side (n_rows x D), drawn from its Gaussian conditional given the other side's rows.

    ``draw=False`` returns the conditional means :math:`m^*` instead (the fold-in of new users).
    """
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
            mean += torch.linalg.solve_triangular(chol.mT, torch.randn_like(mean), upper=True)
        out[start : start + len(gram)] = mean[:, :, 0]
    return out


def sample_alpha(sse: float, n: int) -> float:
    """A draw of the noise precision from its Gamma conditional."""
    gamma = torch.distributions.Gamma(torch.tensor(ALPHA_SHAPE + n / 2.0), torch.tensor(ALPHA_RATE + sse / 2.0))
    return float(gamma.sample())
