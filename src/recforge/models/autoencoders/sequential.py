"""The sequential VAE (SVAE): a VAE per step of a GRU over each user's time-ordered items.

:class:`SVAENet` is the network, :func:`next_k_targets` the next-``k`` items of every step that
:func:`~recforge.models.autoencoders.losses.next_k_nll` scores; :class:`SVAE`'s docstring gives the
loss and how a history's order is chosen at scoring time.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recforge.data.interactions import Interactions
from recforge.data.samplers import Sequences, pad_sequences
from recforge.models.autoencoders.losses import gaussian_kl, next_k_nll
from recforge.models.autoencoders.networks import xavier_linear
from recforge.models.autoencoders.params import AutoencoderParams, NonNegative, annealing
from recforge.models.neural import TorchRecommender
from recforge.models.optim import adam
from recforge.models.params import NonNegativeInt, PositiveInt, hyperparameters
from recforge.training.callbacks import Callback
from recforge.training.trainer import Losses, StepContext


class SVAENet(nn.Module):
    """Item embedding -> GRU -> per step [hidden (tanh) -> (mu, log-variance)] -> z -> [hidden (tanh) -> items].

    Item ``i`` is token ``i + 1``; token 0 is padding (zero embedding). Sequences are left-aligned, so a
    step's GRU state never depends on the padding after it.
    """

    def __init__(self, n_items: int, embedding_dim: int, rnn_dim: int, hidden_dim: int, latent_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_items + 1, embedding_dim, padding_idx=0)
        self.gru = nn.GRU(embedding_dim, rnn_dim, batch_first=True)
        self.encoder = xavier_linear(rnn_dim, hidden_dim)
        self.to_latent = xavier_linear(hidden_dim, 2 * latent_dim)
        self.decoder = nn.ModuleList([xavier_linear(latent_dim, hidden_dim), xavier_linear(hidden_dim, n_items)])

    def states(self, padded: torch.Tensor) -> torch.Tensor:
        """GRU output at every step: ``B x L x rnn_dim``."""
        out, _ = self.gru(self.embedding(padded))
        return out

    def encode(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_latent(torch.tanh(self.encoder(states))).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder[1](torch.tanh(self.decoder[0](z)))

    def last_mu(self, padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``mu`` after the last item of each sequence (after the initial zero state for an empty one)."""
        out = self.states(padded)
        last = out[torch.arange(len(lengths), device=out.device), (lengths - 1).clamp_min(0)]
        last = torch.where((lengths > 0)[:, None], last, torch.zeros_like(last))
        return self.encode(last)[0]


def next_k_targets(padded: torch.Tensor, next_k: int) -> torch.Tensor:
    """``B x L x k`` tokens: entry ``[b, t, j - 1]`` is the ``j``-th item after step ``t`` (0 past the end)."""
    length = padded.shape[1]
    extended = F.pad(padded, (0, next_k))
    return torch.stack([extended[:, j : j + length] for j in range(1, next_k + 1)], dim=2)


