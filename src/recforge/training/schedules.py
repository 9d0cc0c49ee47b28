"""Which optimisers the Trainer steps on each batch: every one, k:1 cycles, alternating epochs, a switch at an epoch.

A schedule is called as ``schedule(epoch, step, n_optimizers)`` (``step`` is the global batch count, restored on
resume, so every schedule here resumes exactly) and returns the indices of the optimisers to step on that batch,
in order; an empty tuple skips the batch. Each listed optimiser gets its own ``training_step`` call
(``ctx.optimizer_index``), backward pass and step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol


class Schedule(Protocol):
    def __call__(self, epoch: int, step: int, n_optimizers: int) -> Sequence[int]: ...


def _check_indices(indices: Sequence[int], n_optimizers: int) -> tuple[int, ...]:
    out = tuple(indices)
    if len(set(out)) != len(out):
        raise ValueError(f"an optimiser may step once per batch, got {out}")
    if any(not 0 <= i < n_optimizers for i in out):
        raise ValueError(f"optimiser indices {out} out of range for {n_optimizers} optimiser(s)")
    return out


@dataclass(frozen=True)
class EveryOptimizer:
    """Every optimiser on every batch, in order (the default)."""

    def __call__(self, epoch: int, step: int, n_optimizers: int) -> Sequence[int]:
        return tuple(range(n_optimizers))


@dataclass(frozen=True)
class Cycle:
    """A repeating pattern of optimiser sets, one entry per batch (``unit="batch"``) or per epoch.

    ``Cycle.ratio(3, 1)`` steps optimiser 0 on three batches, then optimiser 1 on one (a GAN's d_steps:g_steps);
    ``Cycle([(0,), (1,)], unit="epoch")`` alternates whole epochs (RecVAE's encoder and decoder epochs).
    """

    pattern: tuple[tuple[int, ...], ...]
    unit: Literal["batch", "epoch"] = "batch"

    def __init__(self, pattern: Sequence[Sequence[int]], unit: Literal["batch", "epoch"] = "batch"):
        if not pattern:
            raise ValueError("a cycle needs at least one entry")
        if unit not in ("batch", "epoch"):
            raise ValueError(f"unit must be 'batch' or 'epoch', got {unit!r}")
        object.__setattr__(self, "pattern", tuple(tuple(p) for p in pattern))
        object.__setattr__(self, "unit", unit)

    @classmethod
    def ratio(cls, *counts: int, unit: Literal["batch", "epoch"] = "batch") -> Cycle:
        """Optimiser ``i`` alone for ``counts[i]`` consecutive batches (or epochs), then the next one."""
        if not counts or any(c < 0 for c in counts) or sum(counts) == 0:
            raise ValueError(f"counts must be >= 0 with a positive sum, got {counts}")
        return cls([(i,) for i, c in enumerate(counts) for _ in range(c)], unit=unit)

    def __call__(self, epoch: int, step: int, n_optimizers: int) -> Sequence[int]:
        t = step if self.unit == "batch" else epoch
        return _check_indices(self.pattern[t % len(self.pattern)], n_optimizers)


@dataclass(frozen=True)
class SwitchAt:
    """Optimiser 0 before epoch ``epochs[0]``, optimiser 1 from there until ``epochs[1]``, and so on.

    The Goodreads notebook's schedule, Adam for the first epoch and SGD after it, is ``SwitchAt(1)`` with
    ``configure_optimizers`` returning ``[Adam(...), SGD(...)]`` over the same parameters.
    """

    epochs: tuple[int, ...]

    def __init__(self, *epochs: int):
        if not epochs or list(epochs) != sorted(epochs) or epochs[0] < 1:
            raise ValueError(f"switch epochs must be increasing and >= 1, got {epochs}")
        object.__setattr__(self, "epochs", tuple(epochs))

    def __call__(self, epoch: int, step: int, n_optimizers: int) -> Sequence[int]:
        index = sum(epoch >= e for e in self.epochs)
        return _check_indices((index,), n_optimizers)
