"""`TorchRecommender`: the base of every model trained by gradient descent, through the one `Trainer`.

A subclass is a :class:`~recforge.training.trainer.TrainingTask`: it builds its network
(``build_module``), its optimiser(s) (``configure_optimizers``), cuts an epoch into batches
(``batches``) and computes one step's loss (``training_step``). It never loops over epochs:
``_fit`` hands itself to the Trainer with early stopping and best-checkpoint callbacks driven by
validation on the ``valid`` part, and keeps the per-epoch log in ``training_log_``.

Hyper-parameters every subclass declares in its ``__init__``: ``max_epochs``, ``batch_size``,
``learning_rate``, ``patience`` and ``seed``; ``monitor`` (validation metric name) and ``grad_clip`` have
class-level defaults (``"ndcg@100"``, no clipping) that a subclass overrides by declaring them. How and where
the model trains (device, checkpoint folder, mixed precision, extra callbacks, processes) is not a
hyper-parameter: it comes with ``fit(..., options=TrainingOptions(...))``.

Validation is a hook: :meth:`TorchRecommender.validation_metrics` returns the figures logged after
every epoch (default: the ranking metric ``monitor`` by :func:`evaluate_ranking`) and
:meth:`TorchRecommender.monitor_name` names the one that drives early stopping and the best checkpoint,
in the direction ``monitor_mode`` (``"max"`` for ranking metrics, ``"min"`` for errors such as the
validation RMSE of rating models).
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import numpy as np
import pydantic
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.evaluation.evaluate import evaluate_ranking
from recforge.metrics import parse_metric
from recforge.models.base import BaseRecommender, NotFittedError
from recforge.training.callbacks import Callback, Checkpoint, EarlyStopping, EpochLog, History, Mode, Progress
from recforge.training.options import TrainingOptions
from recforge.training.schedules import EveryOptimizer, Schedule
from recforge.training.trainer import Losses, StepContext, Trainer

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart


def _check_monitor(value: str) -> str:
    parse_metric(value)  # raises ValueError naming the known metrics
    return value


#: A validation metric name as a hyper-parameter (e.g. ``"ndcg@100"``), checked when the model is built.
Monitor = Annotated[str, pydantic.AfterValidator(_check_monitor)]


class TorchRecommender(BaseRecommender):
    """Common half of the neural models: fitting through the Trainer, device handling, saving weights."""

    max_epochs: int
    batch_size: int
    learning_rate: float
    patience: int
    seed: int
    #: the validation metric of early stopping and the best checkpoint (a subclass's ``monitor`` hyper-parameter)
    monitor: str = "ndcg@100"
    #: gradient-norm clipping (a subclass's ``grad_clip`` hyper-parameter); None: no clipping
    grad_clip: float | None = None
    #: direction of the monitored validation value: "max" (ranking metrics) or "min" (errors); a subclass
    #: whose direction depends on a hyper-parameter may define it as a property
    monitor_mode: ClassVar[Mode] = "max"

    # ------------------------------------------------------------------ what subclasses supply
    @abstractmethod
    def _prepare(self, train: Interactions) -> None:
        """Keep what ``batches`` needs from the training data (called before the module is built)."""

    @abstractmethod
    def build_module(self) -> nn.Module:
        """The network, built from hyper-parameters and fitted sizes (``n_items``, ``len(users_)``)."""

    @abstractmethod
    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]:
        """One epoch of batches, shuffled with ``rng``."""

    @abstractmethod
    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        """The loss of one batch (and its named parts)."""

    @abstractmethod
    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """The optimiser(s) of the module's parameters (several: see :meth:`optimizer_schedule`)."""

    def optimizer_schedule(self) -> Schedule:
        """Which optimisers step on each batch (:mod:`recforge.training.schedules`); default: every one."""
        return EveryOptimizer()

    def monitor_name(self) -> str:
        """The key of :meth:`validation_metrics` that drives early stopping and the best checkpoint."""
        return parse_metric(self.monitor).name

    def validation_metrics(self, valid: EvalPart) -> dict[str, float]:
        """Validation figures after each epoch (logged with a ``valid_`` prefix); default: the ranking ``monitor``."""
        return evaluate_ranking(self, valid, [parse_metric(self.monitor)]).metrics

    def early_stopping_patience(self) -> int | None:
        """Epochs without improvement of the monitored value before training stops; None: never stop early."""
        return self.patience

    def extra_callbacks(self) -> list[Callback]:
        """Model-specific callbacks (e.g. beta annealing)."""
        return []

    def _release(self) -> None:
        """Drop training-only data after fitting (override when ``_prepare`` kept large objects)."""

    # ------------------------------------------------------------------ fitting
    def _fit(self, train: Interactions, valid: EvalPart | None, options: TrainingOptions) -> None:
        self._prepare(train)
        history = History()
        callbacks: list[Callback] = list(self.extra_callbacks())
        validate = None
        monitor_key = None
        if valid is not None and valid.n_users > 0:
            monitor_key, mode = f"valid_{self.monitor_name()}", self.monitor_mode
            patience = self.early_stopping_patience()
            if patience is not None:
                callbacks.append(EarlyStopping(monitor_key, mode=mode, patience=patience))
            callbacks.append(Checkpoint(monitor_key, mode=mode))

            def validate(module: nn.Module) -> dict[str, float]:
                return self.validation_metrics(valid)

        if options.progress_bar:
            callbacks.append(Progress(monitor_key))
        if options.log is not None:
            callbacks.append(EpochLog(options.log))
        callbacks.append(history)  # after the callbacks that add to the logs (beta, patience, best epoch)
        trainer = Trainer(
            max_epochs=self.max_epochs,
            options=options,
            seed=self.seed,
            grad_clip=self.grad_clip,
            callbacks=callbacks,
            validate=validate,
            schedule=self.optimizer_schedule(),
            fingerprint=self._fingerprint(train, valid),
        )
        with torch.random.fork_rng(devices=[self.device_] if self.device_.type == "cuda" else []):
            torch.manual_seed(self.seed)  # the module's initial weights
            self.module_ = self.build_module().to(self.device_)
        trainer.fit(self, self.module_)
        self.module_.eval()
        self.training_log_ = history.epochs
        self._release()

    def _fingerprint(self, train: Interactions, valid: EvalPart | None) -> str:
        """What a checkpoint of this training must match: the model, its hyper-parameters and the data."""
        params = json.dumps({"model": type(self).__name__, **self.get_params()}, sort_keys=True, default=str)
        parts = [params, train.digest()]
        if valid is not None:
            parts += [valid.history.digest(), valid.target.digest()]
        return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()

    def check_fitted(self) -> None:
        super().check_fitted()
        if not hasattr(self, "module_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit() or load() first")

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {f"module.{k}": v for k, v in self.module_.state_dict().items()}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.module_ = self.build_module()
        self.module_.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
        self.module_.to(self.device_).eval()

    def _state_info(self) -> dict[str, Any]:
        return {"training_log": getattr(self, "training_log_", [])}

    def _load_state_info(self, info: dict[str, Any]) -> None:
        self.training_log_ = info.get("training_log", [])
