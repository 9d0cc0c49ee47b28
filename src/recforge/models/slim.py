"""ADMM-SLIM (Steck, Dimakopoulou, Riabov & Jebara 2020): a sparse item-item weight matrix fitted by ADMM.

The SLIM objective separates over the columns of ``B``, and so does every ADMM update, so the solver runs all
its iterations on one block of columns at a time: only a few ``n_items x width`` blocks are held, and the
finished block of ``C`` is kept sparse at once. The linear system of the ``B`` step is solved either in item
space (``P = (X^T X + (l2 + rho) I)^{-1}``, dense ``n_items x n_items``, computed once) or, when there are fewer
users than items, in user space by the Woodbury identity (``K = X X^T + (l2 + rho) I``, ``n_users x n_users``),
which gives the same ``P`` applied to a block at a fraction of the cost.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import scipy.sparse as sp
import torch

from recforge.data.interactions import Interactions
from recforge.models.base import BaseRecommender, csr_to_torch
from recforge.models.linear import blocked_scores, dense_item_gram, score_blocks, spd_inverse_
from recforge.models.params import NonNegativeFloat, PositiveFloat, PositiveInt, hyperparameters
from recforge.models.weighted import WeightingParams

if TYPE_CHECKING:
    from recforge.data.splits import EvalPart
    from recforge.training.options import TrainingOptions

#: ``rho`` when none is given: this multiple of ``l2`` (the paper ties the penalty to the L2 weight).
RHO_PER_L2 = 1.0
#: ADMM iterations by default (ML-100K validation NDCG@100, l1=1, l2=200: 0.5356 at 20, 0.5345 at 50;
#: benchmarks/RESULTS.md)
ITERATIONS = 20
#: Bytes of one ``n_items x width`` float32 block of the ADMM state (four such blocks are live).
ADMM_BLOCK_BYTES = 32 << 20

Solver = Literal["auto", "items", "users"]


# ---------------------------------------------------------------------------------------------------- B step
class _ItemSpace:
    """The B step with the dense ``P = (X_c^T X_c + mu I)^{-1}`` (``n_items x n_items``), computed once."""

    def __init__(self, matrix: sp.csr_array, bias: torch.Tensor | None, mu: float, device: torch.device):
        gram = dense_item_gram(matrix, device)
        if bias is not None:  # X_c^T X_c = X^T X - n_users b b^T
            gram.addr_(bias, bias, alpha=-float(matrix.shape[0]))
        gram.diagonal().add_(mu)
        self.p = spd_inverse_(gram, what="ADMM-SLIM: X^T X + (l2 + rho) I", fix="increase l2")
        self.diag_p = self.p.diagonal().clone()
        self.mu = mu

    def block(self, a: int, b: int) -> tuple[int, int]:
        return a, b

    def b_step(self, ctx: tuple[int, int], d: torch.Tensor | None, rho: float, out: torch.Tensor) -> torch.Tensor:
        """``out = P (X_c^T X_c + rho D) - P diag(gamma)`` for the columns ``a:b``, zero on their diagonal."""
        a, b = ctx
        p_cols = self.p[:, a:b]
        if d is None or rho == 0.0:
            torch.mul(p_cols, -self.mu, out=out)
        else:
            torch.mm(self.p, d, out=out)  # P D
            out.mul_(rho).add_(p_cols, alpha=-self.mu)  # P (X^T X + rho D) = I - mu P + rho P D
        diag = out[a:b].diagonal()
        diag.add_(1.0)
        gamma = diag / self.diag_p[a:b]
        out.addcmul_(p_cols, gamma.unsqueeze(0), value=-1.0)
        out[a:b].diagonal().zero_()  # exactly zero (it is, up to rounding)
        return out


class _UserSpace:
    """The B step through the Woodbury identity: ``P = (I - X_c^T K^{-1} X_c) / mu`` with the ``n_users x n_users``
    ``K = X_c X_c^T + mu I`` (its inverse computed once), never forming ``P``.

    For a block ``J`` of columns, with ``s = rho / mu``, ``W_J = K^{-1} X_c[:, J]`` and ``D = C - Gamma``:
    ``P (X_c^T X_c + rho D) = s D + X_c^T K^{-1} (X_c[:, J] - s X_c D)`` and ``mu diag(P)_J = 1 - diag(X_c^T W)_J``.
    """

    def __init__(self, matrix: sp.csr_array, bias: torch.Tensor | None, mu: float, device: torch.device):
        x = sp.csr_array(matrix, dtype=np.float32)
        self.x = csr_to_torch(x, device)
        self.xt = csr_to_torch(x.T.tocsr(), device)
        self.csc = x.tocsc()
        self.bias = bias
        self.device = device
        k = dense_item_gram(x.T.tocsr(), device)  # X X^T (users x users)
        if bias is not None:  # X_c X_c^T = X X^T - v 1^T - 1 v^T + (b.b) 1 1^T with v = X b
            v = torch.sparse.mm(self.x, bias.unsqueeze(1)).squeeze(1)
            ones = torch.ones_like(v)
            k.addr_(v, ones, alpha=-1.0).addr_(ones, v, alpha=-1.0).add_(float(bias @ bias))
        k.diagonal().add_(mu)
        self.k_inv = spd_inverse_(k, what="ADMM-SLIM: X X^T + (l2 + rho) I", fix="increase l2")
        self.mu = mu

    def block(self, a: int, b: int) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]:
        cols = torch.from_numpy(self.csc[:, a:b].toarray()).to(self.device)  # X[:, J] (users x width)
        if self.bias is not None:
            cols.sub_(self.bias[a:b])
        w = self.k_inv @ cols
        denom = 1.0 - (cols * w).sum(0)  # mu diag(P)_J > 0
        return a, b, cols, w, denom

    def b_step(self, ctx: tuple, d: torch.Tensor | None, rho: float, out: torch.Tensor) -> torch.Tensor:
        a, b, cols, w, denom = ctx
        s = rho / self.mu
        if d is None or rho == 0.0:
            r = w.clone()
            diag = (cols * r).sum(0)
            out.zero_()
        else:
            xd = torch.sparse.mm(self.x, d)  # X D (users x width)
            if self.bias is not None:
                xd.sub_(self.bias @ d)
            r = torch.mm(self.k_inv, xd)
            r.mul_(-s).add_(w)  # K^{-1} (X_c[:, J] - s X_c D)
            diag = (cols * r).sum(0).add_(d[a:b].diagonal(), alpha=s)
            torch.mul(d, s, out=out)
        gamma = diag / denom  # diag(B~) / (mu diag(P)), the Lagrangian correction of diag(B) = 0, over mu
        r.addcmul_(w, gamma.unsqueeze(0))
        torch.addmm(out, self.xt, r, out=out)  # += X^T R
        if self.bias is not None:
            out.addr_(self.bias, r.sum(0), alpha=-1.0)
        out[a:b].diagonal().sub_(gamma)
        out[a:b].diagonal().zero_()  # exactly zero (it is, up to rounding)
        return out


def _choose_solver(matrix: sp.csr_array, solver: Solver) -> Solver:
    if solver != "auto":
        return solver
    m, n = matrix.shape
    # flops of one B step for all columns: dense P D (2 n^3) against X D, K^{-1} (.), X^T (.) (2 m^2 n + 4 nnz n)
    return "users" if m * m + 2 * matrix.nnz < n * n else "items"


# ---------------------------------------------------------------------------------------------------- solver
@dataclass
class SlimWeights:
    """A fitted item-item matrix: ``dense`` (n x n) or the CSR parts of a sparse one, and the item biases."""

    n_items: int
    dense: torch.Tensor | None = None
    crow: torch.Tensor | None = None
    col: torch.Tensor | None = None
    values: torch.Tensor | None = None
    bias: torch.Tensor | None = None

    @property
    def nnz(self) -> int:
        return int(self.values.numel()) if self.values is not None else int(torch.count_nonzero(self.dense))

    def to_dense(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        return self.sparse().to_dense()

    def sparse(self) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(
                self.crow, self.col, self.values, size=(self.n_items, self.n_items), check_invariants=False
            )


def _block_width(n: int) -> int:
    return max(1, min(n, ADMM_BLOCK_BYTES // (4 * max(n, 1))))


def _sparse_is_smaller(nnz: int, n: int) -> bool:
    return 12 * nnz + 8 * (n + 1) < 4 * n * n  # int64 column index + float32 value per entry, against dense


def admm_slim(
    matrix: sp.csr_array,
    *,
    l1: float,
    l2: float,
    rho: float,
    nonnegative: bool,
    item_bias: bool = False,
    iterations: int = ITERATIONS,
    device: torch.device | str = "cpu",
    solver: Solver = "auto",
    closed_form: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> SlimWeights:
    """Fit ADMM-SLIM's ``C`` to the users x items ``matrix`` (see :class:`ADMMSLIM` for the updates).

    ``closed_form`` (default: when ``l1 == 0`` and not ``nonnegative``) returns the exact minimiser
    (EASE's, with ``l2``) instead of iterating; ``solver`` picks the space of the B step's linear solve
    (``"auto"``: the cheaper). The result is kept sparse when that is smaller than dense.
    """
    log = log or (lambda _message: None)
    device = torch.device(device)
    x = sp.csr_array(matrix, dtype=np.float32)
    n = x.shape[1]
    bias = torch.from_numpy(np.asarray(x.mean(axis=0), dtype=np.float32)).to(device) if item_bias else None
    if closed_form is None:
        closed_form = l1 == 0 and not nonnegative
    space = _choose_solver(x, solver)
    mu = float(l2) if closed_form else float(l2) + float(rho)
    t0 = time.perf_counter()
    op = (_UserSpace if space == "users" else _ItemSpace)(x, bias, mu, device)
    log(f"ADMM-SLIM: {space}-space solve ready in {time.perf_counter() - t0:.1f}s ({x.shape[0]:,} users, {n:,} items)")
    width = _block_width(n)
    if closed_form:
        weights = torch.empty((n, n), dtype=torch.float32, device=device)
        for a in range(0, n, width):
            b = min(n, a + width)
            op.b_step(op.block(a, b), None, 0.0, weights[:, a:b])
        return SlimWeights(n, dense=weights, bias=bias)
    threshold = float(l1) / float(rho)
    log_every = max(1, iterations // 5)
    rows: list[torch.Tensor] = []
    cols: list[torch.Tensor] = []
    vals: list[torch.Tensor] = []
    state = [torch.empty((n, width), dtype=torch.float32, device=device) for _ in range(4)]
    for a in range(0, n, width):
        b = min(n, a + width)
        c, gamma, bb, d = (t[:, : b - a] for t in state)
        c.zero_()
        gamma.zero_()
        ctx = op.block(a, b)
        trace = []
        for it in range(1, iterations + 1):
            torch.sub(c, gamma, out=d)  # D = C - Gamma
            op.b_step(ctx, d, rho, bb)  # B = P (X^T X + rho D) - P diag(gamma)
            gamma.add_(bb)  # A = B + Gamma
            _shrink(gamma, threshold, nonnegative, out=c)  # C = soft-threshold(A), clamped at 0
            c[a:b].diagonal().zero_()
            gamma.sub_(c)  # Gamma = A - C, i.e. Gamma + B - C
            if it % log_every == 0 or it == iterations:
                trace.append(f"{it}: {float(torch.dist(bb, c)) / max(float(torch.linalg.vector_norm(c)), 1e-12):.1e}")
        log(f"ADMM-SLIM: items {a:,}-{b - 1:,}: ||B - C|| / ||C|| after iteration " + ", ".join(trace))
        nz = torch.nonzero(c)  # (row, column in block)
        rows.append(nz[:, 0])
        cols.append(nz[:, 1] + a)
        vals.append(c[nz[:, 0], nz[:, 1]])
    del state
    row = torch.cat(rows)
    col = torch.cat(cols)
    val = torch.cat(vals)
    if not _sparse_is_smaller(len(val), n):
        dense = torch.zeros((n, n), dtype=torch.float32, device=device)
        dense[row, col] = val
        return SlimWeights(n, dense=dense, bias=bias)
    order = torch.argsort(row * n + col)
    counts = torch.bincount(row, minlength=n)
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    torch.cumsum(counts, 0, out=crow[1:])
    return SlimWeights(n, crow=crow, col=col[order].contiguous(), values=val[order].contiguous(), bias=bias)


def _shrink(a: torch.Tensor, threshold: float, nonnegative: bool, *, out: torch.Tensor) -> None:
    """``out = sign(a) max(|a| - threshold, 0)``, clamped at 0 when ``nonnegative`` (no temporary)."""
    if nonnegative:
        torch.sub(a, threshold, out=out) if threshold > 0 else out.copy_(a)
        out.clamp_(min=0.0)
    elif threshold > 0:
        torch.clamp(a, -threshold, threshold, out=out)
        torch.sub(a, out, out=out)
    else:
        out.copy_(a)


# ---------------------------------------------------------------------------------------------------- model
@hyperparameters
class ADMMSLIM(WeightingParams, BaseRecommender):
    r"""ADMM-SLIM: a sparse, non-negative item-item weight matrix with a zero diagonal, fitted by ADMM.

    Steck, H., Dimakopoulou, M., Riabov, N. & Jebara, T. (2020). *ADMM SLIM: Sparse Recommendations for Many
    Users.* WSDM '20, 555-563.

    .. math::
        \min_{B, C}\ \tfrac12 \|X - XB\|_F^2 + \tfrac{\lambda_2}{2} \|B\|_F^2 + \lambda_1 \|C\|_1
        \quad \text{s.t.}\ \operatorname{diag}(B) = 0,\ B = C\ (,\ C \ge 0),

    solved by ADMM with the penalty :math:`\rho` (scaled dual :math:`\Gamma`) and
    :math:`P = (X^\top X + (\lambda_2 + \rho) I)^{-1}` computed once; each iteration

    .. math::
        \tilde B = P\,(X^\top X + \rho\,(C - \Gamma)),\quad
        B = \tilde B - P \operatorname{diagMat}(\operatorname{diag}(\tilde B) \oslash \operatorname{diag}(P)),\\
        C = S_{\lambda_1/\rho}(B + \Gamma)\ (\text{then } \max(\cdot, 0)),\quad \Gamma \leftarrow \Gamma + B - C,

    with :math:`S_t(a) = \operatorname{sign}(a) \max(|a| - t, 0)`; the model is :math:`C` and a user with history
    row :math:`x_u` gets the scores :math:`x_u C`. The four variants: ``l1`` (0 turns the L1 penalty off) and
    ``nonnegative``; with both off the minimiser is EASE's closed form with ``l2`` (returned directly, no
    iterations). ``item_bias``: ``X`` is centred by the item means :math:`b` and the scores are
    :math:`(x_u - b)\,C + b`. ``rho`` defaults to ``RHO_PER_L2 * l2``.

    The objective separates over the columns of :math:`B`, so the iterations run on one block of columns at a
    time (a few ``n_items x width`` float32 blocks live, no ``n_items^2`` state besides :math:`P`), and when
    there are fewer users than items the B step uses the Woodbury identity (an ``n_users x n_users`` inverse
    instead of :math:`P`). :math:`C` is kept sparse (CSR) when that is smaller than dense, and scores are sparse
    products with it. Everything runs in float32 on ``device``; scores depend on the history only, so new users
    fold in for free.
    """

    name: ClassVar[str] = "admmslim"
    folds_in_from_history: ClassVar[bool] = True

    l1: NonNegativeFloat = 1.0
    l2: PositiveFloat = 500.0
    rho: PositiveFloat | None = None
    nonnegative: bool = True
    item_bias: bool = False
    iterations: PositiveInt = ITERATIONS

    @property
    def penalty(self) -> float:
        """The ADMM penalty ``rho`` in use (``RHO_PER_L2 * l2`` unless given)."""
        return float(self.rho) if self.rho is not None else RHO_PER_L2 * float(self.l2)

    def _fit(self, train: Interactions, valid: EvalPart | None, options: TrainingOptions) -> None:
        weights = admm_slim(
            self.fit_weighting(train.matrix),
            l1=self.l1,
            l2=self.l2,
            rho=self.penalty,
            nonnegative=self.nonnegative,
            item_bias=self.item_bias,
            iterations=self.iterations,
            device=self.device_,
            log=options.log,
        )
        self._set_weights(weights)

    def _set_weights(self, weights: SlimWeights) -> None:
        self.weights_ = weights
        self.blocks_ = score_blocks(weights.dense) if weights.dense is not None else None
        self.sparse_ = weights.sparse() if weights.dense is None else None
        self.offset_ = None
        if weights.bias is not None:  # scores (x - b) C + b = x C + (b - b C)
            self.offset_ = weights.bias - self._product(sp.csr_array(weights.bias.cpu().numpy()[None, :]))[0]

    def _product(self, history: sp.csr_array) -> torch.Tensor:
        if self.blocks_ is not None:
            return blocked_scores(history, self.blocks_, self.weights_.n_items)
        device = self.sparse_.device
        if history.nnz == 0:
            return torch.zeros((history.shape[0], self.weights_.n_items), dtype=torch.float32, device=device)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse.mm(csr_to_torch(history, device), self.sparse_).to_dense()

    def item_weights(self) -> torch.Tensor:
        """The learned ``n_items x n_items`` matrix ``C`` (zero diagonal), dense, on its device."""
        self.check_fitted()
        return self.weights_.to_dense()

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        history = self._check_history(history, users)
        scores = self._product(self.weigh(history))
        if self.offset_ is not None:
            scores.add_(self.offset_)
        return scores

    def _state(self) -> dict[str, torch.Tensor]:
        w = self.weights_
        state = {"weights": w.dense} if w.dense is not None else {"crow": w.crow, "col": w.col, "values": w.values}
        if w.bias is not None:
            state["bias"] = w.bias
        return state

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        n = self.n_items
        dev = self.device_
        bias = tensors["bias"].to(dev, torch.float32) if self.item_bias else None
        if "weights" in tensors:
            weights = SlimWeights(n, dense=tensors["weights"].to(dev, torch.float32), bias=bias)
        else:
            crow, col, values = (tensors[k] for k in ("crow", "col", "values"))
            if crow.shape != (n + 1,) or col.shape != values.shape or int(crow[-1]) != len(col):
                raise ValueError(f"sparse weights do not fit {n} items")
            weights = SlimWeights(
                n, crow=crow.to(dev, torch.int64), col=col.to(dev, torch.int64), values=values.to(dev, torch.float32)
            )
            weights.bias = bias
        self._set_weights(weights)
