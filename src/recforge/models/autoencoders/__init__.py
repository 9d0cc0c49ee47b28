"""Autoencoder recommenders: AE, VAE, Mult-DAE, Mult-VAE, RecVAE, the conditioned C-VAE, the sequential SVAE and the
song models SongMLP and SongVAE.

The user-row models (``ae``, ``vae``, ``multidae``, ``multivae``, ``cmultivae``, ``recvae``) read a user's whole
history row and output one logit per item, scored at the latent mean, so new users fold in for free;
``svae`` reads the time-ordered item sequence instead. The modules, one concept each:

- :mod:`.losses`: :class:`SparseRows` (a CSR batch on a device) and every loss, with its formula and
  the conventions shared by all (means over users, the ``l2`` term, the ``beta`` schedule);
- :mod:`.networks`: :class:`SparseInputLinear` (the sparse input stays sparse), :class:`AutoencoderNet`;
- :mod:`.params`: the hyper-parameters the family shares (constraint types, shared fields);
- :mod:`.rows`: the user-row base and AE, VAE, MultiDAE, MultiVAE;
- :mod:`.conditioned`: CMultiVAE and :func:`item_condition_matrix`;
- :mod:`.recvae`: RecVAE (composite prior, user-dependent beta, alternating encoder/decoder epochs);
- :mod:`.sequential`: SVAE, :class:`SVAENet` and :func:`next_k_targets`;
- :mod:`.song`: SongMLP and SongVAE, the listening-history song recommenders (BCE over every song) with their
  latent-space API (``encode``, ``reparametrize``, ``decode``, ``latent``).
"""

from __future__ import annotations

from recforge.models.autoencoders.conditioned import CMultiVAE, item_condition_matrix
from recforge.models.autoencoders.losses import (
    SparseRows,
    bernoulli_nll,
    gaussian_kl,
    l2_normalize_values,
    multinomial_nll,
    next_k_nll,
    squared_error,
    weight_penalty,
)
from recforge.models.autoencoders.networks import AutoencoderNet, SparseInputLinear
from recforge.models.autoencoders.recvae import RecVAE, composite_prior_log_density
from recforge.models.autoencoders.rows import AE, VAE, MultiDAE, MultiVAE
from recforge.models.autoencoders.sequential import SVAE, SVAENet, next_k_targets
from recforge.models.autoencoders.song import SongMLP, SongVAE

__all__ = [
    "AE",
    "SVAE",
    "VAE",
    "AutoencoderNet",
    "CMultiVAE",
    "MultiDAE",
    "MultiVAE",
    "RecVAE",
    "SVAENet",
    "SongMLP",
    "SongVAE",
    "SparseInputLinear",
    "SparseRows",
    "bernoulli_nll",
    "composite_prior_log_density",
    "gaussian_kl",
    "item_condition_matrix",
    "l2_normalize_values",
    "multinomial_nll",
    "next_k_nll",
    "next_k_targets",
    "squared_error",
    "weight_penalty",
]
