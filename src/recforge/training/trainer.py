"""THE epoch loop. Every neural model hands the Trainer a `TrainingTask`; none writes its own loop.

A task says how to build the network, its optimiser(s), how to cut an epoch into batches and
what one step's loss is. The Trainer owns everything else: the device, seeding, mixed
precision, gradient clipping, several optimisers stepped in turn (GAN-style alternation),
per-epoch validation through an injected callable, callbacks, and resumable checkpoints.

A task with no optimiser (``configure_optimizers`` returns an empty list) updates its module itself
in ``training_step`` -- a Gibbs sweep, an alternating least-squares half-step -- and returns figures
to log; the Trainer runs such steps without gradients and gives them the same seeding, validation,
callbacks and checkpoints.

Seeding is per epoch (``seed`` and the epoch number fix the batch order and the torch RNG), so
an interrupted run resumed from its last checkpoint ends with the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from recforge.training.callbacks import Callback

CHECKPOINT_FILE = "last.pt"


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; anything else is passed to :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


@dataclass
class StepContext:
    """What a training step may read: where it is in training, and scheduled values (e.g. ``beta``)."""

    epoch: int = 0
    global_step: int = 0
    optimizer_index: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    values: dict[str, float] = field(default_factory=dict)


Losses = torch.Tensor | dict[str, torch.Tensor]
"""A step returns its loss, or a dict with ``"loss"`` (what is minimised) and named parts to log."""


class TrainingTask(Protocol):
    """What a model supplies to be trained by :class:`Trainer`."""

    def build_module(self) -> nn.Module: ...

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]: ...

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]: ...

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses: ...


Validate = Callable[[nn.Module], dict[str, float]]


class Trainer:
    """Runs ``max_epochs`` epochs of a task's batches, with validation and callbacks.

    With several optimisers, each batch runs ``training_step`` once per optimiser (``ctx.optimizer_index``)
    and steps that optimiser alone. ``checkpoint_dir`` makes training resumable: the state after each
    epoch is saved there (atomically) and picked up by the next ``fit`` of the same task.
    """

    def __init__(
        self,
        *,
        max_epochs: int,
        device: str | torch.device = "auto",
        seed: int = 0,
        grad_clip: float | None = None,
        amp: bool = False,
        callbacks: Sequence[Callback] = (),
        validate: Validate | None = None,
        checkpoint_dir: str | Path | None = None,
    ):
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        self.max_epochs = max_epochs
        self.device = resolve_device(device)
        self.seed = seed
        self.grad_clip = grad_clip
        self.amp = amp
        self.callbacks = list(callbacks)
        self.validate = validate
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.should_stop = False
        self.epoch = 0
        self.global_step = 0

    # ------------------------------------------------------------------ the loop
    def fit(self, task: TrainingTask, module: nn.Module | None = None) -> nn.Module:
        """Train ``module`` (default: ``task.build_module()``) in place and return it."""
        module = (module if module is not None else task.build_module()).to(self.device)
        optimizers = list(task.configure_optimizers(module))
        scaler = torch.amp.GradScaler(enabled=self.amp and self.device.type == "cuda")
        self.module, self.optimizers = module, optimizers
        start_epoch = self._resume(module, optimizers, scaler)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        ctx = StepContext(device=self.device)
        for epoch in range(start_epoch, self.max_epochs):
            if self.should_stop:
                break
            self.epoch = ctx.epoch = epoch
            rng = self._seed_epoch(epoch)
            module.train()
            sums: dict[str, float] = {}
            n_batches = 0
            for batch in task.batches(rng, self.device):
                if not optimizers:
                    ctx.optimizer_index, ctx.global_step = 0, self.global_step
                    for cb in self.callbacks:
                        cb.on_step_start(self, ctx)
                    with torch.no_grad():
                        out = task.training_step(module, batch, ctx)
                    for name, value in (out if isinstance(out, dict) else {"loss": out}).items():
                        sums[name] = sums.get(name, 0.0) + float(value)
                for index, optimizer in enumerate(optimizers):
                    ctx.optimizer_index, ctx.global_step = index, self.global_step
                    for cb in self.callbacks:
                        cb.on_step_start(self, ctx)
                    losses = self._step(task, module, batch, ctx, optimizer, scaler)
                    for name, value in losses.items():
                        key = name if len(optimizers) == 1 else f"{name}[{index}]"
                        sums[key] = sums.get(key, 0.0) + value
                self.global_step += 1
                n_batches += 1
            if n_batches == 0:
                raise ValueError("the task produced no training batch")
            logs: dict[str, float] = {"epoch": float(epoch)}
            logs.update({f"train_{k}": v / n_batches for k, v in sums.items()})
            logs.update(self._validate(module))
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
            self._save_checkpoint(module, optimizers, scaler)
        for cb in self.callbacks:
            cb.on_fit_end(self)
        module.eval()
        return module

    def _seed_epoch(self, epoch: int) -> np.random.Generator:
        torch.manual_seed(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0].item())
        return np.random.default_rng([self.seed, epoch])

    def _autocast(self) -> Any:
        if not self.amp:
            return nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _step(
        self,
        task: TrainingTask,
        module: nn.Module,
        batch: Any,
        ctx: StepContext,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = task.training_step(module, batch, ctx)
        parts = out if isinstance(out, dict) else {"loss": out}
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {ctx.epoch}, step {ctx.global_step}")
        scaler.scale(loss).backward()
        if self.grad_clip is not None:
            scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        return {name: float(value.detach()) for name, value in parts.items()}

    def _validate(self, module: nn.Module) -> dict[str, float]:
        if self.validate is None:
            return {}
        module.eval()
        with torch.no_grad():
            metrics = self.validate(module)
        module.train()
        return {f"valid_{k}" if not k.startswith("valid_") else k: float(v) for k, v in metrics.items()}

    # ------------------------------------------------------------------ checkpoints
    def _state(self, module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "should_stop": self.should_stop,
            "module": module.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "scaler": scaler.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def _save_checkpoint(self, module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any) -> None:
        if self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_dir / f".{CHECKPOINT_FILE}.tmp"
        torch.save(self._state(module, optimizers, scaler), tmp)
        os.replace(tmp, self.checkpoint_dir / CHECKPOINT_FILE)

    def _resume(self, module: nn.Module, optimizers: list[torch.optim.Optimizer], scaler: Any) -> int:
        """Load the last checkpoint if there is one; return the first epoch still to run."""
        if self.checkpoint_dir is None or not (self.checkpoint_dir / CHECKPOINT_FILE).exists():
            return 0
        state = torch.load(self.checkpoint_dir / CHECKPOINT_FILE, map_location=self.device, weights_only=True)
        module.load_state_dict(state["module"])
        if len(state["optimizers"]) != len(optimizers) or len(state["callbacks"]) != len(self.callbacks):
            raise ValueError(f"checkpoint in {self.checkpoint_dir} was written by a different training set-up")
        for opt, s in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(s)
        scaler.load_state_dict(state["scaler"])
        for cb, s in zip(self.callbacks, state["callbacks"], strict=True):
            cb.load_state_dict(s)
        self.epoch, self.global_step, self.should_stop = state["epoch"], state["global_step"], state["should_stop"]
        return self.epoch + 1
