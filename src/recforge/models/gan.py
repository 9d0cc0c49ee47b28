r"""CFGAN (Chae, Kang, Kim & Lee, CIKM 2018): a conditional GAN whose generator writes a user's purchase vector.

:class:`CFGAN` is trained by the one Trainer with two optimisers -- the discriminator's (index 0) and the
generator's (index 1) -- and a schedule that alternates them (:mod:`recforge.training.schedules`); each
``training_step`` reads ``ctx.optimizer_index`` to compute the loss of the network whose turn it is. Scores are
the generator's output for the user's history, so new users fold in for free.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import pydantic
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from recforge.data.interactions import Interactions
from recforge.data.samplers import UserRows, binary_rows
from recforge.models.autoencoders.networks import SparseInputLinear
from recforge.models.base import csr_to_torch
from recforge.models.neural import Monitor, TorchRecommender
from recforge.models.optim import adam
from recforge.models.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from recforge.training.schedules import Cycle, Schedule
from recforge.training.trainer import Losses, StepContext

__all__ = ["CFGAN", "CFGANModule"]

#: A sampling rate: the share of a user's unobserved items drawn as negatives.
Rate = Annotated[float, pydantic.Field(ge=0.0, le=1.0, allow_inf_nan=False)]
HiddenSizes = Annotated[tuple[PositiveInt, ...], pydantic.Field(min_length=1)]

#: Optimiser indices: the discriminator steps as optimiser 0, the generator as optimiser 1.
DISCRIMINATOR, GENERATOR = 0, 1


def _uniform_bias_(layer: nn.Module) -> None:
    nn.init.uniform_(layer.bias, -0.01, 0.01)


def _dense_layer(d_in: int, d_out: int) -> nn.Linear:
    """``nn.Linear`` with a Xavier-uniform weight and a U(-0.01, 0.01) bias (the authors' initialisation)."""
    layer = nn.Linear(d_in, d_out)
    nn.init.xavier_uniform_(layer.weight)
    _uniform_bias_(layer)
    return layer


class CFGANModule(nn.Module):
    r"""The generator :math:`G(c_u)` (items -> ``g_hidden`` -> items, sigmoid units, a purchase vector in
    :math:`(0, 1)^n`) and the discriminator :math:`D(r, c_u)` ([condition, vector] -> ``d_hidden`` -> 1 logit,
    sigmoid hidden units). Both read the condition, a sparse history row, through a sparse-input first layer."""

    def __init__(self, n_items: int, g_hidden: Sequence[int], d_hidden: Sequence[int]):
        super().__init__()
        self.g_input = SparseInputLinear(n_items, g_hidden[0])
        _uniform_bias_(self.g_input)
        g_layers: list[nn.Module] = [nn.Sigmoid()]
        for a, b in itertools.pairwise(g_hidden):
            g_layers += [_dense_layer(a, b), nn.Sigmoid()]
        g_layers += [_dense_layer(g_hidden[-1], n_items), nn.Sigmoid()]
        self.g_body = nn.Sequential(*g_layers)
        self.d_input = SparseInputLinear(n_items, d_hidden[0], n_dense=n_items)
        _uniform_bias_(self.d_input)
        d_layers: list[nn.Module] = [nn.Sigmoid()]
        for a, b in itertools.pairwise(d_hidden):
            d_layers += [_dense_layer(a, b), nn.Sigmoid()]
        d_layers.append(_dense_layer(d_hidden[-1], 1))
        self.d_body = nn.Sequential(*d_layers)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.g_input.parameters(), *self.g_body.parameters()]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.d_input.parameters(), *self.d_body.parameters()]

    def generate(self, condition: torch.Tensor) -> torch.Tensor:
        """:math:`G(c_u)`: the purchase vectors (rows x items) of sparse CSR condition rows."""
        return self.g_body(self.g_input(condition))

    def discriminate(self, vectors: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The logit of :math:`D(r, c_u)` (one per row): is ``vectors`` a real purchase vector of the condition?"""
        return self.d_body(self.d_input(condition, vectors))[:, 0]

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.generate(condition)


def sample_unobserved(observed: torch.Tensor, rate: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 mask (like ``observed``, rows x items) of ``floor(rate * n_unobserved)`` items drawn uniformly without
    replacement among each row's unobserved items (``observed`` is a 0/1 float tensor)."""
    if rate <= 0.0:
        return torch.zeros_like(observed)
    keys = torch.rand(observed.shape, generator=generator, device=observed.device, dtype=observed.dtype)
    keys = keys.masked_fill_(observed > 0, 2.0)  # observed items sort last
    n_pick = torch.floor(rate * (observed.shape[1] - observed.sum(1))).long()
    ordered = torch.sort(keys, dim=1).values
    threshold = ordered.gather(1, (n_pick - 1).clamp_min(0)[:, None])
    return ((keys <= threshold) & (n_pick[:, None] > 0)).to(observed.dtype)


class CFGAN(TorchRecommender):
    r"""CFGAN: Chae, Kang, Kim & Lee (2018), *CFGAN: A Generic Collaborative Filtering Framework based on
    Generative Adversarial Networks*, CIKM, with both of its schemes, zero-reconstruction and partial masking
    ("ZP").

    The condition :math:`c_u` is the user's binary history row :math:`e_u` (1 on the observed items; values are
    ignored). The generator produces :math:`\hat r_u = G(c_u) \in (0, 1)^n`; the discriminator reads
    :math:`D(r, c_u) = \sigma(f(r, c_u))`. With :math:`k_u` the 0/1 indicator of :math:`s_{pm}` of the user's
    unobserved items and :math:`N^{zr}_u` another :math:`s_{zr}` of them, both drawn uniformly anew for each
    batch (negative items, the paper's :math:`N_u^{PM}(t)` and :math:`N_u^{ZR}(t)`):

    .. math::
        J^D = -\frac1B \sum_u \Bigl[\log D(e_u, c_u) + \log\bigl(1 - D(\hat r_u \odot (e_u + k_u), c_u)\bigr)\Bigr]
            + \frac{\lambda_D}{2} \lVert \theta_D \rVert^2

        J^G = -\frac1B \sum_u \Bigl[\log D(\hat r_u \odot (e_u + k_u), c_u)
            - \alpha \sum_{j \in N^{zr}_u} (0 - \hat r_{uj})^2\Bigr] + \frac{\lambda_G}{2} \lVert \theta_G \rVert^2

    (``s_pm``, ``s_zr``, ``alpha``, ``d_l2`` = :math:`\lambda_D`, ``g_l2`` = :math:`\lambda_G`; the generator
    minimises the non-saturating :math:`-\log D` as in the authors' code; no noise input, as in the paper, since
    one most plausible vector per user is wanted). Partial masking lets the discriminator see the generated
    values of the sampled negatives, so the generator must keep them low, and zero-reconstruction pulls the
    generated values of other negatives towards 0: without them the generator may output 1 everywhere (the
    masked vector would then equal the real one).

    **Alternation**, through the Trainer's schedule (:meth:`optimizer_schedule`): ``alternate="epoch"`` (default,
    as the authors' code) runs ``d_steps`` whole epochs of discriminator updates, then ``g_steps`` epochs of
    generator updates (``Cycle.ratio(d_steps, g_steps, unit="epoch")``); ``alternate="batch"`` runs ``d_steps``
    discriminator batches then ``g_steps`` generator batches (Goodfellow et al.'s k:1 mini-batch loop). An epoch
    is one pass over the users with history in shuffled batches of ``batch_size``; ``max_epochs`` counts both
    kinds, so ``max_epochs=6 * 250`` is 250 cycles of the ML-100K setting. Adam at ``learning_rate`` (generator)
    and ``d_learning_rate`` (discriminator; ``None``: the same). With ``valid``, ``monitor`` is computed after every
    epoch (the generator changes only in its own epochs: choose ``patience`` as a number of cycles times
    ``d_steps + g_steps``).

    **Scores**: :math:`\hat r_u = G(c_u)` for the history row, seen items included (the ranking removes them);
    they depend on the history alone, so a new user's history is scored exactly like a known user's.

    Defaults are the authors' ML-100K setting (one hidden layer of 400 units in G and 125 in D, learning rates
    1e-4, ``g_l2`` 1e-3, ``d_l2`` 0, ``g_steps`` 4 and ``d_steps`` 2, :math:`s_{zr} = s_{pm} = 0.7`,
    :math:`\alpha = 0.03`; their code's batch sizes are 32 for G and 64 for D, here one ``batch_size`` for both).
    The authors' ML-100K run is item-based (a generator per item over users); this one is the paper's
    user-based formulation, which scores new users from their history.
    """

    name: ClassVar[str] = "cfgan"
    folds_in_from_history: ClassVar[bool] = True

    g_hidden: tuple[int, ...]
    d_hidden: tuple[int, ...]
    s_zr: float
    s_pm: float
    alpha: float
    g_steps: int
    d_steps: int
    g_l2: float
    d_l2: float
    d_learning_rate: float | None
    alternate: Literal["epoch", "batch"]

    def __init__(
        self,
        *,
        g_hidden: HiddenSizes = (400,),
        d_hidden: HiddenSizes = (125,),
        s_zr: Rate = 0.7,
        s_pm: Rate = 0.7,
        alpha: NonNegativeFloat = 0.03,
        g_steps: PositiveInt = 4,
        d_steps: PositiveInt = 2,
        alternate: Literal["epoch", "batch"] = "epoch",
        g_l2: NonNegativeFloat = 1e-3,
        d_l2: NonNegativeFloat = 0.0,
        learning_rate: PositiveFloat = 1e-4,
        d_learning_rate: PositiveFloat | None = None,
        batch_size: PositiveInt = 32,
        max_epochs: PositiveInt = 1500,
        patience: NonNegativeInt = 120,
        monitor: Monitor = "ndcg@100",
        seed: int = 0,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        self._sampler = UserRows(train.binary, batch_size=self.batch_size)

    def _release(self) -> None:
        self._sampler = None

    def build_module(self) -> nn.Module:
        return CFGANModule(len(self.items_), self.g_hidden, self.d_hidden)

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam for the discriminator (optimiser 0) and for the generator (optimiser 1); L2 terms are in the losses."""
        assert isinstance(module, CFGANModule)
        d_lr = self.d_learning_rate if self.d_learning_rate is not None else self.learning_rate
        return [
            adam(module.discriminator_parameters(), d_lr),
            adam(module.generator_parameters(), self.learning_rate),
        ]

    def optimizer_schedule(self) -> Schedule:
        """``d_steps`` discriminator epochs (or batches), then ``g_steps`` generator ones, repeated."""
        return Cycle.ratio(self.d_steps, self.g_steps, unit=self.alternate)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled batches of history rows: (sparse CSR condition, dense 0/1 vector), on ``device``."""
        for _, rows in self._sampler(rng):
            condition = csr_to_torch(rows, device)
            yield condition, condition.to_dense()

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        condition, real = batch
        assert isinstance(module, CFGANModule)
        pm = sample_unobserved(real, self.s_pm, ctx.generator)
        if ctx.optimizer_index == DISCRIMINATOR:
            with torch.no_grad():
                fake = module.generate(condition) * (real + pm)
            d_real = module.discriminate(real, condition)
            d_fake = module.discriminate(fake, condition)
            adversarial = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()  # -log D(real) - log(1 - D(fake))
            loss = adversarial
            if self.d_l2:
                loss = loss + 0.5 * self.d_l2 * _squares(module.discriminator_parameters())
            return {"loss": loss, "d_adversarial": adversarial.detach()}
        generated = module.generate(condition)
        d_fake = module.discriminate(generated * (real + pm), condition)
        adversarial = F.softplus(-d_fake).mean()  # -log D(fake), the non-saturating generator loss
        zr = sample_unobserved(real, self.s_zr, ctx.generator)
        zero_reconstruction = (generated.square() * zr).sum(1).mean()
        loss = adversarial + self.alpha * zero_reconstruction
        if self.g_l2:
            loss = loss + 0.5 * self.g_l2 * _squares(module.generator_parameters())
        return {
            "loss": loss,
            "g_adversarial": adversarial.detach(),
            "zero_reconstruction": zero_reconstruction.detach(),
        }

    # ------------------------------------------------------------------ scores
    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """:math:`G(c_u)` for the binary history rows (``users`` is not needed: scores fold in)."""
        history = self._check_history(history, users)
        binary = binary_rows(history)
        module = self.module_
        assert isinstance(module, CFGANModule)
        with torch.no_grad():
            return module.generate(csr_to_torch(binary, self.device_)).float()


def _squares(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([p.square().sum() for p in params]).sum()
