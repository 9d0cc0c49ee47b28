"""How a model declares its hyper-parameters: typed keyword arguments, written once per family.

A model's hyper-parameters are keyword arguments of its ``__init__`` (``EASE(l2=100)``: the scikit-learn rule),
with their constraints as ``Annotated`` types that :meth:`~recforge.models.base.BaseRecommender.validate_params`
checks. A model with a short list writes its ``__init__`` by hand (storing the arguments with
``self._store_params(locals())``). A family whose members share most of their hyper-parameters declares them
once, as the fields of a :func:`hyperparameters` class that its members inherit and extend::

    @hyperparameters
    class AutoencoderParams:
        max_epochs: PositiveInt = 100
        learning_rate: PositiveFloat = 1e-3

    @hyperparameters
    class MultiVAE(AutoencoderParams, TorchRecommender):
        beta: NonNegativeFloat = 0.2     # its own
        max_epochs: PositiveInt = 200    # a different default

The generated ``__init__`` takes every field as a keyword argument (inherited ones first), so
``inspect.signature``, ``get_params``, ``models info`` and editors see the same explicit list.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, TypeVar, dataclass_transform

import pydantic

__all__ = [
    "NonNegativeFloat",
    "NonNegativeInt",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "hyperparameters",
]

PositiveInt = Annotated[int, pydantic.Field(ge=1)]
NonNegativeInt = Annotated[int, pydantic.Field(ge=0)]
PositiveFloat = Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, pydantic.Field(ge=0, lt=1, allow_inf_nan=False)]

T = TypeVar("T", bound=type)


@dataclass_transform(kw_only_default=True)
def hyperparameters(cls: T) -> T:
    """Make the class's annotated fields (and those of the :func:`hyperparameters` classes it inherits) keyword
    arguments of a generated ``__init__`` that stores them; equality, hashing and ``repr`` stay the model's own."""
    return dataclasses.dataclass(kw_only=True, eq=False, repr=False)(cls)  # type: ignore[return-value]
