"""THE epoch loop. Every neural model hands the Trainer a `TrainingTask`; none writes its own loop.

A task says how to build the network, its optimiser(s), how to cut an epoch into batches
and what one step's loss is. The Trainer owns everything else: the device, seeding, mixed
precision, gradient clipping, which optimisers step on which batch (:mod:`recforge.training.schedules`:
every one, k:1 cycles, alternating epochs, a switch at an epoch), per-epoch validation through an
injected callable, callbacks, resumable checkpoints (:mod:`recforge.training.checkpoints`) and several
processes (data-parallel, see below).

A task with no optimiser (``configure_optimizers`` returns an empty list) updates its module itself
in ``training_step`` -- a Gibbs sweep, an alternating least-squares half-step -- and returns figures
to log; the Trainer runs such steps without gradients and gives them the same seeding, validation,
callbacks and checkpoints.

Seeding is per epoch (``seed`` and the epoch number fix the batch order, ``ctx.generator`` and the torch RNG
that dropout draws from), so an interrupted run resumed from its last checkpoint ends with the same weights
as an uninterrupted one. The caller's global torch RNG state is restored when ``fit`` returns.

**Several processes** (``torch.distributed`` initialised, e.g. by ``torchrun``): every rank builds the same
epoch (same seed) and takes every ``size``-th batch, so one optimiser update consumes ``size`` consecutive
batches -- the update of one process with a ``size`` times larger batch. Gradients are averaged by
DistributedDataParallel (the step runs inside the wrapper's ``forward``, so a step may call any method of the
module and check its type); in a last, incomplete group the ranks without a batch contribute a zero-weighted
step and the others are re-weighted, so every rank applies the same update. Logged values are summed over
ranks; rank 0 alone validates (the figures are broadcast, so every rank's callbacks decide alike) and writes
checkpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from recforge import distributed
from recforge.training.callbacks import Callback
from recforge.training.checkpoints import CheckpointStore
from recforge.training.options import TrainingOptions, resolve_device
from recforge.training.schedules import EveryOptimizer, Schedule

__all__ = ["Losses", "StepContext", "Trainer", "TrainingTask", "resolve_device"]


@dataclass
class StepContext:
    """What a training step may read: where it is in training, and scheduled values (e.g. ``beta``).

    ``generator`` is a torch generator on the training device, seeded per epoch: a step that samples
    (noise, negatives, Gibbs draws) draws from it and stays reproducible and resumable.
    """

    epoch: int = 0
    global_step: int = 0
    optimizer_index: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    values: dict[str, float] = field(default_factory=dict)
    generator: torch.Generator | None = None


Losses = torch.Tensor | dict[str, torch.Tensor]
"""A step returns its loss, or a dict with ``"loss"`` (what is minimised) and named parts to log."""


class TrainingTask(Protocol):
    """What a model supplies to be trained by :class:`Trainer`."""

    def build_module(self) -> nn.Module: ...

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]: ...

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]: ...

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses: ...


Validate = Callable[[nn.Module], dict[str, float]]


class _Step(nn.Module):
    """The task's training step as a ``forward``, so that DistributedDataParallel sees (and syncs) it."""

    def __init__(self, module: nn.Module, task: TrainingTask):
        super().__init__()
        self.module = module
        self.task = task

    def forward(self, batch: Any, ctx: StepContext) -> Losses:
        return self.task.training_step(self.module, batch, ctx)


