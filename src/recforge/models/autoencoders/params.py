"""The hyper-parameters of the autoencoder family, declared once: their constraint types and the fields every
member shares (:func:`~recforge.models.params.hyperparameters`). Each model adds its own fields and overrides
the defaults that differ; its ``__init__`` still takes every hyper-parameter as a keyword argument.
"""

from __future__ import annotations

from typing import Annotated

import pydantic

from recforge.models.neural import Monitor
from recforge.models.params import NonNegativeInt, PositiveInt, hyperparameters

HiddenDims = Annotated[tuple[PositiveInt, ...], pydantic.Field(min_length=1)]
DropoutRate = Annotated[float, pydantic.Field(ge=0.0, lt=1.0)]
NonNegative = Annotated[float, pydantic.Field(ge=0.0, allow_inf_nan=False)]
LearningRate = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]
Seed = Annotated[int, pydantic.Field(ge=0)]
GradClip = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)] | None


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
