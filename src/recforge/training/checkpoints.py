"""The checkpoint folder of a resumable training: one last state, its fingerprint, and a lock.

A checkpoint carries the fingerprint of what it was trained on (training data digest, hyper-parameters, the
options that change results), so a later ``fit`` resumes it only when that is the same training: another data
file, other hyper-parameters or another model never pick up stale weights (:data:`ResumePolicy` says whether such
a checkpoint is set aside with a log line or refused). Files are written under unique temporary names and
renamed, and a lock keeps two trainings from writing one folder: the second trains without checkpoints and says
so. When training finishes the checkpoint is removed.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from recforge.training.options import ResumePolicy

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, folders are not shared
    fcntl = None  # type: ignore[assignment]

CHECKPOINT_FILE = "last.pt"
LOCK_FILE = ".lock"


class CheckpointMismatch(ValueError):
    """A checkpoint was written by another training (other data, hyper-parameters or set-up)."""


class CheckpointStore:
    """Reads and writes ``folder/last.pt`` for one training identified by ``fingerprint``."""

    def __init__(
        self,
        folder: str | Path,
        fingerprint: str,
        *,
        resume: ResumePolicy = "auto",
        log: Callable[[str], None] | None = None,
    ):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.resume = resume
        self._log = log
        self._lock: Any = None
        self.enabled = False

    def say(self, message: str) -> None:
        if self._log is not None:
            self._log(message)

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def acquire(self) -> bool:
        """Take the folder for this training; False (and checkpointing off) when another process holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            handle = (self.folder / LOCK_FILE).open("a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                self.say(f"checkpoint folder {self.folder} is in use by another training: training without checkpoints")
                return False
            self._lock = handle
        for stale in self.folder.glob(f".{CHECKPOINT_FILE}.*.tmp"):  # left by a killed training
            stale.unlink(missing_ok=True)
        self.enabled = True
        return True

    def load(self, map_location: torch.device) -> dict[str, Any] | None:
        """The state to resume from, or None: no checkpoint, ``resume="never"``, or another fingerprint (auto)."""
        if not self.enabled or self.resume == "never" or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a truncated or foreign file: never resume from it
            if self.resume == "strict":
                raise CheckpointMismatch(f"checkpoint {self.path} cannot be read ({exc})") from None
            self.say(f"checkpoint {self.path} cannot be read ({type(exc).__name__}): starting afresh")
            return None
        if state.get("fingerprint") != self.fingerprint:
            message = f"checkpoint {self.path} was written for other training data or settings"
            if self.resume == "strict":
                raise CheckpointMismatch(f"{message}; remove it or use resume='auto' to start afresh")
            self.say(f"{message}: starting afresh")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (with the fingerprint) atomically: a unique temporary file, then a rename."""
        if not self.enabled:
            return
        tmp = self.folder / f".{CHECKPOINT_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            torch.save({**state, "fingerprint": self.fingerprint}, tmp)
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def finish(self) -> None:
        """Training ended: remove the checkpoint (and the folder when nothing else is in it), release the lock."""
        if self.enabled:
            self.path.unlink(missing_ok=True)
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()
        self.release()

    def release(self) -> None:
        """Release the lock (the checkpoint stays, for a later resume)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self.enabled = False