@hyperparameters
class SVAE(AutoencoderParams, TorchRecommender):
    r"""Sequential VAE (Sachdeva, Manco, Ritacco & Pudi 2019, WSDM '19): a VAE per step of a GRU over the item sequence.

    For user ``u`` with time-ordered items :math:`s_{u,1..T}`, the GRU state :math:`h_{ut}` after
    :math:`s_{u,\le t}` parameterises :math:`q(z_{ut}\mid h_{ut}) = \mathcal{N}(\mu_{ut}, \sigma^2_{ut})`
    and the decoder a multinomial :math:`\operatorname{softmax}(f(z_{ut}))` over the next ``next_k``
    items. The loss is the per-step negative beta-ELBO averaged over the ``N`` steps that have a next item:

    .. math:: \mathcal{L} = \frac{1}{N}\sum_{(u,t)}\Bigl(-\frac{1}{k}\sum_{j=1}^{k}
              \log\operatorname{softmax}\bigl(f(z_{ut})\bigr)_{s_{u,t+j}}
              + \beta_t\,\mathrm{KL}\bigl(q(z_{ut}\mid h_{ut})\,\Vert\,\mathcal{N}(0, I)\bigr)\Bigr)

    (svae_cf sums over one user's steps with batch size 1; the mean over the batch's steps is that up to
    a constant per batch). :math:`\beta_t = \min(\beta, t/\text{anneal\_steps})` as in svae_cf, with
    ``anneal_steps`` derived from the planned updates by default (``None``: the cap is reached after 80% of them,
    see :func:`~recforge.models.autoencoders.params.derived_anneal_steps`; svae_cf's fixed 200,000 is
    ``anneal_steps=200000``); ``l2`` is Adam's weight decay (svae_cf: 5e-3).

    **Order of a history.** Training uses each training user's events in time order (``Interactions``
    keeps them sorted by user then timestamp; without timestamps, event order, with a warning), the last ``max_length``
    of each. :meth:`score` predicts from the state after the last item of the history: for known users
    (``users`` given) the history's items are taken in the order of that user's stored training sequence
    (repeats kept), followed by the history's items absent from it (events after training, e.g. the
    validation item of ``leave_last_out``) in column order; for new users (``users=None``) a CSR row has
    no time order, so the history's **column order** is used. Scores therefore depend on per-user state.
    """

    name: ClassVar[str] = "svae"
    folds_in_from_history: ClassVar[bool] = False

    #: rows scored per GRU pass (bounds the ``rows x max_length x rnn_dim`` activations)
    score_chunk: ClassVar[int] = 256

    embedding_dim: PositiveInt = 256
    rnn_dim: PositiveInt = 200
    hidden_dim: PositiveInt = 150
    latent_dim: PositiveInt = 64
    next_k: PositiveInt = 4
    max_length: PositiveInt = 200
    beta: NonNegative = 0.2
    anneal_steps: NonNegativeInt | None = None
    max_epochs: PositiveInt = 25
    batch_size: PositiveInt = 64
    patience: NonNegativeInt = 5

    # ------------------------------------------------------------------ training
    def _prepare(self, train: Interactions) -> None:
        if train.timestamps is None:
            warnings.warn(
                "SVAE: the training data has no timestamps, so each user's sequence is the order of the events in "
                "the file; give a timestamp column (data.timestamp_col) if that order is not the time order",
                UserWarning,
                stacklevel=4,
            )
        data = train.sorted()
        self.sequence_indptr_ = np.searchsorted(data.user_idx, np.arange(data.n_users + 1)).astype(np.int64)
        self.sequence_items_ = data.item_idx.astype(np.int64)
        keep = np.diff(self.sequence_indptr_)[data.user_idx] >= 2  # a step needs a next item
        if not keep.any():
            raise ValueError("SVAE needs at least one training user with two or more events")
        n_sequences = int((np.diff(self.sequence_indptr_) >= 2).sum())
        self._batches_per_epoch = -(-n_sequences // self.batch_size)
        self._sampler = Sequences(
            data.user_idx[keep],
            data.item_idx[keep],
            data.n_users,
            batch_size=self.batch_size,
            max_length=self.max_length,
        )

    def _release(self) -> None:
        self._sampler = None

    def configure_optimizers(self, module: nn.Module) -> Sequence[torch.optim.Optimizer]:
        """Adam at ``learning_rate`` with weight decay ``l2`` (svae_cf: 5e-3)."""
        return [adam(module, self.learning_rate, self.l2)]

    def build_module(self) -> SVAENet:
        return SVAENet(len(self.items_), self.embedding_dim, self.rnn_dim, self.hidden_dim, self.latent_dim)

    def extra_callbacks(self) -> list[Callback]:
        planned = self.max_epochs * self._batches_per_epoch if self.anneal_steps is None else 0
        return [annealing(self.beta, self.anneal_steps, planned)]

    def batches(self, rng: np.random.Generator, device: torch.device) -> Iterator[Any]:
        for _, padded, _ in self._sampler(rng):
            yield torch.from_numpy(padded).to(device)

    def training_step(self, module: nn.Module, batch: Any, ctx: StepContext) -> Losses:
        targets = next_k_targets(batch, self.next_k)
        has_next = targets[..., 0] > 0
        states = module.states(batch)[has_next]
        mu, logvar = module.encode(states)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        nll = next_k_nll(module.decode(z), targets[has_next], self.next_k)
        kl = gaussian_kl(mu, logvar)
        loss = nll + ctx.values.get("beta", self.beta) * kl
        return {"loss": loss, "nll": nll.detach(), "kl": kl.detach()}

    # ------------------------------------------------------------------ scoring
    def _history_sequences(self, history: sp.csr_array, users: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Per history row, its items in sequence order as ``(indptr, items)`` (see the class doc)."""
        n_rows, n_items = history.shape
        hist_row = np.repeat(np.arange(n_rows), np.diff(history.indptr))
        hist_item = history.indices.astype(np.int64)
        if users is None:
            order = np.lexsort((hist_item, hist_row))  # column order within a row
            rows, items = hist_row[order], hist_item[order]
        else:
            users = np.asarray(users, dtype=np.int64)
            start = self.sequence_indptr_[users]
            length = self.sequence_indptr_[users + 1] - start
            offsets = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(length.sum())
            seq_row = np.repeat(np.arange(n_rows), length)
            seq_item = self.sequence_items_[offsets]
            hist_keys = hist_row * n_items + hist_item
            seq_keys = seq_row * n_items + seq_item
            in_history = np.isin(seq_keys, hist_keys)
            new = ~np.isin(hist_keys, seq_keys)
            new_order = np.lexsort((hist_item[new], hist_row[new]))
            rows = np.concatenate([seq_row[in_history], hist_row[new][new_order]])
            items = np.concatenate([seq_item[in_history], hist_item[new][new_order]])
            order = np.argsort(rows, kind="stable")  # stored sequence first, then the new items
            rows, items = rows[order], items[order]
        indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64)
        return indptr, items

    def _last_mu(self, history: sp.csr_array, users: np.ndarray | None) -> Iterator[torch.Tensor]:
        indptr, items = self._history_sequences(history, users)
        for start in range(0, history.shape[0], self.score_chunk):
            rows = np.arange(start, min(start + self.score_chunk, history.shape[0]))
            padded, lengths = pad_sequences(indptr, items, rows, self.max_length)
            with torch.no_grad():
                yield self.module_.last_mu(
                    torch.from_numpy(padded).to(self.device_), torch.from_numpy(lengths).to(self.device_)
                )

    def score(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """Next-items logits after the last item of each history row's sequence (order: see the class doc)."""
        history = self._check_history(history, users)
        if history.shape[0] == 0:
            return torch.zeros((0, self.n_items), dtype=torch.float32, device=self.device_)
        with torch.no_grad():
            return torch.cat([self.module_.decode(mu) for mu in self._last_mu(history, users)]).float()

    def latent(self, history: sp.csr_array, users: np.ndarray | None = None) -> torch.Tensor:
        """``mu`` of ``q(z | h)`` after the last item of each history row's sequence."""
        history = self._check_history(history, users)
        if history.shape[0] == 0:
            return torch.zeros((0, self.latent_dim), dtype=torch.float32, device=self.device_)
        return torch.cat(list(self._last_mu(history, users))).float()

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, torch.Tensor]:
        return {
            **super()._state(),
            "sequence.indptr": torch.from_numpy(self.sequence_indptr_),
            "sequence.items": torch.from_numpy(self.sequence_items_),
        }

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.sequence_indptr_ = tensors["sequence.indptr"].numpy().astype(np.int64)
        self.sequence_items_ = tensors["sequence.items"].numpy().astype(np.int64)
        super()._load_state(tensors)
