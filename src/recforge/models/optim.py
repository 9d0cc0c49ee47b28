r"""What the models share to update their parameters: Adam in one fused kernel where the device has one
(:func:`adam`), and the row updates of the steps that write their gradient out instead of calling autograd
(:func:`lazy_adam_`, :func:`row_sgd_`, with :class:`RowMoments` keeping lazy Adam's moments in checkpoints).

Lazy Adam (torch's :class:`~torch.optim.SparseAdam` rule) updates only the rows ``R`` a step has a gradient for:

.. math::
    m_R \leftarrow \beta_1 m_R + (1 - \beta_1) g_R, \quad v_R \leftarrow \beta_2 v_R + (1 - \beta_2) g_R^2,
    \quad \theta_R \leftarrow \theta_R - \eta \frac{m_R / (1 - \beta_1^t)}{\sqrt{v_R / (1 - \beta_2^t)} + \epsilon}

with :math:`t` the global step; the other rows and their moments do not move. On a step where every row has a
gradient (e.g. the first step from fresh moments, where a row without gradient does not move under Adam either)
it is exactly :class:`~torch.optim.Adam`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from recforge.training.callbacks import Callback

__all__ = ["RowMoments", "adam", "lazy_adam_", "row_sgd_"]


def adam(params: nn.Module | Iterable[nn.Parameter], lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam over a module's (or a list of) parameters, fused on CPU and CUDA.

    The fused step is 1.5x faster on large embedding tables and about 20% faster for Mult-VAE at ML-20M size
    ([20720-600-200-600-20720], batch 500: 0.33 vs 0.40 s a step), where the optimiser touches every parameter.
    """
    params = list(params.parameters() if isinstance(params, nn.Module) else params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def lazy_adam_(
    param: torch.Tensor,
    moments: dict[Any, torch.Tensor],
    rows: torch.Tensor | None,
    grad: torch.Tensor,
    step: int,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    *,
    distinct: bool = False,
    key: Any = None,
) -> None:
    """Lazy Adam (module docstring) on the rows ``rows`` of ``param`` (every row when None), in place, given one
    gradient row per entry of ``rows`` (repeated rows summed first, unless ``distinct`` says there are none).

    ``moments[key]`` (``key`` defaults to ``id(param)``) holds the first and second moments side by side (one
    gather and one scatter a step); it is created at zero on the first call. ``step`` counts from 1.
    """
    if rows is not None and not distinct:
        rows, inverse = torch.unique(rows, return_inverse=True)
        grad = torch.zeros((len(rows), *grad.shape[1:]), dtype=grad.dtype, device=grad.device).index_add_(
            0, inverse, grad
        )
    key = id(param) if key is None else key
    if key not in moments:
        moments[key] = torch.zeros((2, *param.shape), dtype=param.dtype, device=param.device)
    both = moments[key]
    b1, b2 = betas
    mv = both if rows is None else both.index_select(1, rows)
    m, v = mv[0], mv[1]
    m.lerp_(grad, 1.0 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1.0 - b2)
    # m_hat / (sqrt(v_hat) + eps) = sqrt(c2) m / (sqrt(v) + eps sqrt(c2)) / c1, c = 1 - beta^step: fewer passes
    root_c2 = math.sqrt(1.0 - b2**step)
    denom = v.sqrt().add_(eps * root_c2)
    scale = -lr * root_c2 / (1.0 - b1**step)
    if rows is None:
        param.addcdiv_(m, denom, value=scale)
    else:
        both.index_copy_(1, rows, mv)
        param.index_add_(0, rows, m.div_(denom), alpha=scale)


def row_sgd_(param: torch.Tensor, rows: torch.Tensor | None, grad: torch.Tensor, lr: float) -> None:
    r""":math:`\theta_R \leftarrow \theta_R - \eta g_R` in place (repeated rows add up, as torch's SGD on a sparse
    gradient; every row when ``rows`` is None)."""
    if rows is None:
        param.add_(grad, alpha=-lr)
    else:
        param.index_add_(0, rows, grad, alpha=-lr)


class RowMoments(Callback):
    """Lazy Adam's moments (``moments``, by parameter name) of a step that writes its gradient out, held by a
    callback so that the Trainer's checkpoints carry them: a resumed training continues with the same moments.
    A model makes a new one for every ``fit``."""

    def __init__(self) -> None:
        self.moments: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"moments": dict(self.moments)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.moments = dict(state["moments"])
