"""The recommender protocol every model family speaks, and the base class that implements its common half.

A model is an estimator in the scikit-learn sense: ``__init__`` only stores typed keyword
hyper-parameters, ``fit`` learns state whose attribute names end in ``_``, and an unfitted model
raises :class:`NotFittedError`. Each subclass supplies ``_fit``, ``score`` and, to be saved,
``_state``/``_load_state``; ranking, recommending (for known users or a brand-new history),
saving and loading are written once here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import shutil
import sys
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import pydantic
import scipy.sparse as sp
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from recforge.data.download import umask
from recforge.data.ids import IdMap
from recforge.data.interactions import Interactions
from recforge.evaluation.ranking import exclude_items_, top_k
from recforge.training.options import TrainingOptions, resolve_device

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart

FORMAT_VERSION = 2
#: Keys that models saved before format 2 kept among their hyper-parameters; they are training options now.
_FORMER_TRAINING_OPTIONS = ("device", "checkpoint_dir", "amp")


class NotFittedError(RuntimeError):
    """The model was used before ``fit`` (or ``load``)."""


class ModelFileError(ValueError):
    """A saved model's file is damaged, edited or does not fit the others; the message names the file."""


class InvalidParameterError(ValueError):
    """A hyper-parameter is unknown or out of range; the message and ``param`` name it."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


Recommendation = list[tuple[Any, float]]


@runtime_checkable
class Recommender(Protocol):
    """What the evaluator, CLI, tuner and server rely on."""

    def fit(
        self, train: Interactions, *, valid: EvalPart | None = None, options: TrainingOptions | None = None
    ) -> Self: ...

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor: ...

    def recommend(self, user_ids: Sequence[Any], k: int = 10, *, exclude_seen: bool = True) -> list[Recommendation]: ...

    def recommend_for_history(self, item_ids: Sequence[Any], k: int = 10) -> Recommendation: ...

    def save(self, path: str | Path) -> None: ...


def csr_to_torch(
    matrix: sp.csr_array,
    device: torch.device | str = "cpu",
    *,
    dense: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR (or dense) tensor of ``dtype`` on ``device``."""
    matrix = sp.csr_array(matrix)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        t = torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data).to(dtype),
            size=matrix.shape,
            check_invariants=False,  # built from a valid scipy CSR
        )
    t = t.to(device)
    return t.to_dense() if dense else t


