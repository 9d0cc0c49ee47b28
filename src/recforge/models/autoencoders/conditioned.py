"""The conditioned Mult-VAE (C-VAE): a Mult-VAE whose encoder also reads item conditions (e.g. genres).

:func:`item_condition_matrix` turns ``train.item_info[condition_col]`` into the items x conditions 0/1
matrix; :class:`CMultiVAE` trains on (user, condition) examples and ranks under conditions (its loss
is in its class docstring).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.samplers import ConditionedRows
from recforge.models.autoencoders.losses import SparseRows
from recforge.models.autoencoders.rows import MultiVAE
from recforge.models.params import hyperparameters
from recforge.training.trainer import Losses, StepContext


def item_condition_matrix(info: pd.DataFrame | None, column: str, n_items: int) -> tuple[sp.csr_array, list[Any]]:
    """Items x conditions 0/1 CSR from ``info[column]`` (row ``i`` describes item ``i``) and the sorted labels.

    A cell is a list-like of labels (e.g. ML-100K ``genres``), one label, or missing (no condition).
    """
    if info is None or column not in info.columns:
        have = [] if info is None else list(info.columns)
        raise ValueError(f"CMultiVAE needs train.item_info[{column!r}] (the item conditions); item_info has {have}")
    if len(info) != n_items:
        raise ValueError(f"item_info has {len(info)} rows for {n_items} items")
    exploded = info[column].reset_index(drop=True).explode().dropna()
    labels, codes = np.unique(exploded.to_numpy(dtype=object).astype(str), return_inverse=True)
    if len(labels) == 0:
        raise ValueError(f"item_info[{column!r}] holds no condition label")
    items = exploded.index.to_numpy(dtype=np.int64)
    m = sp.csr_array((np.ones(len(items), dtype=np.float32), (items, codes)), shape=(n_items, len(labels)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m, labels.tolist()


@hyperparameters
class CMultiVAE(MultiVAE):
    r"""C-VAE: a Mult-VAE whose encoder also reads a condition vector (Carraro, Polato & Aiolli 2020, arXiv 2004.11141).

    The conditions are the labels of ``train.item_info[condition_col]`` (e.g. ML-100K genres; an item
    may have several). Training examples come from :class:`~recforge.data.samplers.ConditionedRows`: for
    each user, one per condition ``c`` that some of the user's items satisfy, with encoder input
    :math:`[\tilde{x}_u; e_c]` (the normalised, dropped-out row and the one-hot condition) and target
    :math:`x_u \odot m_c` (the user's items satisfying ``c``), plus one unconditioned example
    (:math:`e = 0`, target :math:`x_u`). The loss is Mult-VAE's on that target:

    .. math:: \mathcal{L} = \frac{1}{B}\sum_{(u,c)} \Bigl(-\sum_i x_{ui} m_{ci}
              \log\operatorname{softmax}\bigl(f_\theta(z_{uc})\bigr)_i
              + \beta_t\,\mathrm{KL}\bigl(q_\phi(z_{uc}\mid\tilde{x}_u, e_c)\,\Vert\,\mathcal{N}(0,I)\bigr)\Bigr)

    :meth:`score` is the unconditioned output (zero condition vector), so the model is a drop-in
    recommender (and early stopping monitors that unconditioned validation ranking);
    :meth:`score_conditioned` feeds conditions and sets the items satisfying none of them to ``-inf``;
    ``recommend``/``recommend_for_history`` take ``condition=`` (a label or a list of labels).
    """

    name: ClassVar[str] = "cmultivae"

    condition_col: str = "genres"

    # ------------------------------------------------------------------ training
    def _n_conditions(self) -> int:
        return len(self.conditions_)

    def _prepare(self, train: Interactions) -> None:
        matrix, self.conditions_ = item_condition_matrix(train.item_info, self.condition_col, train.n_items)
        self.item_conditions_ = torch.from_numpy(matrix.toarray() != 0)
        self._sampler = ConditionedRows(train.matrix, matrix, batch_size=self.batch_size)

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterable[Any]:
        for _, conditions, rows, targets in self._sampler(rng):
            yield (
                SparseRows.from_scipy(rows, device),
                self._one_hot(conditions, device),
                SparseRows.from_scipy(targets, device),
            )

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        rows, conditions, targets = batch
        logits, mu, logvar = module(rows, conditions, noise=True)
        return self._loss(module, logits, mu, logvar, targets, ctx)

    def _one_hot(self, conditions: np.ndarray, device: torch.device) -> torch.Tensor:
        out = torch.zeros((len(conditions), len(self.conditions_)), dtype=torch.float32)
        has = np.flatnonzero(conditions >= 0)
        out[torch.from_numpy(has), torch.from_numpy(conditions[has])] = 1.0
        return out.to(device)

    # ------------------------------------------------------------------ conditions
    def condition_indices(self, labels: Any) -> np.ndarray:
        """Indices of condition labels (one label or a list of them); unknown labels raise ``ValueError``."""
        self.check_fitted()
        wanted = [labels] if isinstance(labels, str) or not isinstance(labels, Iterable) else list(labels)
        index = {str(c): i for i, c in enumerate(self.conditions_)}
        missing = [w for w in wanted if str(w) not in index]
        if missing:
            raise ValueError(f"unknown condition(s) {missing}; known: {', '.join(map(str, self.conditions_))}")
        return np.array([index[str(w)] for w in wanted], dtype=np.int64)

    def _condition_block(self, conditions: Any, n_rows: int) -> torch.Tensor:
        """``n_rows x n_conditions`` float block from condition indices (one per row, -1: none) or multi-hot rows."""
        arr = np.asarray(conditions)
        n_cond = len(self.conditions_)
        if arr.ndim == 1:
            if len(arr) != n_rows:
                raise ValueError(f"{len(arr)} conditions for {n_rows} history rows")
            if not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < -1 or arr.max(initial=0) >= n_cond:
                raise ValueError(f"conditions must be integers in [-1, {n_cond}), got {arr!r}")
            block = self._one_hot(arr.astype(np.int64), torch.device("cpu"))
        elif arr.ndim == 2 and arr.shape == (n_rows, n_cond):
            block = torch.from_numpy((arr != 0).astype(np.float32))
        else:
            raise ValueError(f"conditions must be {n_rows} indices or a {n_rows} x {n_cond} array, got {arr.shape}")
        return block.to(self.device_)

    def score_conditioned(
        self, history: sp.csr_array, conditions: Any, users: np.ndarray | None = None
    ) -> torch.Tensor:
        """Scores of the history rows under their conditions; items satisfying none of a row's conditions get ``-inf``.

        ``conditions``: one condition index per row (``-1``: unconditioned, nothing masked) or a rows x
        conditions multi-hot array (an item is kept if it satisfies any active condition).
        """
        history = self._check_history(history, users)
        block = self._condition_block(conditions, history.shape[0])
        with torch.no_grad():
            logits, _, _ = self.module_(self._rows(history), block, noise=False)
            allowed = (block @ self.item_conditions_.to(block.device, torch.float32).T) > 0
            allowed |= (block.sum(dim=1) == 0)[:, None]
            return logits.float().masked_fill_(~allowed, float("-inf"))

    def latent(self, history: sp.csr_array, conditions: Any = None) -> torch.Tensor:
        """``mu`` of ``q(z | x, c)`` per history row (``conditions`` as in :meth:`score_conditioned`; None: zeros)."""
        history = self._check_history(history, None)
        block = None if conditions is None else self._condition_block(conditions, history.shape[0])
        with torch.no_grad():
            mu, _ = self.module_.encode(self._rows(history), block, noise=False)
        return mu.float()

    def _ranking_scores(self, history: sp.csr_array, users: np.ndarray | None, condition: Any = None) -> torch.Tensor:
        """Unconditioned scores, or with ``condition`` (a label or labels) only items satisfying it ranked.

        ``recommend``/``recommend_for_history`` pass ``condition=`` through to here.
        """
        if condition is None:
            return self.score(history, users)
        block = np.zeros((history.shape[0], len(self.conditions_)), dtype=np.float32)
        block[:, self.condition_indices(condition)] = 1.0
        return self.score_conditioned(history, block, users)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {**super()._state(), "item_conditions": self.item_conditions_.to(torch.uint8)}

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.item_conditions_ = tensors["item_conditions"].bool()
        super()._load_state(tensors)

    def _state_info(self) -> dict[str, Any]:
        return {**super()._state_info(), "conditions": list(self.conditions_)}

    def _load_state_info(self, info: dict[str, Any]) -> None:
        super()._load_state_info(info)
        self.conditions_ = list(info["conditions"])
