r"""Sparse row batches and the autoencoders' losses, each with its formula.

Losses only read the logits at the stored entries of the target rows (``gather``) plus one log-sum-exp
per row for the multinomial likelihood: the input batch is never densified.

Conventions shared by all: losses are means over the users (examples) of a batch; ``l2`` adds
:math:`\frac{\text{l2}}{\text{batch\_size}} \sum_W \lVert W \rVert_F^2` over the weight matrices (not
the biases), which with ``l2 = 0.01`` is exactly dawenl/vae_cf's ``MultiDAE(lam=0.01 / batch_size)``
whose loss adds ``2 * reg_var = lam * sum ||W||^2``; the KL weight follows Liang et al.'s schedule
:math:`\beta_t = \min(\beta, t / \text{anneal\_steps})` (``BetaAnnealing(schedule="capped")``; constant
``beta`` when ``anneal_steps = 0``), ``t`` counting optimiser updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recforge.models.base import csr_to_torch


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


def autoencoder_objective(
    module: nn.Module,
    reconstruction: torch.Tensor,
    name: str,
    mu: torch.Tensor,
    logvar: torch.Tensor | None,
    *,
    beta: float,
    l2: float,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    r"""The training loss of a row autoencoder and its logged parts: the reconstruction term (logged as ``name``),
    plus :math:`\beta\,\mathrm{KL}` for a VAE (``logvar`` given), plus
    :math:`\frac{\text{l2}}{\text{batch\_size}} \sum W^2` over the weight matrices when ``l2 > 0``."""
    loss, parts = reconstruction, {name: reconstruction.detach()}
    if logvar is not None:
        kl = gaussian_kl(mu, logvar)
        loss = loss + beta * kl
        parts["kl"] = kl.detach()
    if l2 > 0:
        reg = weight_penalty(module)
        loss = loss + (l2 / batch_size) * reg
        parts["weights_sq"] = reg.detach()
    return {"loss": loss, **parts}


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
