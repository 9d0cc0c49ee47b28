r"""Bayesian Personalised Ranking matrix factorisation (Rendle, Freudenthaler, Gantner & Schmidt-Thieme, UAI 2009).

:class:`BPR` learns user vectors :math:`p_u`, item vectors :math:`q_i` and item biases :math:`b_i` from implicit
feedback by maximising the posterior of the pairwise order "a user prefers an item they interacted with to one
they did not", over triples :math:`(u, i, j)` with :math:`i` an observed item of :math:`u` and :math:`j` drawn
uniformly among the items :math:`u` has not interacted with. It is trained by the one Trainer (one epoch = one
triple per observed (user, item) pair, as the `implicit` package does) and validated by a ranking metric with
early stopping.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

from recforge.data.interactions import Interactions
from recforge.data.samplers import binary_rows, sample_negatives
from recforge.models.foldin import fold_in_by_gradient
from recforge.models.neural import Monitor, TorchRecommender
from recforge.models.optim import adam
from recforge.models.params import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt
from recforge.training.trainer import Losses, StepContext

__all__ = ["BPR", "BPRLoss", "BPRModule"]

BPROptimizer = Literal["adam", "sparse_adam", "sgd"]

#: Adam step size of the fold-in of new users.
FOLD_IN_LR = 0.05
#: Sampled negatives per observed item in the fold-in of a new user (drawn once, with the model's seed).
FOLD_IN_NEGATIVES = 8
#: Triples per fold-in chunk (bounds the memory of a fold-in of many users: chunk x embedding_dim floats).
FOLD_IN_CHUNK = 1 << 19


class BPRModule(nn.Module):
    r"""User vectors :math:`p_u`, item vectors :math:`q_i` and item biases :math:`b_i`: :math:`x_{ui} = p_u
    \cdot q_i + b_i`. With ``sparse`` the tables yield sparse gradients (a step touches only its batch's rows)."""

    def __init__(self, n_users: int, n_items: int, dim: int, *, init_std: float, sparse: bool):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_factors = nn.Embedding(n_items, dim, sparse=sparse)
        self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
        nn.init.normal_(self.user_factors.weight, std=init_std)
        nn.init.normal_(self.item_factors.weight, std=init_std)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """:math:`x_{ui}` of the (user, item) pairs."""
        return (self.user_factors(users) * self.item_factors(items)).sum(-1) + self.item_bias(items)[:, 0]

    def scores_of_vectors(self, vectors: torch.Tensor) -> torch.Tensor:
        """:math:`v \\cdot q_i + b_i` of every item for rows of user vectors (rows x n_items)."""
        return torch.addmm(self.item_bias.weight[:, 0][None, :], vectors, self.item_factors.weight.T)

    def loss(
        self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, l2: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(BPR loss with its per-triple L2 term, BPR loss alone) of a batch of triples, one gather per table."""
        return BPRLoss.apply(
            self.user_factors(users),
            self.item_factors(positives),
            self.item_factors(negatives),
            self.item_bias(positives)[:, 0],
            self.item_bias(negatives)[:, 0],
            float(l2),
        )


class BPRLoss(torch.autograd.Function):
    r"""The batch loss

    .. math::
        \frac1B \sum_b \Bigl[-\log\sigma(x_b) + \lambda\bigl(\lVert p_b\rVert^2 + \lVert q_{i_b}\rVert^2
        + \lVert q_{j_b}\rVert^2 + b_{i_b}^2 + b_{j_b}^2\bigr)\Bigr],
        \qquad x_b = p_b \cdot (q_{i_b} - q_{j_b}) + b_{i_b} - b_{j_b}

    and its BPR part alone (not differentiable), with the gradient written out
    (:math:`g_b = -\sigma(-x_b)/B`): :math:`\partial/\partial p_b = g_b (q_i - q_j) + \frac{2\lambda}{B} p_b`,
    :math:`\partial/\partial q_i = g_b p_b + \frac{2\lambda}{B} q_i`, :math:`\partial/\partial q_j = -g_b p_b +
    \frac{2\lambda}{B} q_j`, :math:`\partial/\partial b_i = g_b + \frac{2\lambda}{B} b_i`,
    :math:`\partial/\partial b_j = -g_b + \frac{2\lambda}{B} b_j`: a few passes over the batch x dim blocks
    instead of autograd's many."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        pu: torch.Tensor,
        qi: torch.Tensor,
        qj: torch.Tensor,
        bi: torch.Tensor,
        bj: torch.Tensor,
        l2: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(len(pu), 1)
        diff = qi - qj
        x = torch.einsum("bd,bd->b", pu, diff) + (bi - bj)
        nll = F.softplus(-x).sum() / n
        loss = nll
        if l2:
            squares = sum(torch.dot(t.reshape(-1), t.reshape(-1)) for t in (pu, qi, qj, bi, bj))
            loss = nll + l2 * squares / n
        ctx.save_for_backward(pu, qi, qj, bi, bj, diff, x)
        ctx.l2 = l2
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_nll: torch.Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        pu, qi, qj, bi, bj, diff, x = ctx.saved_tensors
        n = max(len(pu), 1)
        g = torch.sigmoid(-x).mul_(-grad_loss / n)
        decay = (2.0 * ctx.l2 / n) * grad_loss
        g_col = g[:, None]
        grad_pu = torch.addcmul(pu * decay, g_col, diff)
        gp = g_col * pu
        grad_qi = torch.add(gp, qi, alpha=decay) if ctx.l2 else gp
        grad_qj = torch.sub(qj * decay, gp)
        grad_bi = g + decay * bi
        grad_bj = decay * bj - g
        return grad_pu, grad_qi, grad_qj, grad_bi, grad_bj, None


class BPR(TorchRecommender):
    r"""BPR-MF: Rendle, Freudenthaler, Gantner & Schmidt-Thieme (2009), *BPR: Bayesian Personalized Ranking from
    Implicit Feedback*, UAI, with item biases.

    .. math::
        x_{ui} = p_u \cdot q_i + b_i, \qquad
        \min_{P, Q, b} \sum_{(u, i, j)} \Bigl[-\log \sigma(x_{ui} - x_{uj})
            + \lambda \bigl(\lVert p_u \rVert^2 + \lVert q_i \rVert^2 + \lVert q_j \rVert^2 + b_i^2 + b_j^2\bigr)\Bigr]

    over triples with :math:`i` an item the user interacted with and :math:`j` an item drawn uniformly among
    those they did not (``l2`` = :math:`\lambda`; the per-triple penalty is Rendle's SGD regularisation, so a
    user's or item's penalty grows with its number of triples). Each epoch draws one triple per observed
    (user, item) pair -- the pairs shuffled, each with a fresh negative
    (:func:`~recforge.data.samplers.sample_negatives`, one vectorised draw per epoch from the epoch's seeded
    generator) -- and cuts them into batches of ``batch_size``; the batch loss is the mean over its triples, with
    the gradient written out (:class:`BPRLoss`). Values (ratings, play counts) are ignored: any interaction is a
    positive. Vectors start at :math:`\mathcal N(0, \text{init\_std}^2)`, biases at 0.

    ``optimizer``: ``"adam"`` (default; dense gradients, fused kernel), ``"sparse_adam"`` (lazy Adam on sparse
    gradients: a step touches only its batch's rows, the fastest on large catalogues) or ``"sgd"`` (Rendle's
    LearnBPR with mini-batches; sparse gradients; the learning rate applies to the batch-mean loss, so it must
    grow with ``batch_size``). With ``valid``, the ranking metric ``monitor`` is computed after every epoch and
    drives early stopping (``patience``) and the best checkpoint.

    **New users** (``score(history, users=None)``, ``recommend_for_history``) are folded in on the same
    objective: their vectors, started at the mean training user vector, take ``fold_in_steps`` Adam steps
    (:func:`~recforge.models.foldin.fold_in_by_gradient`) on the BPR loss of their history -- each observed item
    against 8 items drawn among their unobserved ones with the model's ``seed`` -- with the per-triple penalty
    ``fold_in_l2``, item vectors and biases frozen. ``fold_in_l2`` is larger than ``l2`` by default: the training
    users' vectors are also held back by early stopping, a fold-in run to its optimum is not and over-fits a short
    history (ML-100K liang2018, ``l2=1e-3``: validation NDCG@100 0.50 with a fold-in L2 of 0.03, 0.45 with 1e-3).
    A gradient fold-in rather than a least-squares one: BPR's item vectors are fitted to score *differences* under
    a logistic loss; the iALS solve (:func:`~recforge.models.foldin.solve_confidence_rows`) projects the history
    onto them under a squared error, another objective (on the same ML-100K model it reached test NDCG@100 0.37-0.41
    over its confidence and ridge weights, the gradient fold-in 0.43). The user's part of the BPR objective is convex
    in :math:`p_u`. Known users are scored with their
    learned vectors (``folds_in_from_history`` is False).
    """

    name: ClassVar[str] = "bpr"
    folds_in_from_history: ClassVar[bool] = False

    embedding_dim: int
    l2: float
    optimizer: BPROptimizer
    init_std: float
    fold_in_steps: int
    fold_in_l2: float

    def __init__(
        self,
        *,
        embedding_dim: PositiveInt = 64,
        l2: NonNegativeFloat = 3e-3,
        learning_rate: PositiveFloat = 5e-3,
        batch_size: PositiveInt = 1024,
        max_epochs: PositiveInt = 100,
        patience: NonNegativeInt = 10,
        optimizer: BPROptimizer = "adam",
        init_std: PositiveFloat = 0.1,
        fold_in_steps: NonNegativeInt = 50,
        fold_in_l2: NonNegativeFloat = 0.03,
        monitor: Monitor = "ndcg@100",
        seed: int = 0,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        seen = train.binary
        self.seen_ = seen
        self.pair_users_ = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
        self.pair_items_ = seen.indices.astype(np.int64)
        if (np.diff(seen.indptr) >= seen.shape[1]).any():
            raise ValueError("BPR needs every user to leave at least one item unobserved (a negative to sample)")

    def _release(self) -> None:
        for key in ("seen_", "pair_users_", "pair_items_"):
            self.__dict__.pop(key, None)

    def build_module(self) -> nn.Module:
        return BPRModule(
            len(self.users_),
            len(self.items_),
            self.embedding_dim,
            init_std=self.init_std,
            sparse=self.optimizer in ("sparse_adam", "sgd"),
        )

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam (dense), SparseAdam or SGD (sparse gradients) at ``learning_rate``; the L2 term is in the loss."""
        if self.optimizer == "sparse_adam":
            return [torch.optim.SparseAdam(list(module.parameters()), lr=self.learning_rate)]
        if self.optimizer == "sgd":
            return [torch.optim.SGD(module.parameters(), lr=self.learning_rate)]
        return [adam(module.parameters(), self.learning_rate)]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
        """One triple per observed pair, shuffled, negatives drawn for the whole epoch at once (in user order, where
        :func:`~recforge.data.samplers.sample_negatives` is fastest, then shuffled with the pairs)."""
        negatives = sample_negatives(self.seen_, self.pair_users_, 1, rng)[:, 0]
        order = rng.permutation(len(self.pair_users_))
        users = self.pair_users_[order]
        positives = self.pair_items_[order]
        negatives = negatives[order]
        for start in range(0, len(order), self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield (
                torch.from_numpy(users[sl]).to(device, non_blocking=True),
                torch.from_numpy(positives[sl]).to(device, non_blocking=True),
                torch.from_numpy(negatives[sl]).to(device, non_blocking=True),
            )

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        users, positives, negatives = batch
        assert isinstance(module, BPRModule)
        loss, nll = module.loss(users, positives, negatives, self.l2)
        return {"loss": loss, "bpr": nll}

    # ------------------------------------------------------------------ scores
    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """:math:`p_u \\cdot q_i + b_i` of every item: known users by their vectors, new users folded in."""
        history = self._check_history(history, users)
        module = self.module_
        assert isinstance(module, BPRModule)
        with torch.no_grad():
            if users is not None:
                idx = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device_)
                vectors = module.user_factors.weight[idx]
            else:
                vectors = self.fold_in(history)
            return module.scores_of_vectors(vectors).float()

    def fold_in(self, history: sp.csr_array) -> torch.Tensor:
        """User vectors (rows x embedding_dim) learned for new users from their history rows (module doc).

        Deterministic for a given history matrix (the negatives are drawn with the model's ``seed``); the module
        is only read, so concurrent fold-ins are safe.
        """
        self.check_fitted()
        history = sp.csr_array(history)
        module = self.module_
        assert isinstance(module, BPRModule)
        q = module.item_factors.weight.detach()
        b = module.item_bias.weight.detach()[:, 0]
        n_rows, dim = history.shape[0], q.shape[1]
        out = module.user_factors.weight.detach().mean(0).expand(n_rows, dim).clone()
        if history.nnz == 0 or self.fold_in_steps == 0:
            return out
        seen = binary_rows(history)
        counts = np.diff(seen.indptr)
        n_neg = FOLD_IN_NEGATIVES
        full = counts >= seen.shape[1]  # no item left to sample: such a user keeps the mean vector
        rng = np.random.default_rng(self.seed)
        ends = np.cumsum(counts * n_neg)
        cuts = np.searchsorted(ends, np.arange(FOLD_IN_CHUNK, int(ends[-1]), FOLD_IN_CHUNK), side="right")
        bounds = np.unique(np.r_[0, cuts, n_rows])
        for first, last in itertools.pairwise(bounds):
            rows = np.arange(first, last)
            rows = rows[~full[rows] & (counts[rows] > 0)]
            if len(rows):
                out[rows] = self._fold_in_rows(seen, rows, q, b, out[rows], rng)
        return out

    def _fold_in_rows(
        self,
        seen: sp.csr_array,
        rows: np.ndarray,
        q: torch.Tensor,
        b: torch.Tensor,
        start: torch.Tensor,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """Gradient fold-in of the history rows ``rows`` of ``seen`` (each with at least one unobserved item)."""
        n_neg = FOLD_IN_NEGATIVES
        block = seen[rows]
        local = np.repeat(np.arange(len(rows)), np.diff(block.indptr))
        negatives = sample_negatives(seen, rows[local], n_neg, rng).reshape(-1)
        event_rows = np.repeat(local, n_neg)
        positives = np.repeat(block.indices.astype(np.int64), n_neg)
        dev = q.device
        pos_t = torch.from_numpy(positives).to(dev)
        neg_t = torch.from_numpy(negatives).to(dev)
        diff = q[pos_t] - q[neg_t]
        bias_diff = b[pos_t] - b[neg_t]
        owner = torch.from_numpy(event_rows).to(dev)
        n_triples = torch.bincount(owner, minlength=len(rows)).to(q.dtype)
        l2 = float(self.fold_in_l2)

        def objective(vectors: Sequence[torch.Tensor], users: torch.Tensor) -> torch.Tensor:
            # one "event" per user: the BPR loss of all the user's triples plus its per-triple penalty
            # (index_select/index_add, whose backward passes are each other: no sort-based index_put)
            v = vectors[0]
            x = torch.einsum("bd,bd->b", v.index_select(0, owner), diff) + bias_diff
            nll = torch.zeros(len(v), dtype=x.dtype, device=dev).index_add_(0, owner, F.softplus(-x))
            return nll + l2 * n_triples * v.square().sum(-1) if l2 else nll

        users = torch.arange(len(rows), device=dev)
        (vectors,) = fold_in_by_gradient(
            [start],
            users,
            users,
            torch.zeros(len(rows), device=dev),
            forward=objective,
            event_loss=lambda output, target: output,
            steps=self.fold_in_steps,
            lr=FOLD_IN_LR,
        )
        return vectors
