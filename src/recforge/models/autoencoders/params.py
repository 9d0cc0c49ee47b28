"""The hyper-parameters of the autoencoder family, declared once: their constraint types and the fields every
member shares (:func:`~recforge.models.params.hyperparameters`). Each model adds its own fields and overrides
the defaults that differ; its ``__init__`` still takes every hyper-parameter as a keyword argument.
"""

from __future__ import annotations

import math
from typing import Annotated

import pydantic

from recforge import distributed
from recforge.models.neural import Monitor
from recforge.models.params import NonNegativeInt, PositiveInt, hyperparameters
from recforge.training.callbacks import BetaAnnealing

HiddenDims = Annotated[tuple[PositiveInt, ...], pydantic.Field(min_length=1)]
DropoutRate = Annotated[float, pydantic.Field(ge=0.0, lt=1.0)]
NonNegative = Annotated[float, pydantic.Field(ge=0.0, allow_inf_nan=False)]
LearningRate = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]
Seed = Annotated[int, pydantic.Field(ge=0)]
GradClip = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)] | None


#: With ``anneal_steps = None`` (Mult-VAE's and SVAE's default) the KL weight reaches its cap ``beta`` after this
#: share of the planned optimiser updates (``max_epochs`` x updates per epoch).
ANNEAL_FRACTION = 0.8


def derived_anneal_steps(beta: float, planned_updates: int) -> int:
    r"""``anneal_steps`` of the capped schedule :math:`\beta_t = \min(\beta, t / \text{anneal\_steps})` such that
    :math:`\beta_t` reaches ``beta`` after :data:`ANNEAL_FRACTION` of ``planned_updates``.

    Why derived: vae_cf's fixed 200,000 updates fit ML-20M (234 updates an epoch, 200 epochs: the cap 0.2 is reached
    after 40,000 of 46,800 updates, 85%), but on ML-100K (2 updates an epoch) beta never exceeds 0.002 in 200
    epochs: the model trains as a plain Mult-DAE without dropout noise on the code. The derived value gives
    0.8 x 46,800 / 0.2 = 187,200 on ML-20M (close to vae_cf's 200,000) and 1,600 on ML-100K. 0 when ``beta`` is 0.
    """
    if beta <= 0:
        return 0
    return max(1, math.ceil(ANNEAL_FRACTION * max(planned_updates, 1) / beta))


def annealing(beta: float, anneal_steps: int | None, batches_per_epoch_x_epochs: int) -> BetaAnnealing:
    """The capped KL schedule of a variational autoencoder: ``anneal_steps`` as given, or derived (``None``) from
    the planned updates (``max_epochs`` x batches per epoch, divided by the processes: one update consumes a batch
    of each); the derived value is logged when training starts."""
    if anneal_steps is not None:
        return BetaAnnealing(beta, anneal_steps, schedule="capped")
    processes = max(1, distributed.world().size)
    planned = -(-batches_per_epoch_x_epochs // processes)
    steps = derived_anneal_steps(beta, planned)
    note = (
        f"beta annealing: anneal_steps = {steps} (derived: beta reaches {beta:g} after {ANNEAL_FRACTION:.0%} of the "
        f"{planned} planned updates; set model.anneal_steps for a fixed schedule)"
    )
    return BetaAnnealing(beta, steps, schedule="capped", note=note)


@hyperparameters
class AutoencoderParams:
    """Training hyper-parameters of every autoencoder: ``l2`` (weight penalty, see
    :mod:`~recforge.models.autoencoders.losses`), epochs, batch, Adam's step, early stopping on ``monitor``,
    gradient clipping and the seed."""

    l2: NonNegative = 0.0
    max_epochs: PositiveInt = 100
    batch_size: PositiveInt = 500
    learning_rate: LearningRate = 1e-3
    patience: NonNegativeInt = 20
    monitor: Monitor = "ndcg@100"
    grad_clip: GradClip = None
    seed: Seed = 0


@hyperparameters
class RowParams(AutoencoderParams):
    """The user-row autoencoders' network: hidden layer sizes (the decoder mirrors them) and input dropout."""

    hidden_dims: HiddenDims = (600, 200)
    dropout: DropoutRate = 0.0
