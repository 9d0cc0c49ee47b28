"""Several processes with ``torch.distributed``: who this process is, and the few collectives recforge needs.

recforge does not start processes itself: ``torchrun`` does (``torchrun --nproc-per-node N -m recforge run ...``),
and the command line calls :func:`init_from_environment`. Library code only asks :func:`world` where it stands,
so the same code runs in one process (rank 0 of 1) and in many. The backend is gloo on CPU and NCCL on CUDA.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` processes (rank 0 of 1 without a process group)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates, checkpoints, writes run directories and draws progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world() -> World:
    """Where this process stands: the initialised default process group, or rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_environment(
    env: Mapping[str, str], device: torch.device | None = None, *, timeout_s: float = 1800
) -> World:
    """Join the process group that ``torchrun`` described in ``env`` (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...).

    Does nothing for one process. NCCL when ``device`` is CUDA (each process then uses ``cuda:LOCAL_RANK``), gloo
    otherwise. Returns where this process stands.
    """
    size = int(env.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return world()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: several processes are not possible")
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return world()


def shutdown() -> None:
    """Leave the process group (if any), after every rank got here: a rank that leaves while another still talks
    to it can abort the other's backend threads."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast(value: T, *, src: int = 0) -> T:
    """``value`` as rank ``src`` has it, on every rank (any picklable object; identity for one process)."""
    if not world().parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` for one process)."""
    w = world()
    if not w.parallel:
        return [value]
    out: list[Any] = [None] * w.size
    dist.all_gather_object(out, value)
    return out


def sum_values(values: dict[str, float]) -> dict[str, float]:
    """Per-key sums over the ranks of float dicts (keys missing on a rank count as 0)."""
    merged: dict[str, float] = {}
    for part in gather(values):
        for key, v in part.items():
            merged[key] = merged.get(key, 0.0) + v
    return merged
