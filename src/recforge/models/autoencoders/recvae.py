r"""RecVAE (Shenbin, Alekseev, Tutubalina, Malykh & Nikolenko, WSDM 2020): composite prior, user-dependent beta,
alternating encoder and decoder epochs.

The pieces, each checked on its own in ``tests/models/test_recvae.py``:

- :class:`RecVAEEncoder`: the densely connected encoder (sparse first layer, swish, layer norm);
- :func:`gaussian_log_density` and :func:`composite_prior_log_density`: the densities of the KL estimate;
- :class:`RecVAENet`: encoder, the frozen previous encoder of the prior, linear decoder;
- :class:`RecVAE`: the model, trained by the one Trainer with two optimisers on an epoch :class:`Cycle`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from recforge.models.autoencoders.losses import SparseRows, l2_normalize_values, multinomial_nll
from recforge.models.autoencoders.networks import SparseInputLinear, xavier_linear
from recforge.models.autoencoders.params import (
    DropoutRate,
    GradClip,
    LearningRate,
    NonNegative,
    NonNegativeInt,
    PositiveInt,
    Seed,
)
from recforge.models.autoencoders.rows import _RowAutoencoder
from recforge.models.neural import Monitor
from recforge.models.optim import adam
from recforge.training.callbacks import Callback
from recforge.training.schedules import Cycle, Schedule
from recforge.training.trainer import Losses, StepContext, Trainer

_LOG_2PI = math.log(2.0 * math.pi)
#: the layer norms' epsilon in the authors' code (0.1, not torch's 1e-5)
LAYER_NORM_EPS = 0.1


def _check_weights(value: tuple[float, float, float]) -> tuple[float, float, float]:
    if abs(sum(value) - 1.0) > 1e-6:
        raise ValueError(f"the three prior weights must sum to 1, got {value} (sum {sum(value):g})")
    return value


_Weight = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]
#: weights of (standard normal, previous posterior, wide normal) in the composite prior: positive, summing to 1
PriorWeights = Annotated[tuple[_Weight, _Weight, _Weight], pydantic.AfterValidator(_check_weights)]
LogVariance = Annotated[float, pydantic.Field(allow_inf_nan=False)]


# ====================================================================== densities
def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Elementwise :math:`\log \mathcal{N}(z; \mu, e^{\text{logvar}}) = -\tfrac12\bigl(\text{logvar} + \log 2\pi
    + (z - \mu)^2 e^{-\text{logvar}}\bigr)` (broadcasting)."""
    return -0.5 * (logvar + _LOG_2PI + (z - mu).pow(2) * torch.exp(-logvar))


def composite_prior_log_density(
    z: torch.Tensor,
    prior_mu: torch.Tensor,
    prior_logvar: torch.Tensor,
    weights: Sequence[float] = (3 / 20, 3 / 4, 1 / 10),
    wide_logvar: float = 10.0,
) -> torch.Tensor:
    r"""Log-density of RecVAE's composite prior at ``z``, per latent coordinate (``B x d``, sum it over ``d``).

    .. math:: \log p(z_j) = \log\Bigl(w_1\,\mathcal{N}(z_j; 0, 1) + w_2\,\mathcal{N}(z_j; \mu^{old}_j,
              \sigma^{old\,2}_j) + w_3\,\mathcal{N}(z_j; 0, e^{\text{wide\_logvar}})\Bigr)

    with :math:`(\mu^{old}, \log\sigma^{old\,2})` the previous encoder's posterior for the same user; computed
    as a log-sum-exp. The mixture is per coordinate, as in the authors' code (the paper writes it over the
    whole vector).
    """
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    parts = (
        gaussian_log_density(z, zero, zero),
        gaussian_log_density(z, prior_mu, prior_logvar),
        gaussian_log_density(z, zero, torch.full((), wide_logvar, dtype=z.dtype, device=z.device)),
    )
    stacked = torch.stack([p + math.log(w) for p, w in zip(parts, weights, strict=True)], dim=-1)
    return torch.logsumexp(stacked, dim=-1)


