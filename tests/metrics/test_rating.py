"""Tests for recforge.metrics.rating."""

from __future__ import annotations

import doctest
import math

import pytest
import torch

from recforge.metrics import MAE, RMSE, RoundedAccuracy, mae, rmse, rounded_accuracy
from recforge.metrics import rating as rating_mod

PRED = torch.tensor([1.0, 2.5, 3.0, 6.0])
TARGET = torch.tensor([1.0, 3.0, 5.0, 5.0])
# errors pred - target: [0, -0.5, -2, 1]; squares [0, .25, 4, 1] sum 5.25; abs sum 3.5


def test_rmse_mae_hand() -> None:
    assert rmse(PRED, TARGET).item() == pytest.approx(math.sqrt(5.25 / 4))
    assert mae(PRED, TARGET).item() == pytest.approx(3.5 / 4)
    assert rmse(PRED, TARGET).dtype == torch.float32 and rmse(PRED, TARGET).dim() == 0


def test_rounded_accuracy_hand() -> None:
    # floor(x + .5): [1, 3, 3, 6] vs [1, 3, 5, 5] -> 2/4 (banker's rounding would give 2.5 -> 2)
    assert rounded_accuracy(PRED, TARGET).item() == pytest.approx(0.5)
    # clip to [1, 5] first: 6 -> 5 hits -> 3/4
    assert rounded_accuracy(PRED, TARGET, low=1, high=5).item() == pytest.approx(0.75)
    # half-up on other halves: 0.5 -> 1, 3.5 -> 4, 4.49 -> 4; integer targets accepted
    pred = torch.tensor([0.5, 3.5, 4.49, 0.2])
    target = torch.tensor([1, 4, 4, 1])
    assert rounded_accuracy(pred, target).item() == pytest.approx(0.75)
    # low clip: 0.2 -> 1 -> hit
    assert rounded_accuracy(pred, target, low=1.0).item() == pytest.approx(1.0)


def test_shape_mismatch_and_empty() -> None:
    for fn in (rmse, mae, rounded_accuracy):
        with pytest.raises(ValueError, match=r"\(4,\).*\(3,\)"):
            fn(PRED, TARGET[:3])
        with pytest.raises(ValueError, match="1-D"):
            fn(PRED.reshape(2, 2), TARGET.reshape(2, 2))
        assert math.isnan(fn(torch.zeros(0), torch.zeros(0)).item())


def test_objects() -> None:
    assert RMSE().name == "rmse" and MAE().name == "mae" and RoundedAccuracy().name == "rounded_accuracy"
    assert RMSE()(PRED, TARGET).item() == pytest.approx(math.sqrt(5.25 / 4))
    assert MAE()(PRED, TARGET).item() == pytest.approx(0.875)
    assert RoundedAccuracy(low=1, high=5)(PRED, TARGET).item() == pytest.approx(0.75)


def test_docstring_examples() -> None:
    result = doctest.testmod(rating_mod, extraglobs={"torch": torch})
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))],
)
def test_device(device: str) -> None:
    p, t = PRED.to(device), TARGET.to(device)
    for fn in (rmse, mae, rounded_accuracy):
        out = fn(p, t)
        assert out.device.type == device
        assert out.item() == pytest.approx(fn(PRED, TARGET).item())