def _evaluate_annotation(cls: type, name: str, annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    for klass in cls.__mro__:  # the class whose body declares the field
        if name in vars(klass).get("__annotations__", {}) and dataclasses.is_dataclass(klass):
            return eval(annotation, vars(sys.modules[klass.__module__]))
    return eval(annotation, cls.__init__.__globals__)  # a hand-written __init__


class BaseRecommender(ABC):
    """Common half of every model: parameters, id maps, ranking, recommending, persistence.

    Subclasses set ``name`` (the registry name), declare hyper-parameters as typed keyword
    arguments of ``__init__`` (constraints as ``Annotated[float, pydantic.Field(gt=0)]``) and
    implement :meth:`_fit`, :meth:`score`, :meth:`_state` and :meth:`_load_state`.
    """

    name: ClassVar[str] = ""
    #: True when ``score`` depends on the history only (no per-user state): new users cost nothing.
    folds_in_from_history: ClassVar[bool] = True

    # ------------------------------------------------------------------ parameters
    @classmethod
    def param_specs(cls) -> dict[str, inspect.Parameter]:
        """The hyper-parameters: ``__init__``'s keyword arguments with their annotations and defaults.

        An annotation is evaluated where it was written: in the module of the hand-written ``__init__``, or of the
        class that declared the field (:func:`~recforge.models.params.hyperparameters` families span modules).
        """
        sig = inspect.signature(cls.__init__)
        return {
            n: p.replace(annotation=_evaluate_annotation(cls, n, p.annotation))
            for n, p in sig.parameters.items()
            if n != "self" and p.kind is p.KEYWORD_ONLY
        }

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Check names and coerce values by their annotations; raise :class:`InvalidParameterError` naming the field."""
        specs = cls.param_specs()
        out = {}
        for key, value in params.items():
            if key not in specs:
                known = ", ".join(specs) or "none"
                raise InvalidParameterError(f"{cls.name or cls.__name__} has no parameter {key!r}; known: {known}", key)
            try:
                out[key] = pydantic.TypeAdapter(specs[key].annotation).validate_python(value)
            except pydantic.ValidationError as exc:
                msg = "; ".join(e["msg"] for e in exc.errors())
                raise InvalidParameterError(f"{cls.name or cls.__name__}.{key}={value!r}: {msg}", key) from None
        return out

    def _store_params(self, arguments: dict[str, Any]) -> None:
        """Store the hyper-parameters found in an ``__init__``'s ``locals()`` under their own names (sklearn rule).

        A subclass that adds parameters stores its own after calling its parent's ``__init__``.
        """
        for name in self.param_specs():
            if name in arguments:
                setattr(self, name, arguments[name])

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__``."""
        return {n: getattr(self, n) for n in self.param_specs()}

    def set_params(self, **params: Any) -> Self:
        """Change hyper-parameters (validated); learned state is kept until the next ``fit``."""
        for k, v in self.validate_params(params).items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    def fit(
        self, train: Interactions, *, valid: EvalPart | None = None, options: TrainingOptions | None = None
    ) -> Self:
        """Learn from ``train``; ``valid`` (if the family uses it) drives early stopping and the best checkpoint.

        ``options`` say how and where to train (device, checkpoint folder, callbacks, mixed precision,
        processes: :class:`~recforge.training.options.TrainingOptions`); they are not saved with the model.
        """
        options = options or TrainingOptions()
        self.validate_params(self.get_params())
        if train.nnz == 0:
            raise ValueError("cannot fit on an empty training set")
        if valid is not None and valid.history.items != train.items:
            raise ValueError("validation part must use the training item id map")
        self.users_ = train.users
        self.items_ = train.items
        self.history_ = train.matrix
        self.device_ = resolve_device(options.device)
        self._fit(train, valid, options)
        return self

    @abstractmethod
    def _fit(self, train: Interactions, valid: EvalPart | None, options: TrainingOptions) -> None:
        """Family-specific learning, on ``self.device_``."""

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` unless ``fit`` or ``load`` ran."""
        if not hasattr(self, "items_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit() or load() first")

    @property
    def n_items(self) -> int:
        self.check_fitted()
        return len(self.items_)

    # ------------------------------------------------------------------ scoring
    @abstractmethod
    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Scores (rows x n_items float32) for the users whose interactions are the rows of ``history``.

        ``users`` gives the training user index of each row when the users are known; ``None`` means
        the rows are new users, folded in from ``history`` alone. Seen items are *not* removed here.
        """

    def _check_history(self, history: sp.csr_array, users: np.ndarray | None) -> sp.csr_array:
        self.check_fitted()
        history = sp.csr_array(history)
        if history.shape[1] != self.n_items:
            raise ValueError(f"history has {history.shape[1]} item columns, the model knows {self.n_items} items")
        if users is not None and len(users) != history.shape[0]:
            raise ValueError(f"{len(users)} user indices for {history.shape[0]} history rows")
        return history

    def rank(
        self, history: sp.csr_array, users: np.ndarray | None, k: int, *, exclude_seen: bool = True, **options: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, item indices) for the rows of ``history``, seen items removed if asked.

        ``options`` go to :meth:`_ranking_scores` (e.g. C-VAE's ``condition``).
        """
        scores = self._ranking_scores(history, users, **options).float()
        if exclude_seen:
            exclude_items_(scores, history)
        return top_k(scores, k)

    def _ranking_scores(self, history: sp.csr_array, users: np.ndarray | None, **options: Any) -> torch.Tensor:
        """The scores ``rank`` orders; models with ranking options (e.g. a condition) override this."""
        if options:
            raise TypeError(f"{type(self).__name__} takes no ranking options, got {sorted(options)}")
        return self.score(history, users)

    def _default_history_value(self) -> float:
        """The value of a new user's history item when none is given (rating models: a high rating)."""
        return 1.0

    def recommend(
        self,
        user_ids: Sequence[Any],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        batch_size: int = 1024,
        **options: Any,
    ) -> list[Recommendation]:
        """Top-``k`` ``(item_id, score)`` lists for known users (raw ids), best first."""
        self.check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        users = self.users_.index(list(user_ids))
        out: list[Recommendation] = []
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            values, indices = self.rank(self.history_[batch], batch, k, exclude_seen=exclude_seen, **options)
            out.extend(self._as_recommendations(values, indices))
        return out

    def recommend_for_history(
        self, item_ids: Sequence[Any], k: int = 10, *, values: Sequence[float] | None = None, **options: Any
    ) -> Recommendation:
        """Top-``k`` ``(item_id, score)`` for a new user who interacted with ``item_ids`` (no retraining).

        ``values`` are the user's ratings or weights of ``item_ids`` (one each; for a repeated item the
        last counts); without them every item gets :meth:`_default_history_value`.
        """
        self.check_fitted()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        idx = self.items_.index(list(item_ids))
        if values is None:
            weights = np.full(len(idx), self._default_history_value(), dtype=np.float32)
        else:
            weights = np.asarray(values, dtype=np.float32)
            if weights.shape != idx.shape:
                raise ValueError(f"{len(weights)} values (ratings or weights) for {len(idx)} items")
        uniq, last = np.unique(idx[::-1], return_index=True)
        row = sp.csr_array((weights[::-1][last], uniq, np.array([0, len(uniq)])), shape=(1, self.n_items))
        top_values, top_indices = self.rank(row, None, k, **options)
        return self._as_recommendations(top_values, top_indices)[0]

    def _as_recommendations(self, values: torch.Tensor, indices: torch.Tensor) -> list[Recommendation]:
        values_np, indices_np = values.cpu().numpy(), indices.cpu().numpy()
        item_ids = self.items_.ids
        out: list[Recommendation] = []
        for vals, idxs in zip(values_np, indices_np, strict=True):
            ok = idxs >= 0
            # tolist() gives plain Python ids (int or str) whatever the id array's dtype
            out.append(list(zip(item_ids[idxs[ok]].tolist(), vals[ok].tolist(), strict=True)))
        return out

    # ------------------------------------------------------------------ persistence
    @abstractmethod
    def _state(self) -> dict[str, torch.Tensor]:
        """Learned tensors to save (CPU, contiguous)."""

    @abstractmethod
    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`_state` returned."""

    def _state_info(self) -> dict[str, Any]:
        """JSON-serialisable learned information saved beside the weights (e.g. a training log)."""
        return {}

    def _load_state_info(self, info: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`_state_info` returned (called before :meth:`_load_state`)."""

    def save(self, path: str | Path) -> None:
        """Write ``config.json``, ``ids.json`` and ``weights.safetensors`` into the directory ``path``.

        The directory is written under a temporary name and renamed, so a crash never leaves a
        half-written model; an existing model directory at ``path`` is replaced.
        """
        self.check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # not tempfile.mkdtemp: its 0o700 mode would survive the rename and hide the model from other users
        tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            config = {
                "format": FORMAT_VERSION,
                "model": self.name,
                "params": self.get_params(),
                "state_info": self._state_info(),
            }
            (tmp / "config.json").write_text(json.dumps(config, indent=2))
            ids = {"users": self.users_.to_json(), "items": self.items_.to_json()}
            (tmp / "ids.json").write_text(json.dumps(ids))
            h = self.history_
            tensors = {
                "history.indptr": torch.from_numpy(h.indptr.astype(np.int64)),
                "history.indices": torch.from_numpy(h.indices.astype(np.int64)),
                "history.data": torch.from_numpy(h.data.astype(np.float32)),
            }
            for key, t in self._state().items():
                tensors[f"state.{key}"] = t.detach().cpu().contiguous()
            weights = tmp / "weights.safetensors"
            save_file(tensors, str(weights), metadata={IDS_DIGEST_KEY: _ids_digest(ids)})
            os.chmod(weights, 0o666 & ~umask())  # safetensors writes 0600; every other file follows the umask
            if path.exists():
                old = tmp.with_name(f"{tmp.name}.old")  # unique: never collides with a crashed save's leftover
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def upgrade_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Saved hyper-parameters of an earlier version of the model as today's (a renamed or replaced key)."""
        return params

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "auto") -> Self:
        """Read a directory written by :meth:`save` (no pickle anywhere) onto ``device``, wherever it was trained.

        A damaged or edited file (truncated or foreign weights, a missing tensor, a layer of another size, id lists
        that are not the ones the weights were saved with) raises :class:`ModelFileError` naming the file.
        """
        path = Path(path)
        config_path, ids_path, weights_path = (path / n for n in ("config.json", "ids.json", "weights.safetensors"))
        config = _read_json_file(config_path, path)
        ids = _read_json_file(ids_path, path)
        if not isinstance(config, dict) or not isinstance(config.get("params"), dict):
            raise ModelFileError(f"{config_path} is not a recforge model config (no 'params')")
        if cls.name and config.get("model") != cls.name:
            raise ValueError(f"{path} holds a {config.get('model')!r} model, not {cls.name!r}")
        params = dict(config["params"])
        if config.get("format", 1) < 2:
            for key in _FORMER_TRAINING_OPTIONS:
                params.pop(key, None)
        params = cls.upgrade_params(params)
        try:
            model = cls(**cls.validate_params(params))
        except (InvalidParameterError, TypeError) as exc:
            raise ModelFileError(f"{config_path}: {exc}") from None
        model.device_ = resolve_device(device)
        try:
            model.users_ = IdMap.from_json(ids["users"])
            model.items_ = IdMap.from_json(ids["items"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{ids_path} does not hold the users' and items' id lists ({exc})") from None
        metadata, tensors = _read_weights(weights_path, path)
        digest = metadata.get(IDS_DIGEST_KEY)
        if digest is not None and digest != _ids_digest(ids):
            raise ModelFileError(
                f"{ids_path} is not the id list {weights_path.name} was saved with (it was edited or comes from "
                "another model): recommendations would name the wrong users and items"
            )
        n_users, n_items = len(model.users_), len(model.items_)
        try:
            indptr = tensors["history.indptr"].numpy()
            indices = tensors["history.indices"].numpy()
            data = tensors["history.data"].numpy()
        except KeyError as exc:
            raise ModelFileError(
                f"{weights_path} has no tensor {exc.args[0]!r}: the file is not a complete model"
            ) from None
        if (
            indptr.shape != (n_users + 1,)
            or indices.shape != data.shape
            or int(indptr[-1]) != len(indices)
            or (len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= n_items))
        ):
            raise ModelFileError(
                f"{weights_path} does not fit {ids_path.name} ({n_users} users, {n_items} items): "
                "the files come from different models"
            )
        model.history_ = sp.csr_array((data, indices, indptr), shape=(n_users, n_items))
        state = {k[len("state.") :]: v for k, v in tensors.items() if k.startswith("state.")}
        try:
            model._load_state_info(config.get("state_info", {}))
            model._load_state(state)
            probe = model.score(model.history_[:1], np.zeros(1, dtype=np.int64)) if n_users else None
        except KeyError as exc:
            raise ModelFileError(
                f"{weights_path} has no tensor {'state.' + str(exc.args[0])!r}: the file is not a complete model"
            ) from None
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise ModelFileError(
                f"{weights_path} does not fit the model described by {config_path.name} and {ids_path.name} "
                f"({_summary(exc)})"
            ) from None
        if probe is not None and tuple(probe.shape) != (1, n_items):
            raise ModelFileError(
                f"{weights_path} does not fit {ids_path.name}: it scores {probe.shape[-1]} items, the id list has "
                f"{n_items}"
            )
        return model


#: The safetensors metadata key holding the sha256 of the id maps the weights were saved with.
IDS_DIGEST_KEY = "recforge.ids_sha256"


def _ids_digest(ids: Any) -> str:
    """sha256 of the id maps in a canonical JSON form (so that only a change of the ids changes it)."""
    return hashlib.sha256(json.dumps(ids, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _summary(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_saved_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved model directory (its ``"model"`` names the class); errors name the file."""
    path = Path(path)
    config = _read_json_file(path / "config.json", path)
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise ModelFileError(f"{path / 'config.json'} is not a recforge model config (no 'model' name)")
    return config


def _read_json_file(file: Path, model_dir: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if not model_dir.is_dir():
            raise FileNotFoundError(f"{model_dir} is not a saved recforge model: no such folder") from None
        raise FileNotFoundError(f"{model_dir} is not a saved recforge model: missing {file.name}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{file} is not valid JSON ({exc}): the saved model is damaged") from None


def _read_weights(file: Path, model_dir: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and tensors of a safetensors file; anything else raises :class:`ModelFileError`."""
    if not file.is_file():
        if file.exists():
            raise ModelFileError(f"{file} is not a file")
        raise FileNotFoundError(f"{model_dir} is not a saved recforge model: missing {file.name}")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    except (SafetensorError, OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise ModelFileError(
            f"{file} is not a readable safetensors file ({_summary(exc)}): the saved model is damaged or was replaced"
        ) from None
    return metadata, tensors
