"""Callbacks of the Trainer: early stopping, best checkpoint, history, progress bar and log lines, beta annealing.

Each callback's ``state_dict`` holds what it needs to carry on after a resumed training.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

if TYPE_CHECKING:
    from recforge.training.trainer import StepContext, Trainer

Mode = Literal["min", "max"]


class Callback:
    """Hooks called by the Trainer; all optional."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (also after a resume)."""

    def on_step_start(self, trainer: Trainer, ctx: StepContext) -> None:
        """Before every optimiser step; may set scheduled values in ``ctx.values``."""

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        """After an epoch's training and validation; ``logs`` may be extended for later callbacks."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def _is_better(value: float, best: float | None, mode: Mode, min_delta: float) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _monitored(logs: dict[str, float], monitor: str) -> float:
    if monitor not in logs:
        raise KeyError(f"monitored value {monitor!r} is not logged; logged: {', '.join(logs)}")
    return logs[monitor]


#: The default improvement EarlyStopping asks for, relative to the best value so far (1e-4: 0.0001 of it).
RELATIVE_MIN_DELTA = 1e-4


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    ``min_delta`` is absolute when given; by default (``None``) it is relative, :data:`RELATIVE_MIN_DELTA` of the
    best value so far (an RMSE of 0.9 must improve by more than 0.00009), so that improvements in the sixth
    decimal do not keep a flat training alive. Logs the current patience counter as ``patience`` (0 right after
    an improvement).
    """

    def __init__(
        self,
        monitor: str = "valid_ndcg@100",
        *,
        mode: Mode = "max",
        patience: int = 10,
        min_delta: float | None = None,
    ):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if min_delta is not None and not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best: float | None = None
        self.wait = 0

    def threshold(self) -> float:
        """The improvement over the best value so far that counts (absolute ``min_delta``, else relative)."""
        if self.min_delta is not None:
            return self.min_delta
        return 0.0 if self.best is None else RELATIVE_MIN_DELTA * abs(self.best)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        value = _monitored(logs, self.monitor)
        if _is_better(value, self.best, self.mode, self.threshold()):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait > self.patience:
                trainer.should_stop = True
        logs["patience"] = float(self.wait)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]


class Checkpoint(Callback):
    """Keep the module weights of the best epoch by ``monitor``; restore them when training ends."""

    def __init__(self, monitor: str = "valid_ndcg@100", *, mode: Mode = "max"):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        value = _monitored(logs, self.monitor)
        if _is_better(value, self.best, self.mode, 0.0):
            self.best, self.best_epoch = value, trainer.epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in trainer.module.state_dict().items()}
        logs["best_epoch"] = float(self.best_epoch if self.best_epoch is not None else -1)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.best_state is not None:
            trainer.module.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.best_state = copy.copy(state["best_state"])


class History(Callback):
    """Every epoch's logs (train loss and its parts, validation metrics, patience): what plots read."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        self.epochs.append(dict(logs))

    def column(self, key: str) -> list[float]:
        return [e.get(key, math.nan) for e in self.epochs]

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": [dict(e) for e in self.epochs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs = [dict(e) for e in state["epochs"]]


class Progress(Callback):
    """A rich progress bar over epochs showing the loss and a metric; silent when not on a terminal."""

    def __init__(self, metric: str | None = None, *, console: Console | None = None):
        self.metric = metric
        self.console = console or Console(stderr=True)
        self._bar: RichProgress | None = None
        self._task: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self._bar = RichProgress(
            TextColumn("epoch {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not (self.console.is_terminal and trainer.world.is_main),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=trainer.max_epochs, completed=trainer.epoch, status="")

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if self._bar is None:
            return
        status = f"loss {logs.get('train_loss', math.nan):.4f}"
        if self.metric and self.metric in logs:
            status += f"  {self.metric} {logs[self.metric]:.4f}"
        self._bar.update(self._task, completed=trainer.epoch + 1, status=status)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class EpochLog(Callback):
    """One line per epoch to ``write`` (rank 0 only): what a run piped to a file or a log shows.

    ``epoch 3/100  train_loss 0.4123  valid_ndcg@100 0.3810  patience 1  (2.1s)``: the epoch, every logged
    training and validation value, the patience counter when early stopping runs, and the epoch's time.
    """

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self._t0 = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        if not trainer.world.is_main:
            return
        values = "  ".join(
            f"{k} {v:.4g}" for k, v in logs.items() if k.startswith(("train_", "valid_")) or k in ("patience", "beta")
        )
        now = time.perf_counter()
        self.write(f"epoch {trainer.epoch + 1}/{trainer.max_epochs}  {values}  ({now - self._t0:.1f}s)")
        self._t0 = now


class BetaAnnealing(Callback):
    """Linear KL-weight schedule: beta_t = beta * min(1, t / anneal_steps) (``schedule="scaled"``, default).

    ``schedule="capped"`` is the formula of Liang et al. (2018) as in dawenl/vae_cf:
    beta_t = min(beta, t / anneal_steps), i.e. the slope is 1 / anneal_steps whatever the cap ``beta``,
    which is reached after ``beta * anneal_steps`` updates. ``t`` counts optimiser updates over the
    whole training; with ``anneal_steps = 0`` beta is constant. The value is published as
    ``ctx.values["beta"]`` and logged per epoch.
    """

    def __init__(
        self,
        beta: float = 1.0,
        anneal_steps: int = 0,
        *,
        schedule: Literal["scaled", "capped"] = "scaled",
        note: str | None = None,
    ):
        if beta < 0 or anneal_steps < 0:
            raise ValueError("beta and anneal_steps must be >= 0")
        if schedule not in ("scaled", "capped"):
            raise ValueError(f"schedule must be 'scaled' or 'capped', got {schedule!r}")
        self.beta, self.anneal_steps, self.schedule = beta, anneal_steps, schedule
        self.current = beta if anneal_steps == 0 else 0.0
        self.note = note

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.note:
            trainer.log(self.note)

    def value_at(self, step: int) -> float:
        if self.anneal_steps == 0:
            return self.beta
        if self.schedule == "capped":
            return min(self.beta, step / self.anneal_steps)
        return self.beta * min(1.0, step / self.anneal_steps)

    def on_step_start(self, trainer: Trainer, ctx: StepContext) -> None:
        self.current = ctx.values["beta"] = self.value_at(ctx.global_step)

    def on_epoch_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        logs["beta"] = self.current
