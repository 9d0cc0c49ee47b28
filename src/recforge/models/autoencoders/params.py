"""The hyper-parameter types of the autoencoder family: ``Annotated`` constraints read by ``param_specs``.

Every model still lists its hyper-parameters in its own ``__init__`` (the scikit-learn rule); these
aliases only name the constraints that the family's signatures share.
"""

from __future__ import annotations

from typing import Annotated

import pydantic

PositiveInt = Annotated[int, pydantic.Field(ge=1)]
NonNegativeInt = Annotated[int, pydantic.Field(ge=0)]
HiddenDims = Annotated[tuple[PositiveInt, ...], pydantic.Field(min_length=1)]
DropoutRate = Annotated[float, pydantic.Field(ge=0.0, lt=1.0)]
NonNegative = Annotated[float, pydantic.Field(ge=0.0, allow_inf_nan=False)]
LearningRate = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)]
Seed = Annotated[int, pydantic.Field(ge=0)]
GradClip = Annotated[float, pydantic.Field(gt=0.0, allow_inf_nan=False)] | None
