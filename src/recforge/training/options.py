"""How and where a model is trained, kept apart from what the model is (its hyper-parameters).

:class:`TrainingOptions` is passed to ``fit`` (``model.fit(train, options=TrainingOptions(device="cuda"))``)
and never saved with the model: a model saved after training on a GPU loads anywhere
(``load(path, device=...)``). Hyper-parameters stay typed keyword arguments of the model (``EASE(l2=100)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from recforge.training.callbacks import Callback

ResumePolicy = Literal["auto", "never", "strict"]
"""What a checkpoint folder's last checkpoint is used for:

* ``"auto"``: resume it when its fingerprint (training data, hyper-parameters, result-changing options) matches,
  otherwise start afresh and say so in the log;
* ``"never"``: always start afresh (the folder is still written, so a later run can resume);
* ``"strict"``: resume a matching checkpoint, refuse one with another fingerprint (:class:`CheckpointMismatch`).
"""

Strategy = Literal["auto", "single", "ddp"]
"""``"ddp"``: data-parallel over the processes of an initialised ``torch.distributed`` group (``torchrun``);
``"single"``: this process alone; ``"auto"``: DDP when such a group with more than one process exists."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then CPU; a named device must be usable here (clear error otherwise)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available on this machine (use 'cpu' or 'auto')")
    return resolved


@dataclass(frozen=True)
class TrainingOptions:
    """The training set-up of one ``fit``: none of it is a hyper-parameter, none of it is saved with the model.

    * ``device``: ``"auto"`` (CUDA, then MPS, then CPU) or any usable torch device;
    * ``checkpoint_dir``: makes training resumable -- the state after each epoch is kept there and an
      interrupted ``fit`` of the same model on the same data continues from it (``resume`` says when);
      the checkpoint is removed when training finishes;
    * ``callbacks``: extra Trainer callbacks, run after the model's own (e.g. a tuner's pruning);
    * ``amp``: mixed precision (float16 on CUDA, bfloat16 on CPU) -- it changes results, so the Trainer puts it
      (and the number of processes) in a checkpoint's fingerprint;
    * ``log``: called with one line per epoch (and notices such as a discarded checkpoint): what a run
      piped to a file shows;
    * ``progress_bar``: a rich bar over epochs when on a terminal (rank 0 only);
    * ``strategy``: several processes (:data:`Strategy`);
    * ``max_time``: a time budget in seconds for the epochs of this ``fit``: no epoch starts once it is spent
      (the epoch under way finishes, so a fit may exceed it by up to one epoch and its validation); the best
      epoch is kept as usual and the log says why training stopped.
    """

    device: str | torch.device = "auto"
    checkpoint_dir: str | Path | None = None
    resume: ResumePolicy = "auto"
    callbacks: Sequence[Callback] = field(default_factory=tuple)
    amp: bool = False
    log: Callable[[str], None] | None = None
    progress_bar: bool = True
    strategy: Strategy = "auto"
    max_time: float | None = None

    def __post_init__(self) -> None:
        if self.max_time is not None and not (isinstance(self.max_time, int | float) and self.max_time > 0):
            raise ValueError(f"max_time must be a number of seconds > 0, got {self.max_time!r}")
        if self.resume not in ("auto", "never", "strict"):
            raise ValueError(f"resume must be 'auto', 'never' or 'strict', got {self.resume!r}")
        if self.strategy not in ("auto", "single", "ddp"):
            raise ValueError(f"strategy must be 'auto', 'single' or 'ddp', got {self.strategy!r}")
