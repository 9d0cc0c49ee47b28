"""Each Trainer callback on its own, driven by hand-made logs."""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from torch import nn

from recforge.training.callbacks import BetaAnnealing, Checkpoint, EarlyStopping, History, Progress
from recforge.training.trainer import StepContext


def fake_trainer(module=None):
    return SimpleNamespace(should_stop=False, epoch=0, max_epochs=10, module=module or nn.Linear(2, 1))


def feed(cb, trainer, values, key="valid_ndcg@100"):
    logs_seen = []
    for epoch, v in enumerate(values):
        trainer.epoch = epoch
        logs = {key: v}
        cb.on_epoch_end(trainer, logs)
        logs_seen.append(logs)
        if trainer.should_stop:
            break
    return logs_seen


def test_early_stopping_counts_patience_and_stops():
    cb, trainer = EarlyStopping(patience=2), fake_trainer()
    logs = feed(cb, trainer, [0.1, 0.3, 0.2, 0.25, 0.29, 0.5])
    assert [entry["patience"] for entry in logs] == [0, 0, 1, 2, 3]
    assert trainer.should_stop and cb.best == 0.3


def test_early_stopping_min_mode_and_min_delta():
    cb, trainer = EarlyStopping("valid_loss", mode="min", patience=0, min_delta=0.1), fake_trainer()
    feed(cb, trainer, [1.0, 0.95], key="valid_loss")  # 0.05 better is not better than min_delta
    assert trainer.should_stop and cb.best == 1.0


def test_early_stopping_state_round_trip_and_errors():
    cb = EarlyStopping(patience=3)
    feed(cb, fake_trainer(), [0.5, 0.4])
    other = EarlyStopping(patience=3)
    other.load_state_dict(cb.state_dict())
    assert (other.best, other.wait) == (0.5, 1)
    with pytest.raises(KeyError, match="valid_ndcg@100"):
        cb.on_epoch_end(fake_trainer(), {"valid_recall@20": 0.1})
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)


def test_nan_never_counts_as_an_improvement():
    cb = EarlyStopping(patience=5)
    feed(cb, fake_trainer(), [math.nan, 0.2, math.nan])
    assert cb.best == 0.2 and cb.wait == 1


def test_checkpoint_restores_the_best_weights():
    module = nn.Linear(2, 1)
    trainer, cb = fake_trainer(module), Checkpoint()
    snapshots = []
    for epoch, value in enumerate([0.1, 0.5, 0.3]):
        with torch.no_grad():
            module.weight.fill_(float(epoch))
        snapshots.append(module.weight.clone())
        trainer.epoch = epoch
        logs = {"valid_ndcg@100": value}
        cb.on_epoch_end(trainer, logs)
    assert logs["best_epoch"] == 1
    cb.on_fit_end(trainer)
    assert torch.equal(module.weight, snapshots[1])


def test_history_columns_and_state():
    h = History()
    feed(h, fake_trainer(), [0.1, 0.2])
    assert h.column("valid_ndcg@100") == [0.1, 0.2]
    assert math.isnan(h.column("missing")[0])
    other = History()
    other.load_state_dict(h.state_dict())
    assert other.epochs == h.epochs


def test_beta_annealing_is_linear_then_constant():
    cb = BetaAnnealing(beta=0.2, anneal_steps=100)
    ctx = StepContext()
    for step, expected in [(0, 0.0), (50, 0.1), (100, 0.2), (500, 0.2)]:
        ctx.global_step = step
        cb.on_step_start(fake_trainer(), ctx)
        assert ctx.values["beta"] == pytest.approx(expected)
    assert BetaAnnealing(beta=0.7).value_at(3) == 0.7


def test_progress_is_silent_off_terminal():
    buffer = io.StringIO()
    cb = Progress("valid_ndcg@100", console=Console(file=buffer, force_terminal=False))
    trainer = fake_trainer()
    cb.on_fit_start(trainer)
    cb.on_epoch_end(trainer, {"train_loss": 1.0, "valid_ndcg@100": 0.3})
    cb.on_fit_end(trainer)
    assert buffer.getvalue() == ""
