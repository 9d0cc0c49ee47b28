r"""The point-estimate factor network of ClassicMF and BiasedMF, and its batch loss with a hand-written gradient.

:class:`FactorModule` predicts :math:`\hat r_{ui} = \mu + [b_u + b_i] + U_u \cdot I_i`; its :meth:`~FactorModule.loss`
is the mean squared error plus the per-event L2 term of a mini-batch, whose factor part (:class:`DotLoss`) has its
gradient written out. The Gibbs-sampled module of :mod:`recforge.models.gibbs` is a :class:`FactorModule` too.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["DotLoss", "FactorModule", "dot_gradients"]


class FactorModule(nn.Module):
    """mu + [b_u + b_i] + U_u . I_i; mu is a learnable scalar started at the training mean.

    With ``sparse`` every table (mu too, as a one-row table) yields sparse gradients: a step then touches only
    the rows of its batch, whatever the number of users and items.
    """

    def __init__(
        self, n_users: int, n_items: int, dim: int, *, biases: bool, mean: float, init_std: float, sparse: bool
    ):
        super().__init__()
        self.user_factors = nn.Embedding(n_users, dim, sparse=sparse)
        self.item_factors = nn.Embedding(n_items, dim, sparse=sparse)
        nn.init.normal_(self.user_factors.weight, std=init_std)
        nn.init.normal_(self.item_factors.weight, std=init_std)
        self.biases = biases
        if biases:
            self.user_bias = nn.Embedding(n_users, 1, sparse=sparse)
            self.item_bias = nn.Embedding(n_items, 1, sparse=sparse)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
        self.mean = nn.Embedding(1, 1, sparse=sparse)
        nn.init.constant_(self.mean.weight, float(mean))

    @property
    def global_mean(self) -> torch.Tensor:
        """The learned :math:`\\mu` (a detached 0-dim view of the one-row table)."""
        return self.mean.weight[0, 0].detach()

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.predict_and_penalty(users, items)[0]

    def item_offset(self) -> torch.Tensor:
        r""":math:`\mu + b_i` of every item (:math:`\mu` without biases): the part no user parameter changes."""
        n_items = self.item_factors.num_embeddings
        bias = self.item_bias.weight[:, 0] if self.biases else torch.zeros(n_items, device=self.mean.weight.device)
        return self.global_mean + bias

    def user_scores(self, users: torch.Tensor) -> torch.Tensor:
        """Predictions of every item (rows x n_items) for the known users ``users``."""
        out = self.user_factors(users) @ self.item_factors.weight.T + self.item_offset()[None, :]
        return out + self.user_bias(users) if self.biases else out

    def predict_and_penalty(
        self, users: torch.Tensor, items: torch.Tensor, l2: float = 0.0, bias_l2: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions of the pairs and the per-event L2 term of the batch (autograd reference of :meth:`loss`)."""
        pu, qi = self.user_factors(users), self.item_factors(items)
        out = torch.einsum("bd,bd->b", pu, qi) + self._offset(users, items)
        penalty = l2 * (pu.square().sum(-1) + qi.square().sum(-1)).mean()
        if self.biases:
            penalty = penalty + bias_l2 * (self.user_bias(users).square() + self.item_bias(items).square()).mean()
        return out, penalty

    def _offset(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out = self.mean(torch.zeros_like(users))[:, 0]
        if self.biases:
            out = out + self.user_bias(users)[:, 0] + self.item_bias(items)[:, 0]
        return out

    def loss(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, l2: float, bias_l2: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean squared error + per-event L2 term, mean squared error) of a batch, from one gather of each table.

        The factor part has a hand-written backward (:class:`DotLoss`): a few passes over the batch x dim blocks
        instead of autograd's ~10, which is most of an epoch on large data.
        """
        bu_bi = self.user_bias(users).square() + self.item_bias(items).square() if self.biases else None
        loss, mse = DotLoss.apply(
            self.user_factors(users), self.item_factors(items), self._offset(users, items), ratings, float(l2)
        )
        if bu_bi is not None and bias_l2:
            loss = loss + bias_l2 * bu_bi.mean()
        return loss, mse

    def row_gradients(
        self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, l2: float, bias_l2: float
    ) -> tuple[dict[str, torch.Tensor], list[tuple[str, torch.Tensor, torch.Tensor | None, torch.Tensor]]]:
        r"""The batch's :meth:`loss` and its gradient without autograd: ``({"loss", "mse"}, [(name, table, rows,
        gradient rows)])``, one entry per table, ``rows`` the batch's (repeated) indices into it (None: the whole
        one-row table of :math:`\mu`).

        With :math:`e_b` the error of event :math:`b` and :math:`g_b = \frac2B e_b`: :func:`dot_gradients` for the
        factors, :math:`\sum_b g_b` for :math:`\mu`, and :math:`g_b + \frac{2\lambda_b}{B} b_u` for the bias of
        event :math:`b`'s user (likewise its item's). Call under ``torch.no_grad()``; the tables are not changed.
        """
        n = max(len(ratings), 1)
        user_w, item_w, mean_w = self.user_factors.weight, self.item_factors.weight, self.mean.weight
        pu, qi = user_w.index_select(0, users), item_w.index_select(0, items)  # cheaper than w[idx] per call
        err = torch.linalg.vecdot(pu, qi).add_(mean_w.view(1)).sub_(ratings)
        if self.biases:
            user_b, item_b = self.user_bias.weight, self.item_bias.weight
            bu, bi = user_b.view(-1).index_select(0, users), item_b.view(-1).index_select(0, items)
            err.add_(bu).add_(bi)
        grad_pu, grad_qi, grad_err = dot_gradients(pu, qi, err, l2)
        mse = err.dot(err).div_(n)
        if l2:  # the logged loss: few operations (one step of a small batch costs a few dozen)
            flat = torch.cat((pu.view(-1), qi.view(-1)))
            loss = torch.add(mse, flat.dot(flat), alpha=l2 / n)
        else:
            loss = mse
        grads = [
            ("user_factors", user_w, users, grad_pu),
            ("item_factors", item_w, items, grad_qi),
            ("mean", mean_w, None, grad_err.sum().view(1, 1)),
        ]
        if self.biases:
            decay = 2.0 * bias_l2 / n
            grads.append(("user_bias", user_b, users, torch.add(grad_err, bu, alpha=decay)[:, None]))
            grads.append(("item_bias", item_b, items, torch.add(grad_err, bi, alpha=decay)[:, None]))
            if bias_l2:
                flat = torch.cat((bu, bi))
                loss = torch.add(loss, flat.dot(flat), alpha=bias_l2 / n)
        return {"loss": loss, "mse": mse}, grads


class DotLoss(torch.autograd.Function):
    r"""The batch loss :math:`\frac1B \sum_b (p_b \cdot q_b + o_b - r_b)^2
    + \frac{\lambda}{B} \sum_b (\lVert p_b \rVert^2 + \lVert q_b \rVert^2)`
    and the mean squared error alone (not differentiable), with the gradient written out:
    :math:`\partial / \partial p_b = \frac2B (e_b q_b + \lambda p_b)`, likewise for :math:`q_b`, and
    :math:`\frac2B e_b` for the offset :math:`o_b`."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, pu: torch.Tensor, qi: torch.Tensor, offset: torch.Tensor, ratings: torch.Tensor, l2: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(ratings)
        err = torch.einsum("bd,bd->b", pu, qi) + offset - ratings
        mse = err.square().mean()
        flat_p, flat_q = pu.reshape(-1), qi.reshape(-1)
        loss = mse + l2 * (torch.dot(flat_p, flat_p) + torch.dot(flat_q, flat_q)) / max(n, 1)
        ctx.save_for_backward(pu, qi, err)
        ctx.l2 = l2
        ctx.mark_non_differentiable(mse)
        return loss, mse

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_mse: torch.Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        pu, qi, err = ctx.saved_tensors
        grad_pu, grad_qi, grad_err = dot_gradients(pu, qi, err, ctx.l2, grad_loss)
        return grad_pu, grad_qi, grad_err, None, None


def dot_gradients(
    pu: torch.Tensor, qi: torch.Tensor, err: torch.Tensor, l2: float, scale: torch.Tensor | float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The gradient of :class:`DotLoss` (times ``scale``) with respect to :math:`p_b`, :math:`q_b` and the offset
    :math:`o_b`, given the errors :math:`e_b = p_b \cdot q_b + o_b - r_b`:
    :math:`\frac2B (e_b q_b + \lambda p_b)`, :math:`\frac2B (e_b p_b + \lambda q_b)` and :math:`\frac2B e_b`.
    Used by :meth:`DotLoss.backward` and by the autograd-free step :meth:`FactorModule.row_gradients`."""
    n = max(len(err), 1)
    if isinstance(scale, torch.Tensor):
        grad_err, decay = err * (2.0 / n) * scale, (2.0 * l2 / n) * scale
    else:
        grad_err, decay = err * (2.0 * scale / n), 2.0 * l2 * scale / n
    column = grad_err.unsqueeze(1)
    if isinstance(decay, float) and decay == 0.0:
        return column * qi, column * pu, grad_err
    return torch.addcmul(pu * decay, column, qi), torch.addcmul(qi * decay, column, pu), grad_err
