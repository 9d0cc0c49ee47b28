r"""Implicit alternating least squares (iALS): matrix factorisation of implicit feedback, every unobserved pair a
weak zero.

Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008, with the loss and the
hyper-parameters of Rendle, Krichene, Zhang & Koren, "Revisiting the Performance of iALS on Item Recommendation
Benchmarks", RecSys 2022 (arXiv 2110.14037): an unobserved weight :math:`\alpha_0`, a regularisation scaled by
frequency, large embeddings. See :class:`IALS`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.weighting import Weighting
from recforge.models.foldin import PaddedRows, Solver, solve_gram_rows
from recforge.models.neural import Monitor, TorchRecommender
from recforge.models.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, hyperparameters
from recforge.models.weighted import WeightingParams
from recforge.training.trainer import Losses, StepContext

__all__ = ["IALS", "IALSModule"]


class IALSModule(nn.Module):
    """The factor tables (buffers: they are solved for, not trained by gradient) and one ALS sweep."""

    def __init__(self, n_users: int, n_items: int, dim: int, *, init_std: float, generator: torch.Generator):
        super().__init__()
        start = init_std * torch.randn(n_users + n_items, dim, generator=generator)
        self.register_buffer("user_factors", start[:n_users].clone())
        self.register_buffer("item_factors", start[n_users:].clone())

    @torch.no_grad()
    def sweep(self, data: IALSData, *, alpha0: float, solver: Solver, cg_steps: int) -> dict[str, float]:
        r"""Items given the users, then users given the items (so that a known user's factors are the solve of
        their row against the final item factors, exactly what a fold-in of the same row gives); returns the
        training loss after the sweep per observed pair (:meth:`loss`, from the user half's residuals: with
        :math:`A_u p_u = b_u - r_u`, the loss is :math:`\sum c - \sum_u p_u^\top (b_u + r_u)
        + \sum_i \lambda_i \lVert q_i \rVert^2`)."""
        users, items = self.user_factors, self.item_factors
        gram = alpha0 * (users.T @ users)
        solve_gram_rows(
            data.by_item.rows, users, gram, data.by_item.reg, solver=solver, start=items, out=items, cg_steps=cg_steps
        )
        gram = alpha0 * (items.T @ items)
        _, rows_part = solve_gram_rows(
            data.by_user.rows,
            items,
            gram,
            data.by_user.reg,
            solver=solver,
            start=users,
            out=users,
            cg_steps=cg_steps,
            objective=True,
        )
        item_penalty = float((data.by_item.reg[:, 0].double() * items.double().square().sum(1)).sum())
        return {"loss": (data.weight_sum + rows_part + item_penalty) / max(data.nnz, 1)}

    @torch.no_grad()
    def loss(self, data: IALSData, alpha0: float, *, unobserved_only: bool = False) -> float:
        r"""The objective :math:`\sum_{obs} c (1 - s)^2 + \alpha_0 \sum_{all} s^2 + \sum_u \lambda_u \lVert p_u
        \rVert^2 + \sum_i \lambda_i \lVert q_i \rVert^2` (float64 sums), computed directly (a pass over the data);
        ``unobserved_only``: the :math:`\alpha_0` sum over the unobserved pairs only (``alpha0_pairs="unobserved"``,
        whose observed pairs carry ``a = c - alpha0``)."""
        users, items = self.user_factors, self.item_factors
        total = alpha0 * float(((users.T @ users) * (items.T @ items)).sum())
        total += float((data.by_user.reg[:, 0].double() * users.double().square().sum(1)).sum())
        total += float((data.by_item.reg[:, 0].double() * items.double().square().sum(1)).sum())
        for blk in data.by_user.rows.blocks:
            f = items[blk.cols.clamp(max=len(items) - 1)].view(len(blk.rows), blk.length, -1)
            s = torch.bmm(users[blk.rows].unsqueeze(1), f.mT).squeeze(1)
            c = blk.b.double()  # the confidences (padding: 0)
            total += float((c * (1.0 - s.double()).square()).sum())
            if unobserved_only:
                observed = blk.cols.view(len(blk.rows), blk.length) < len(items)
                total -= alpha0 * float((observed * s.double().square()).sum())
        return total


@dataclass
class IALSSide:
    """One side of the factorisation as a sweep solves it: its rows (weights on both sides of the equations) and
    the regularisation of every row, (rows x 1)."""

    rows: PaddedRows
    reg: torch.Tensor


@dataclass
class IALSData:
    """The weighted training matrix, by user and by item."""

    by_user: IALSSide
    by_item: IALSSide
    nnz: int
    #: the sum of the confidences c over the observed pairs
    weight_sum: float


@hyperparameters
class IALS(WeightingParams, TorchRecommender):
    r"""Implicit ALS (Hu, Koren & Volinsky, ICDM 2008) with the loss and hyper-parameters of Rendle, Krichene, Zhang &
    Koren, "Revisiting the Performance of iALS on Item Recommendation Benchmarks" (RecSys 2022, arXiv 2110.14037).

    .. math::
        \min_{P, Q} \sum_{(u,i) \in S} c_{ui} (1 - p_u \cdot q_i)^2
            + \alpha_0 \sum_{u} \sum_{i} (p_u \cdot q_i)^2
            + \sum_u \lambda_u \lVert p_u \rVert^2 + \sum_i \lambda_i \lVert q_i \rVert^2,

        \lambda_u = \text{l2}\,(|I_u| + \alpha_0 |I|)^{\nu}, \qquad
        \lambda_i = \text{l2}\,(|U_i| + \alpha_0 |U|)^{\nu},

    with :math:`S` the observed pairs (``alpha0_pairs="unobserved"``: the :math:`\alpha_0` sum runs over the pairs
    outside :math:`S` only, Hu et al.'s form -- an observed pair then has weight :math:`c_{ui}` on
    :math:`(1 - p_u \cdot q_i)^2` alone, its target stays 1 however small :math:`c_{ui}`; with :math:`\alpha_0 = 1`
    it is the model of the ``implicit`` package's ALS) and :math:`c_{ui}` the training values weighted by ``weighting``
    (:mod:`recforge.data.weighting`): ``"log"`` (default), the confidence
    :math:`1 + \alpha \log(1 + r_{ui} / \varepsilon)` of Hu et al.; ``"linear"``, their
    :math:`1 + \alpha r_{ui}`; ``"binary"`` (Rendle et al.'s set-up: every :math:`c_{ui} = 1`); ``"bm25"``
    (``bm25_k1``, ``bm25_b``, the items as documents, as the ``implicit`` package's Last.fm example); ``"tfidf"``;
    ``"none"`` (the values as they are, what ``implicit``'s ALS takes as confidences). ``nu = 0`` is the plain
    L2 penalty, ``nu = 1`` Rendle et al.'s frequency scaling. Only the ratio of :math:`\alpha_0` to the
    confidences matters to the data term: the defaults (``alpha0=0.3``, ``l2=0.03``, 64 dimensions, chosen on
    ML-100K's validation users) suit confidences near 1; BM25 weights run to the tens or hundreds and want a
    larger :math:`\alpha_0` (about 10 on Last.fm 2K play counts). Factors start at
    :math:`\mathcal N(0, \text{init\_scale}^2 / \text{embedding\_dim})`, drawn from a generator seeded with
    ``seed``.

    **Training.** Fixing one side, the loss is quadratic in the other, row by row:
    :math:`(\alpha_0 Q^\top Q + \sum_{i \in I_u} c_{ui} q_i q_i^\top + \lambda_u I) p_u = \sum_{i \in I_u} c_{ui}
    q_i` (the Gram matrix of every item once, corrections on the observed items only; :math:`c_{ui} - \alpha_0` in
    the corrections with ``alpha0_pairs="unobserved"``). One Trainer epoch is one
    sweep: every item given the users, then every user given the items, all rows of a side at once in
    bounded-memory blocks (:func:`~recforge.models.foldin.solve_gram_rows`), on the CPU or the GPU. ``solver``:
    ``"cholesky"``, exact (batched Cholesky); ``"cg"``, ``cg_steps`` conjugate-gradient steps per row from the
    current factors (Takács, Pilászy & Tikk 2011, as the ``implicit`` package: O(|I_u| k) per row and step
    instead of O(|I_u| k^2 + k^3)). No optimiser; the logged ``train_loss`` is the objective after the sweep per
    observed pair. With a ``valid`` part, validation after each sweep (``monitor``) gives early stopping
    (``patience`` sweeps) and the best sweep's factors.

    **Scores** are :math:`p_u \cdot q_i`. A known user is scored with their factors; a new user
    (``score(history, users=None)``) is folded in by one exact solve of their row of the objective against the
    fixed items (their history weighted as the training rows were, with the training statistics), which for a
    training user's own row gives back their factors (the user half comes last in a sweep).
    """

    name: ClassVar[str] = "ials"
    folds_in_from_history: ClassVar[bool] = False

    embedding_dim: PositiveInt = 64
    alpha0: NonNegativeFloat = 0.3
    l2: PositiveFloat = 0.03
    nu: NonNegativeFloat = 1.0
    alpha0_pairs: Literal["all", "unobserved"] = "all"
    init_scale: PositiveFloat = 0.1
    weighting: Weighting = "log"
    solver: Solver = "cholesky"
    cg_steps: PositiveInt = 3
    max_epochs: PositiveInt = 16
    patience: NonNegativeInt = 3
    monitor: Monitor = "ndcg@100"
    seed: int = 0

    def _system_weights(self, confidences: np.ndarray) -> np.ndarray:
        """The weight of an observed pair's :math:`q q^\top` in the normal equations: :math:`c` when
        :math:`\alpha_0` covers every pair (its part is in the Gram matrix), :math:`c - \alpha_0` when it covers the
        unobserved ones only."""
        return confidences - self.alpha0 if self.alpha0_pairs == "unobserved" else confidences

    def _reg(self, counts: np.ndarray, n_other: int) -> torch.Tensor:
        """:math:`\\lambda` of rows with ``counts`` observed entries against ``n_other`` columns, (rows x 1)."""
        base = counts.astype(np.float64) + self.alpha0 * n_other
        return torch.from_numpy(self.l2 * base**self.nu).float().unsqueeze(1).to(self.device_)

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        weighted = self.fit_weighting(train.matrix)
        by_item_matrix = sp.csr_array(weighted.T)
        n_users, n_items = weighted.shape
        dim, device = self.embedding_dim, self.device_

        def side(matrix: sp.csr_array, n_other: int) -> IALSSide:
            a = self._system_weights(matrix.data)
            rows = PaddedRows.build(matrix, a, matrix.data, device=device, dim=dim, solver=self.solver)
            return IALSSide(rows, self._reg(rows.counts, n_other))

        self.ials_data_ = IALSData(
            side(weighted, n_items),
            side(by_item_matrix, n_users),
            weighted.nnz,
            float(weighted.data.sum(dtype=np.float64)),
        )

    def _release(self) -> None:
        self.__dict__.pop("ials_data_", None)

    def build_module(self) -> nn.Module:
        return IALSModule(
            len(self.users_),
            len(self.items_),
            self.embedding_dim,
            init_std=self.init_scale / self.embedding_dim**0.5,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """None: each step is a sweep that solves the factors in place."""
        return []

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        yield self.ials_data_  # one sweep per epoch

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        assert isinstance(module, IALSModule) and isinstance(batch, IALSData)
        values = module.sweep(batch, alpha0=self.alpha0, solver=self.solver, cg_steps=self.cg_steps)
        return {name: torch.tensor(value) for name, value in values.items()}

    # ------------------------------------------------------------------ scores
    def fold_in(self, history: sp.csr_array) -> torch.Tensor:
        """User factors (rows x embedding_dim) of new users: one exact solve of each history row (weighted as the
        training rows were) against the fixed item factors."""
        self.check_fitted()
        history = sp.csr_array(history)
        weighted = self.weigh(history)
        items = self.module_.item_factors
        a = self._system_weights(weighted.data)
        rows = PaddedRows.build(weighted, a, weighted.data, device=items.device, dim=items.shape[1])
        gram = self.alpha0 * (items.T @ items)
        factors = solve_gram_rows(rows, items, gram, self._reg(rows.counts, items.shape[0]))
        assert isinstance(factors, torch.Tensor)
        return factors

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """:math:`p_u \\cdot q_i` for every item: known users by their factors, new users folded in (class doc)."""
        history = self._check_history(history, users)
        with torch.no_grad():
            module = self.module_
            if users is not None:
                index = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device_)
                factors = module.user_factors[index]
            else:
                factors = self.fold_in(history)
            return (factors @ module.item_factors.T).float()
