"""Rating-prediction metrics on 1-D torch tensors (CPU or GPU).

Every function takes ``pred`` and ``target`` of identical 1-D shape (ValueError otherwise), computes in
float64 and returns a 0-dim float32 tensor on the input device (NaN for empty input).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["MAE", "RMSE", "RoundedAccuracy", "mae", "rmse", "rounded_accuracy"]


def _check(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(
            f"pred and target must be 1-D tensors of the same shape, got pred {tuple(pred.shape)} "
            f"and target {tuple(target.shape)}"
        )
    return pred.to(torch.float64), target.to(torch.float64)


def rmse(pred: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error: sqrt( (1/n) * sum_i (pred_i - target_i)^2 ).

    >>> rmse(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]))
    tensor(1.)
    """
    p, t = _check(pred, target)
    return torch.sqrt(torch.mean((p - t) ** 2)).to(torch.float32)


def mae(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error: (1/n) * sum_i |pred_i - target_i|.

    >>> mae(torch.tensor([1.0, 3.5]), torch.tensor([2.0, 2.0]))
    tensor(1.2500)
    """
    p, t = _check(pred, target)
    return torch.mean((p - t).abs()).to(torch.float32)


def rounded_accuracy(pred: Tensor, target: Tensor, *, low: float | None = None, high: float | None = None) -> Tensor:
    """Fraction of predictions whose rounded value equals the target rating ("hit accuracy" of rounded
    predicted ratings, as in the Goodreads notebook):

        acc = (1/n) * sum_i 1[ floor(clip(pred_i, low, high) + 0.5) == target_i ]

    Rounding is half-up, floor(x + 0.5) (so 2.5 -> 3 and -0.5 -> 0), NOT banker's rounding.
    ``low`` / ``high`` clip before rounding when given. Meant for integer rating scales: a
    non-integer target (e.g. 3.5 stars) can never be hit.

    >>> rounded_accuracy(torch.tensor([2.5, 3.4, 6.2]), torch.tensor([3, 4, 5]), high=5)
    tensor(0.6667)
    """
    p, t = _check(pred, target)
    if low is not None or high is not None:
        p = p.clamp(min=low, max=high)
    hit = torch.floor(p + 0.5) == t
    return hit.to(torch.float64).mean().to(torch.float32)


@dataclass(frozen=True)
class RMSE:
    """Object form of :func:`rmse`; name "rmse"."""

    @property
    def name(self) -> str:
        return "rmse"

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return rmse(pred, target)


@dataclass(frozen=True)
class MAE:
    """Object form of :func:`mae`; name "mae"."""

    @property
    def name(self) -> str:
        return "mae"

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return mae(pred, target)


@dataclass(frozen=True)
class RoundedAccuracy:
    """Object form of :func:`rounded_accuracy` with optional clipping bounds; name "rounded_accuracy"."""

    low: float | None = None
    high: float | None = None

    @property
    def name(self) -> str:
        return "rounded_accuracy"

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        return rounded_accuracy(pred, target, low=self.low, high=self.high)