class Trainer:
    """Runs ``max_epochs`` epochs of a task's batches, with validation and callbacks.

    ``options`` holds the set-up (device, checkpoint folder and resume policy, extra callbacks, mixed
    precision, log sink, strategy); ``callbacks`` are the model's own (run before ``options.callbacks``).
    ``schedule`` picks the optimisers stepped on each batch (default: every one, in order). ``fingerprint``
    identifies the training (data, hyper-parameters) in its checkpoints, so a checkpoint of another training is
    never resumed.
    """

    def __init__(
        self,
        *,
        max_epochs: int,
        options: TrainingOptions | None = None,
        seed: int = 0,
        grad_clip: float | None = None,
        callbacks: Sequence[Callback] = (),
        validate: Validate | None = None,
        schedule: Schedule | None = None,
        fingerprint: str = "",
    ):
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.options = options or TrainingOptions()
        self.max_epochs = max_epochs
        self.device = resolve_device(self.options.device)
        self.seed = seed
        self.grad_clip = grad_clip
        self.amp = self.options.amp
        self.callbacks = [*callbacks, *self.options.callbacks]
        self.validate = validate
        self.schedule: Schedule = schedule or EveryOptimizer()
        self.world = distributed.world() if self.options.strategy != "single" else distributed.World()
        if self.options.strategy == "ddp" and not self.world.parallel:
            raise ValueError("strategy='ddp' needs an initialised torch.distributed group of 2+ processes (torchrun)")
        self.fingerprint = f"{fingerprint}/processes={self.world.size}/amp={self.amp}"
        folder = self.options.checkpoint_dir
        self.store = (
            CheckpointStore(folder, self.fingerprint, resume=self.options.resume, log=self.log)
            if folder is not None and self.world.is_main
            else None
        )
        self.should_stop = False
        self.epoch = 0
        self.global_step = 0
        #: why the last ``fit`` stopped: "early_stopping", "max_epochs" or "max_time" (None before a fit)
        self.stop_reason: str | None = None

    @property
    def checkpoint_dir(self) -> Path | None:
        return Path(self.options.checkpoint_dir) if self.options.checkpoint_dir is not None else None

    def log(self, message: str) -> None:
        """A line to the options' log sink (rank 0 only)."""
        if self.options.log is not None and self.world.is_main:
            self.options.log(message)

    # ------------------------------------------------------------------ the loop
    def fit(self, task: TrainingTask, module: nn.Module | None = None) -> nn.Module:
        """Train ``module`` (default: ``task.build_module()``) in place and return it."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            try:
                module = self._fit(task, module)
            except BaseException:
                if self.store is not None:
                    self.store.release()
                raise
        if self.store is not None:
            self.store.finish()
        return module

    def _fit(self, task: TrainingTask, module: nn.Module | None) -> nn.Module:
        module = (module if module is not None else task.build_module()).to(self.device)
        optimizers = list(task.configure_optimizers(module))
        if not optimizers and self.world.parallel:
            raise ValueError("optimiser-free training (e.g. Gibbs sweeps) runs in one process; launch without torchrun")
        scaler = torch.amp.GradScaler(enabled=self.amp and self.device.type == "cuda")
        self.module, self.optimizers = module, optimizers
        if self.store is not None:
            self.store.acquire()
        start_epoch = self._resume(module, optimizers, scaler)
        step_fn = self._step_module(module, task)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        ctx = StepContext(device=self.device)
        started = time.perf_counter()
        logs: dict[str, float] = {}
        self.stop_reason = None
        for epoch in range(start_epoch, self.max_epochs):
            if self.should_stop:
                break
            self.epoch = ctx.epoch = epoch
            logs = {"epoch": float(epoch)}
            logs.update(self._train_epoch(task, module, step_fn, scaler, ctx))
            logs.update(self._validate(module))
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
            self.should_stop = distributed.broadcast(self.should_stop)
            self._save_checkpoint(module, optimizers, scaler)
            if self._out_of_time(started) and not self.should_stop and epoch + 1 < self.max_epochs:
                self.stop_reason = "max_time"
                self.log(
                    f"stopped after epoch {epoch + 1}/{self.max_epochs}: the time budget of {self.options.max_time:g}s "
                    f"(training.max_time) is spent ({time.perf_counter() - started:.1f}s)"
                )
                break
        self._report_stop(logs)
        for cb in self.callbacks:
            cb.on_fit_end(self)
        module.eval()
        return module

    def _out_of_time(self, started: float) -> bool:
        """Whether ``options.max_time`` is spent (rank 0 decides, so that every rank stops after the same epoch)."""
        if self.options.max_time is None:
            return False
        return bool(distributed.broadcast(time.perf_counter() - started >= self.options.max_time))

    def _report_stop(self, logs: dict[str, float]) -> None:
        """Set :attr:`stop_reason` and say when training ran out of epochs while the validation value still improved
        (the monitored value improved in the last epoch: more epochs would probably help)."""
        if not logs:
            return
        if self.stop_reason is None:
            self.stop_reason = "early_stopping" if self.should_stop else "max_epochs"
        if self.stop_reason != "max_epochs":
            return
        epoch = int(logs["epoch"])
        improving = logs.get("patience") == 0.0 if "patience" in logs else logs.get("best_epoch") == float(epoch)
        if improving and ("patience" in logs or "best_epoch" in logs):
            self.log(
                f"stopped at max_epochs while improving: epoch {epoch + 1}/{self.max_epochs} was the best so far on "
                "validation; more epochs would probably help (raise model.max_epochs, or bound the time with "
                "training.max_time)"
            )

    def _train_epoch(
        self,
        task: TrainingTask,
        module: nn.Module,
        step_fn: Callable[[Any, StepContext], Losses],
        scaler: torch.amp.GradScaler,
        ctx: StepContext,
    ) -> dict[str, float]:
        """One epoch of steps; the mean of every logged value over the epoch's batches (and ranks)."""
        optimizers = self.optimizers
        rng, ctx.generator = self._seed_epoch(ctx.epoch)
        module.train()
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        n_batches = 0
        # an optimiser-free epoch runs without gradients as a whole (one context, not one per step: small steps)
        with torch.no_grad() if not optimizers else nullcontext():
            for batch, weight in self._shard(task.batches(rng, self.device)):
                n_batches += 1
                self._train_batch(task, step_fn, batch, weight, ctx, scaler, sums, counts)
        if self.world.parallel:
            sums, counts = distributed.sum_values(sums), distributed.sum_values(counts)
        if n_batches == 0:
            raise ValueError("the task produced no training batch")
        return {f"train_{k}": v / counts[k] for k, v in sums.items()}

    def _train_batch(
        self,
        task: TrainingTask,
        step_fn: Callable[[Any, StepContext], Losses],
        batch: Any,
        weight: float,
        ctx: StepContext,
        scaler: torch.amp.GradScaler,
        sums: dict[str, float],
        counts: dict[str, float],
    ) -> None:
        """One batch: the step(s) of its optimisers (or the optimiser-free step), its values added to ``sums``."""
        optimizers = self.optimizers
        module = self.module
        logged: dict[str, float] = {}
        if not optimizers:
            ctx.optimizer_index, ctx.global_step = 0, self.global_step
            for cb in self.callbacks:
                cb.on_step_start(self, ctx)
            out = task.training_step(module, batch, ctx)
            logged = {name: float(value) for name, value in (out if isinstance(out, dict) else {"loss": out}).items()}
        indices = self.schedule(ctx.epoch, self.global_step, len(optimizers)) if optimizers else ()
        for index in indices:
            ctx.optimizer_index, ctx.global_step = index, self.global_step
            for cb in self.callbacks:
                cb.on_step_start(self, ctx)
            losses = self._step(step_fn, batch, weight, ctx, optimizers[index], scaler)
            logged.update({name if len(optimizers) == 1 else f"{name}[{index}]": v for name, v in losses.items()})
        if indices:
            scaler.update()  # once per batch, after every optimiser's step
        self.global_step += 1
        if weight > 0:
            for name, value in logged.items():
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0.0) + 1.0

    def _step_module(self, module: nn.Module, task: TrainingTask) -> Callable[[Any, StepContext], Losses]:
        """What runs one step: the task's ``training_step``, inside DistributedDataParallel with several processes."""
        if not self.world.parallel or not self.optimizers:
            return lambda batch, ctx: task.training_step(module, batch, ctx)
        from torch.nn.parallel import DistributedDataParallel

        # with several optimisers a step may leave a part of the module out of its loss (the other network)
        return DistributedDataParallel(_Step(module, task), find_unused_parameters=len(self.optimizers) > 1)

    def _shard(self, batches: Iterable[Any]) -> Iterator[tuple[Any, float]]:
        """``(batch, loss weight)`` of this rank: every ``size``-th batch; a last incomplete group is re-weighted."""
        if not self.world.parallel:
            for batch in batches:
                yield batch, 1.0
            return
        rank, size = self.world.rank, self.world.size
        group: list[Any] = []
        for batch in batches:
            group.append(batch)
            if len(group) == size:
                yield group[rank], 1.0
                group = []
        if group:  # ranks past the end repeat the group's first batch at weight 0 (they must still all-reduce)
            yield (group[rank], size / len(group)) if rank < len(group) else (group[0], 0.0)

    def _seed_epoch(self, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(2)
        torch.manual_seed(int(state[0]))  # the RNG that dropout and other module-internal noise draw from
        generator = torch.Generator(device=self.device).manual_seed(int(state[1]))
        return np.random.default_rng([self.seed, epoch]), generator

    def _autocast(self) -> Any:
        if not self.amp:
            return nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _step(
        self,
        step_fn: Callable[[Any, StepContext], Losses],
        batch: Any,
        weight: float,
        ctx: StepContext,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = step_fn(batch, ctx)
        parts = out if isinstance(out, dict) else {"loss": out}
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {ctx.epoch}, step {ctx.global_step}")
        scaler.scale(loss * weight if weight != 1.0 else loss).backward()
        if self.grad_clip is not None:
            scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        scaler.step(optimizer)
        return {name: float(value.detach()) for name, value in parts.items()}

    def _validate(self, module: nn.Module) -> dict[str, float]:
        if self.validate is None:
            return {}
        metrics: dict[str, float] = {}
        if self.world.is_main:
            module.eval()
            with torch.no_grad():
                metrics = self.validate(module)
            module.train()
        metrics = distributed.broadcast(metrics)
        return {f"valid_{k}" if not k.startswith("valid_") else k: float(v) for k, v in metrics.items()}

    # ------------------------------------------------------------------ checkpoints
    def _state(self, module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "should_stop": self.should_stop,
            "module": module.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "optimizer_types": [type(o).__name__ for o in optimizers],
            "scaler": scaler.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def _save_checkpoint(self, module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any) -> None:
        if self.store is not None:
            self.store.save(self._state(module, optimizers, scaler))

    def _resume(self, module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any) -> int:
        """Load the last checkpoint if there is one for this training; return the first epoch still to run.

        With several processes rank 0 reads it and every rank receives the same state.
        """
        state = self.store.load(self.device) if self.store is not None else None
        if self.world.parallel and self.checkpoint_dir is not None:
            state = distributed.broadcast(state)
            if state is not None:
                state = _to_device(state, self.device)
        if state is None:
            return 0
        where = self.checkpoint_dir
        types = [type(o).__name__ for o in optimizers]
        if state.get("optimizer_types", types) != types:
            raise ValueError(
                f"checkpoint in {where} was written with optimiser(s) {state['optimizer_types']}, "
                f"this training uses {types}; remove the checkpoint or resume with the same optimisers"
            )
        if len(state["optimizers"]) != len(optimizers) or len(state["callbacks"]) != len(self.callbacks):
            raise ValueError(
                f"checkpoint in {where} was written by a different training set-up (optimisers, callbacks)"
            )
        module.load_state_dict(state["module"])
        for opt, s in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        scaler.load_state_dict(state["scaler"])
        for cb, s in zip(self.callbacks, state["callbacks"], strict=True):
            cb.load_state_dict(s)
        self.epoch, self.global_step, self.should_stop = state["epoch"], state["global_step"], state["should_stop"]
        self.log(f"resumed from {where} after epoch {self.epoch + 1}")
        return self.epoch + 1


def _to_device(value: Any, device: torch.device) -> Any:
    """Tensors of a nested state moved to ``device`` (a state broadcast between ranks arrives where rank 0 had it)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_device(v, device) for v in value)
    return value
