r"""Fold-in of new users: their own parameters fitted to their history rows against fixed item parameters.

Three ways, for every history row at once (batched; nothing here changes a model or its module):

* :func:`solve_ridge_rows` -- explicit ratings, squared error on the rated items only, ridge penalty
  (matrix factorisation, CoFi);
* :func:`solve_confidence_rows` -- implicit feedback, confidence-weighted squared error over **every** item
  (Hu, Koren, Volinsky 2008, the iALS user step), computed from the Gram matrix of all item factors plus
  corrections on the observed items only;
* :func:`fold_in_by_gradient` -- any differentiable model (NCF): Adam steps on the new users' vectors
  only, the network frozen by construction (the gradient is taken with respect to the new vectors alone).

The two solves are exact (normal equations, one batched ``torch.linalg.solve`` in float64).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["fold_in_by_gradient", "solve_confidence_rows", "solve_ridge_rows"]

#: Bytes of per-event outer products (nnz x k x k float64) built at a time by the solves.
_SOLVE_CHUNK_BYTES = 64 << 20

#: Output of the network for per-event user vectors (one tensor per user table, gathered by event) and items.
Forward = Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]
#: Per-event loss of (outputs, targets).
EventLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _history_events(
    history: sp.csr_array, device: torch.device
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(events per row, row of each event, item of each event, value of each event) of a CSR history."""
    counts = np.diff(history.indptr)
    rows = torch.from_numpy(np.repeat(np.arange(history.shape[0]), counts)).to(device)
    items = torch.from_numpy(history.indices.astype(np.int64)).to(device)
    values = torch.from_numpy(history.data.astype(np.float32)).to(device)
    return counts, rows, items, values