# ====================================================================== network
class RecVAEEncoder(nn.Module):
    r"""RecVAE's encoder: ``layers`` densely connected blocks, then the mean and log-variance heads.

    .. math:: h_1 = \operatorname{LN}(\operatorname{swish}(W_1 \tilde{x} + b_1)),\quad
              h_k = \operatorname{LN}\Bigl(\operatorname{swish}\bigl(W_k h_{k-1} + b_k + \textstyle\sum_{j<k} h_j\bigr)
              \Bigr),\quad \mu = W_\mu h_L + b_\mu,\ \log\sigma^2 = W_\sigma h_L + b_\sigma

    ``swish(a) = a * sigmoid(a)``, LN a layer norm with epsilon 0.1 (the authors' code). The first layer is a
    :class:`SparseInputLinear`: the (normalised, dropped-out) input stays sparse.
    """

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, layers: int):
        super().__init__()
        self.input_layer = SparseInputLinear(n_items, hidden_dim)
        self.hidden = nn.ModuleList(xavier_linear(hidden_dim, hidden_dim) for _ in range(layers - 1))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim, eps=LAYER_NORM_EPS) for _ in range(layers))
        self.mu = xavier_linear(hidden_dim, latent_dim)
        self.logvar = xavier_linear(hidden_dim, latent_dim)

    def forward(self, x: SparseRows, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the rows ``x`` read with stored ``values`` (already normalised / dropped out)."""
        h = self.norms[0](F.silu(self.input_layer(x.tensor(values))))
        total = h
        for layer, norm in zip(self.hidden, self.norms[1:], strict=True):
            h = norm(F.silu(layer(h) + total))
            total = total + h
        return self.mu(h), self.logvar(h)


class RecVAENet(nn.Module):
    """Encoder, ``prior_encoder`` (the frozen previous encoder of the composite prior) and a linear decoder.

    ``prior_encoder`` starts as a copy of the initial encoder and is refreshed by :meth:`refresh_prior`; it is a
    submodule without gradients, so the Trainer's checkpoints (the module's ``state_dict``) carry it and a
    resumed training uses the same prior. The decoder is one linear layer ``latent -> items`` (logits).
    """

    def __init__(self, n_items: int, hidden_dim: int, latent_dim: int, layers: int):
        super().__init__()
        self.encoder = RecVAEEncoder(n_items, hidden_dim, latent_dim, layers)
        self.prior_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.decoder = xavier_linear(latent_dim, n_items)

    @torch.no_grad()
    def refresh_prior(self) -> None:
        """Copy the current encoder's weights into ``prior_encoder``."""
        for old, new in zip(self.prior_encoder.parameters(), self.encoder.parameters(), strict=True):
            old.copy_(new)

    def encode(self, x: SparseRows, *, noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` of the L2-normalised rows, without dropout (the training step adds its own noise)."""
        if noise:
            raise ValueError("RecVAE draws its noise in training_step (from the Trainer's generator)")
        return self.encoder(x, l2_normalize_values(x))

    def forward(self, x: SparseRows, *, noise: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits at z = mu, mu, logvar)``: what scoring uses."""
        mu, logvar = self.encode(x, noise=noise)
        return self.decoder(mu), mu, logvar


class RefreshPrior(Callback):
    """After the last encoder epoch of every cycle, copy the encoder into the composite prior's previous encoder.

    The copy happens in ``on_epoch_end``, before the Trainer saves that epoch's checkpoint, so the checkpoint
    holds the refreshed prior; the decoder epochs that follow leave the encoder unchanged, so the next encoder
    epochs see the encoder of the end of the previous encoder epochs, as in the authors' ``update_prior``.
    """

    def __init__(self, n_enc_epochs: int, n_dec_epochs: int):
        self.n_enc_epochs, self.cycle = n_enc_epochs, n_enc_epochs + n_dec_epochs

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if trainer.epoch % self.cycle == self.n_enc_epochs - 1:
            trainer.module.refresh_prior()


# ====================================================================== model
class RecVAE(_RowAutoencoder):
    r"""RecVAE: Mult-VAE with a new encoder, a composite prior, a user-dependent beta and alternating updates.

    Shenbin et al., "RecVAE: a New Variational Autoencoder for Top-N Recommendations with Implicit Feedback",
    WSDM 2020 (reference code: github.com/ilya-shenbin/RecVAE). For a batch of ``B`` user rows :math:`x_u`:

    .. math:: \mathcal{L} = \frac{1}{B}\sum_u \Bigl(-\sum_i x_{ui}\log\operatorname{softmax}(W z_u + b)_i
              + \gamma\,\lvert x_u\rvert \bigl[\log q_\phi(z_u \mid \tilde{x}_u)
              - \log p(z_u \mid \phi_{old}, x_u)\bigr]\Bigr),
              \qquad z_u = \mu_\phi(\tilde{x}_u) + \sigma_\phi(\tilde{x}_u)\odot\epsilon

    - encoder :math:`q_\phi` (:class:`RecVAEEncoder`: ``encoder_layers`` densely connected swish + layer-norm
      blocks of ``hidden_dim``, then ``latent_dim`` means and log-variances) on
      :math:`\tilde{x}_u = \operatorname{dropout}_p(x_u / \lVert x_u\rVert_2)`;
    - decoder: one linear layer, multinomial likelihood (:func:`multinomial_nll`);
    - composite prior (:func:`composite_prior_log_density`), per latent coordinate:
      :math:`w_1\mathcal{N}(0, 1) + w_2\, q_{\phi_{old}}(z \mid x_u) + w_3\mathcal{N}(0, e^{10})` with
      ``prior_weights`` :math:`(3/20, 3/4, 1/10)` and :math:`\phi_{old}` the encoder as it was after the previous
      encoder epochs (read on the un-dropped input);
    - the KL term is the one-sample estimate :math:`\log q - \log p` at :math:`z_u` (summed over coordinates)
      weighted by the user-dependent :math:`\beta_u = \gamma\,\lvert x_u\rvert`, :math:`\lvert x_u\rvert` the sum
      of the row's values (its number of items on 0/1 data);
    - alternating updates: ``n_enc_epochs`` epochs stepping the encoder's Adam (dropout ``p``), then
      ``n_dec_epochs`` epochs stepping the decoder's Adam on the reconstruction term alone (no dropout, ``z``
      still sampled, the encoder under ``no_grad``): ``Cycle([(0,)] * n_enc + [(1,)] * n_dec, unit="epoch")``.
      After the last encoder epoch of a cycle the :class:`RefreshPrior` callback copies the encoder into the
      prior's frozen copy (a submodule: checkpoints resume exactly).

    ``max_epochs`` and ``patience`` count Trainer epochs (each one encoder or one decoder epoch): the authors'
    50 epochs of 3 + 1 on ML-20M are ``max_epochs=200`` here; validation runs after every Trainer epoch. The
    noise (dropout mask, reparameterisation) is drawn from the Trainer's per-epoch generator. Scores are the
    decoder's logits at :math:`z = \mu`, so new users fold in from their history; a saved model omits the
    training-only prior copy.
    """

    name: ClassVar[str] = "recvae"
    variational: ClassVar[bool] = True
    normalize_input: ClassVar[bool] = True

    hidden_dim: int
    latent_dim: int
    encoder_layers: int
    gamma: float
    prior_weights: tuple[float, float, float]
    wide_logvar: float
    n_enc_epochs: int
    n_dec_epochs: int

    def __init__(
        self,
        *,
        hidden_dim: PositiveInt = 600,
        latent_dim: PositiveInt = 200,
        encoder_layers: PositiveInt = 5,
        dropout: DropoutRate = 0.5,
        gamma: NonNegative = 0.005,
        prior_weights: PriorWeights = (0.15, 0.75, 0.1),
        wide_logvar: LogVariance = 10.0,
        n_enc_epochs: PositiveInt = 3,
        n_dec_epochs: PositiveInt = 1,
        max_epochs: PositiveInt = 200,
        batch_size: PositiveInt = 500,
        learning_rate: LearningRate = 5e-4,
        patience: NonNegativeInt = 20,
        monitor: Monitor = "ndcg@100",
        grad_clip: GradClip = None,
        seed: Seed = 0,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------ training
    def build_module(self) -> RecVAENet:
        return RecVAENet(len(self.items_), self.hidden_dim, self.latent_dim, self.encoder_layers)

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam over the encoder (index 0) and Adam over the decoder (index 1), both at ``learning_rate``."""
        return [adam(module.encoder, self.learning_rate), adam(module.decoder, self.learning_rate)]

    def optimizer_schedule(self) -> Schedule:
        return Cycle([(0,)] * self.n_enc_epochs + [(1,)] * self.n_dec_epochs, unit="epoch")

    def extra_callbacks(self) -> list[Callback]:
        return [RefreshPrior(self.n_enc_epochs, self.n_dec_epochs)]

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        values = l2_normalize_values(batch)
        if ctx.optimizer_index == 1:  # decoder epoch: reconstruction only, no dropout, encoder fixed
            with torch.no_grad():
                mu, logvar = module.encoder(batch, values)
                z = self._sample(mu, logvar, ctx)
            nll = multinomial_nll(module.decoder(z), batch)
            return {"loss": nll, "nll": nll.detach()}
        if self.dropout > 0:
            keep = torch.rand(values.shape, generator=ctx.generator, device=values.device) >= self.dropout
            dropped = values * keep / (1.0 - self.dropout)
        else:
            dropped = values
        mu, logvar = module.encoder(batch, dropped)
        z = self._sample(mu, logvar, ctx)
        nll = multinomial_nll(module.decoder(z), batch)
        with torch.no_grad():
            prior_mu, prior_logvar = module.prior_encoder(batch, values)
        log_q = gaussian_log_density(z, mu, logvar).sum(dim=1)
        log_p = composite_prior_log_density(z, prior_mu, prior_logvar, self.prior_weights, self.wide_logvar).sum(dim=1)
        row_sums = torch.zeros(batch.n_rows, dtype=batch.values.dtype, device=batch.values.device)
        row_sums.index_add_(0, batch.row, batch.values)
        kl = ((log_q - log_p) * (self.gamma * row_sums)).mean()
        return {"loss": nll + kl, "nll": nll.detach(), "kl": kl.detach()}

    @staticmethod
    def _sample(mu: torch.Tensor, logvar: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        eps = torch.randn(mu.shape, generator=ctx.generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        """The weights without the prior's copy of the encoder (training only)."""
        return {k: v for k, v in super()._state().items() if not k.startswith("module.prior_encoder.")}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module_ = self.build_module()
        weights = {k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")}
        missing, unexpected = self.module_.load_state_dict(weights, strict=False)
        wrong = [k for k in missing if not k.startswith("prior_encoder.")] + list(unexpected)
        if wrong:
            raise ValueError(f"saved RecVAE weights do not match the network: {', '.join(wrong)}")
        self.module_.refresh_prior()
        self.module_.to(self.device_).eval()