def _row_sums(
    n_rows: int,
    features: torch.Tensor,
    rows: torch.Tensor,
    items: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per row ``u``, in float64: :math:`\sum_{e \in u} w_e a_{i_e} a_{i_e}^\top` (rows x k x k) and
    :math:`\sum_{e \in u} t_e a_{i_e}` (rows x k), over the events ``e`` (``weight`` None: :math:`w_e = 1`)."""
    device, k = features.device, features.shape[1]
    gram = torch.zeros((n_rows, k, k), dtype=torch.float64, device=device)
    rhs = torch.zeros((n_rows, k), dtype=torch.float64, device=device)
    chunk = max(1, _SOLVE_CHUNK_BYTES // (8 * k * k))
    for start in range(0, len(items), chunk):
        sl = slice(start, start + chunk)
        a = features[items[sl]].double()
        outer = a[:, :, None] * a[:, None, :]
        if weight is not None:
            outer *= weight[sl, None, None].double()
        gram.index_add_(0, rows[sl], outer)
        rhs.index_add_(0, rows[sl], a * target[sl, None].double())
    return gram, rhs


def solve_ridge_rows(
    history: sp.csr_array,
    features: torch.Tensor,
    offset: torch.Tensor,
    reg: torch.Tensor,
    *,
    count_weighted: bool,
) -> torch.Tensor:
    r"""Fold-in: for every history row ``u`` at once, the ridge solution
    :math:`\arg\min_x \sum_{i \in I_u} (r_{ui} - o_i - a_i \cdot x)^2 + \sum_k \lambda_{uk} x_k^2`.

    ``history`` (rows x n_items CSR) holds the ratings :math:`r_{ui}`; ``features`` (n_items x k) the fixed
    item rows :math:`a_i`; ``offset`` (n_items) the fixed part :math:`o_i` of each item's prediction; ``reg``
    (k) the ridge weights, multiplied by the row's number of ratings (at least 1) when ``count_weighted``
    (the frequency-weighted penalty that a per-event L2 term in a mini-batch loss amounts to). All rows are
    solved at once from their normal equations :math:`(A_u^\top A_u + \Lambda_u) x = A_u^\top (r_u - o)`
    with one batched ``torch.linalg.solve``; a row without ratings gets ``x = 0``. Returns rows x k float32
    on the device of ``features``.
    """
    history = sp.csr_array(history)
    device = features.device
    n_rows, k = history.shape[0], features.shape[1]
    counts, rows, items, ratings = _history_events(history, device)
    gram, rhs = _row_sums(n_rows, features, rows, items, ratings - offset[items], None)
    lam = reg.double().to(device).expand(n_rows, k)
    if count_weighted:
        lam = lam * torch.from_numpy(np.maximum(counts, 1).astype(np.float64)).to(device)[:, None]
    gram.diagonal(dim1=1, dim2=2).add_(lam)
    return torch.linalg.solve(gram, rhs).float()


def solve_confidence_rows(
    history: sp.csr_array, features: torch.Tensor, reg: float | torch.Tensor, *, alpha: float
) -> torch.Tensor:
    r"""Fold-in for implicit feedback: for every history row ``u`` at once, the weighted least-squares solution

    .. math::
        \arg\min_x \sum_{i=1}^{n} c_{ui} (p_{ui} - a_i \cdot x)^2 + \lambda \lVert x \rVert^2, \qquad
        c_{ui} = 1 + \alpha r_{ui},\ p_{ui} = 1 \text{ on the observed items } I_u, \quad
        c_{ui} = 1,\ p_{ui} = 0 \text{ elsewhere}

    over **all** items (Hu, Koren, Volinsky 2008, the user step of implicit ALS). ``history`` (rows x n_items
    CSR) holds the values :math:`r_{ui} \ge 0` of the observed items, ``features`` (n_items x k) the fixed item
    rows :math:`a_i`, ``reg`` the ridge weight :math:`\lambda` (a float or k weights), ``alpha`` the
    confidence scale. The normal equations
    :math:`(A^\top A + \sum_{i \in I_u} \alpha r_{ui} a_i a_i^\top + \lambda I) x = \sum_{i \in I_u} c_{ui} a_i`
    are built the iALS way -- the Gram matrix :math:`A^\top A` of every item once, plus the corrections of the
    observed items only, never a dense rows x items weight matrix -- and solved with one batched
    ``torch.linalg.solve``. A row without observed items gets ``x = 0``. Returns rows x k float32 on the device
    of ``features``.
    """
    history = sp.csr_array(history)
    device = features.device
    n_rows, k = history.shape[0], features.shape[1]
    _, rows, items, values = _history_events(history, device)
    extra = alpha * values.double()  # c_ui - 1 on the observed items
    gram, rhs = _row_sums(n_rows, features, rows, items, 1.0 + extra, extra)
    all_items = features.double()
    gram += (all_items.T @ all_items)[None]
    lam = torch.as_tensor(reg, dtype=torch.float64, device=device).expand(k)
    gram.diagonal(dim1=1, dim2=2).add_(lam)
    return torch.linalg.solve(gram, rhs).float()


def fold_in_by_gradient(
    start: Sequence[torch.Tensor],
    rows: torch.Tensor,
    items: torch.Tensor,
    target: torch.Tensor,
    *,
    forward: Forward,
    event_loss: EventLoss,
    steps: int,
    lr: float,
    l2: float = 0.0,
) -> list[torch.Tensor]:
    r"""New users' vectors learned by ``steps`` Adam steps on their history, the network frozen.

    ``start`` holds the initial vectors (one rows x d tensor per user table, e.g. a GMF and an MLP embedding);
    the events are the parallel ``rows`` (the history row of each event), ``items`` and ``target``. Each step
    minimises :math:`\sum_e \ell(f(v_{r_e}, i_e), t_e) + l2 \sum_e \lVert v_{r_e} \rVert^2` (``forward`` is
    :math:`f`, ``event_loss`` is :math:`\ell`) over the vectors only: the gradient is
    ``torch.autograd.grad(loss, vectors)``, so the network's parameters, their ``requires_grad`` flags and
    ``.grad`` and its train/eval mode are never touched, and concurrent calls on one network are safe.
    ``forward`` runs as given: call it on a module in eval mode (as after ``fit`` or ``load``) so that dropout
    is off. Returns the learned vectors, detached; with no step or no event, copies of ``start``.
    """
    vectors = [v.detach().clone().requires_grad_(True) for v in start]
    if steps == 0 or len(rows) == 0:
        return [v.detach() for v in vectors]
    optimizer = torch.optim.Adam(vectors, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = event_loss(forward([v[rows] for v in vectors], items), target).sum()
            if l2 > 0:
                loss = loss + l2 * sum(v[rows].square().sum() for v in vectors)
            grads = torch.autograd.grad(loss, vectors)
            for vector, grad in zip(vectors, grads, strict=True):
                vector.grad = grad
            optimizer.step()
    return [v.detach() for v in vectors]
