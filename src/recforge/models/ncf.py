r"""Neural collaborative filtering (He, Liao, Zhang, Nie, Hu, Chua 2017, *Neural Collaborative Filtering*, WWW '17).

* :class:`GMF` -- generalised matrix factorisation, :math:`\hat y_{ui} = h^\top (p_u \odot q_i) + c`;
* :class:`MLP` -- a ReLU tower over the concatenated embeddings, :math:`\hat y_{ui} = h^\top \phi_L(\dots
  \phi_1([p_u; q_i])) + c`;
* :class:`NeuMF` -- both, fused by one prediction layer, :math:`\hat y_{ui} = h^\top [p^G_u \odot q^G_i;\;
  \phi(p^M_u, q^M_i)] + c`, optionally started from pretrained GMF and MLP (:meth:`NeuMF.from_pretrained`);
* :class:`HybridNeuMF` -- NeuMF whose prediction layer also sees a fixed, pretrained embedding :math:`e_i` of
  the item read from a file (the Goodreads notebook's hybrid model): :math:`\hat y_{ui} = h^\top [e_i;\;
  p^G_u \odot q^G_i;\; \phi(p^M_u, q^M_i)] + c`.

``loss="mse"``: :math:`\hat y` is the rating, trained with the squared error on the observed ratings (explicit
feedback, as in the Goodreads notebook), validated by RMSE. ``loss="bce"``: :math:`\hat y` is a logit, trained
with the binary cross-entropy of every observed interaction (label 1) and ``n_negatives`` items per positive
drawn uniformly among the user's unseen items each epoch (label 0), as in He et al.; validated by a ranking metric
(``monitor``; the sampled-negatives protocol when the validation part has negatives). Every model is trained by
the one Trainer (Adam, or SGD), with an optional per-event L2 penalty on the embeddings of the batch.

The ``loss`` picks the objective object (:mod:`recforge.models.objectives`) that the shared half
(:class:`~recforge.models.ncf_base.NCFRecommender`, with the network) delegates to; each model declares its towers
(``_towers``).

**New users** (``score(history, users=None)``): a user has no learned embedding, so fold-in *learns* one: the new
users' embeddings (every tower's) start at the mean training user embedding and are optimised for
``fold_in_steps`` Adam steps on the training loss of their history rows -- squared error on their ratings
(``mse``) or cross-entropy of their items against ``n_negatives`` unseen items each, drawn once with ``seed``
(``bce``) -- with the network and the item side frozen (:func:`~recforge.models.foldin.fold_in_by_gradient`:
the gradient is taken for the new vectors only, so the shared network is never touched and concurrent fold-ins
are safe). All rows are optimised together, so it is batched, deterministic and exact in spirit: the same
objective as training, restricted to the user's own parameters. An empty history keeps the mean user.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

import pydantic
import torch
from torch import nn

from recforge.data.embeddings import read_item_embeddings
from recforge.data.interactions import Interactions
from recforge.data.text import REVIEW_TEXT, item_text_embeddings
from recforge.models.ncf_base import Dropout, Layers, NCFRecommender, Towers
from recforge.models.params import PositiveInt, hyperparameters

__all__ = ["GMF", "MLP", "HybridNeuMF", "NeuMF"]


# ====================================================================== the models
_COMMON_DOC = """
    Hyper-parameters shared by the family: ``loss`` ("mse": ratings; "bce": implicit feedback with
    ``n_negatives`` sampled negatives per positive), ``l2`` (per-event L2 on the batch's embedding rows),
    ``learning_rate``, ``batch_size``, ``max_epochs``, ``patience`` (early stopping on the validation RMSE for
    "mse", on ``monitor`` for "bce"), ``optimizer`` ("adam" or "sgd"), ``fold_in_steps`` (new users, see
    :mod:`recforge.models.ncf`), ``clip`` (clip predicted ratings to the training range), ``seed``.
    ``predict`` returns ratings ("mse") or interaction probabilities ("bce"); ``score`` ratings or logits.
"""


@hyperparameters
class GMF(NCFRecommender):
    __doc__ = (
        r"""Generalised matrix factorisation (He et al. 2017, eq. 9): :math:`\hat y_{ui} = h^\top (p_u \odot q_i) + c`.

    ``embedding_dim`` is the size of :math:`p_u, q_i` ("predictive factors"); embeddings start at
    :math:`\mathcal N(0, 0.01^2)`, :math:`h` Glorot-uniform, :math:`c` at the training mean rating ("mse") or 0.
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "gmf"

    embedding_dim: PositiveInt = 8

    def _towers(self) -> Towers:
        return Towers(gmf_dim=self.embedding_dim)


@hyperparameters
class MLP(NCFRecommender):
    __doc__ = (
        r"""Multi-layer perceptron over concatenated embeddings (He et al. 2017, eq. 10).

    .. math:: z_1 = [p_u; q_i],\quad z_{l+1} = \mathrm{ReLU}(W_l\, \mathrm{dropout}(z_l) + b_l),\quad
              \hat y_{ui} = h^\top z_L + c

    ``layers`` are the tower's widths, the first being the concatenated input (user and item embeddings of
    ``layers[0] / 2`` each; He et al.: (64, 32, 16, 8)); ``dropout`` is applied before every tower layer: one rate
    for all, or one per layer (``(0.5, 0.3, 0.3)``).
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "mlp"

    layers: Layers = (64, 32, 16, 8)
    dropout: Dropout = 0.0

    def _towers(self) -> Towers:
        return Towers(layers=tuple(self.layers), dropout=self.dropout)


@hyperparameters
class NeuMF(NCFRecommender):
    __doc__ = (
        r"""Neural matrix factorisation: GMF and MLP towers with their own embeddings, fused (He et al. 2017, eq. 12).

    .. math:: \hat y_{ui} = h^\top \left[p^G_u \odot q^G_i;\; \phi_L(\dots \phi_1([p^M_u; q^M_i]))\right] + c

    ``embedding_dim`` is the GMF size, ``layers``/``dropout`` the MLP tower as in :class:`MLP`.

    **Pretraining** (He et al. sec. 3.4.1): :meth:`from_pretrained` takes a fitted :class:`GMF` and :class:`MLP`
    and returns an unfitted NeuMF whose ``fit`` starts from their embeddings and tower, with the prediction layer
    :math:`h = [\alpha h^{GMF}; (1-\alpha) h^{MLP}]` (bias likewise). The origin is an initialisation, not a
    hyper-parameter: it is not saved, and the fit must use the same user and item id maps. He et al. then train
    with plain SGD (``optimizer="sgd"``); Adam works too.
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "neumf"
    #: the towers of :meth:`from_pretrained` that ``fit`` starts from (None: a fresh initialisation)
    _pretrained: ClassVar[dict[str, Any] | None] = None  # set per instance; not a hyper-parameter

    embedding_dim: PositiveInt = 8
    layers: Layers = (64, 32, 16, 8)
    dropout: Dropout = 0.0

    def _towers(self) -> Towers:
        return Towers(gmf_dim=self.embedding_dim, layers=tuple(self.layers), dropout=self.dropout)

    @classmethod
    def from_pretrained(cls, gmf: GMF, mlp: MLP, *, alpha: float = 0.5, **params: Any) -> Self:
        """An unfitted model that ``fit`` starts from fitted ``gmf`` and ``mlp`` (He et al.'s pretraining).

        ``embedding_dim``, ``layers``, ``dropout``, ``loss`` and ``n_negatives`` default to the pretrained
        models' (``embedding_dim``/``layers``/``loss`` must agree with them); other ``params`` as for the class.
        ``alpha`` in [0, 1] weighs the GMF half of the prediction layer.
        """
        if not isinstance(gmf, GMF) or not isinstance(mlp, MLP):
            raise TypeError("NeuMF.from_pretrained needs a fitted GMF and a fitted MLP")
        gmf.check_fitted()
        mlp.check_fitted()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if gmf.users_ != mlp.users_ or gmf.items_ != mlp.items_:
            raise ValueError("the pretrained GMF and MLP were fitted on different user or item id maps")
        if gmf.loss != mlp.loss:
            raise ValueError(f"the pretrained GMF (loss={gmf.loss!r}) and MLP (loss={mlp.loss!r}) disagree on the loss")
        merged = {
            "embedding_dim": gmf.embedding_dim,
            "layers": mlp.layers,
            "dropout": mlp.dropout,
            "loss": gmf.loss,
            "n_negatives": gmf.n_negatives,
            **params,
        }
        for key, source in (("embedding_dim", gmf.embedding_dim), ("layers", tuple(mlp.layers)), ("loss", gmf.loss)):
            value = tuple(merged[key]) if key == "layers" else merged[key]
            if value != source:
                raise ValueError(f"{key}={merged[key]!r} does not match the pretrained models' {source!r}")
        model = cls(**cls.validate_params(merged))
        model._pretrained = {
            "gmf": {k: v.detach().cpu().clone() for k, v in gmf.module_.state_dict().items()},
            "mlp": {k: v.detach().cpu().clone() for k, v in mlp.module_.state_dict().items()},
            "alpha": float(alpha),
            "users": gmf.users_,
            "items": gmf.items_,
        }
        return model

    def _prepare(self, train: Interactions) -> None:
        pre = self._pretrained
        if pre is not None and (train.users != pre["users"] or train.items != pre["items"]):
            raise ValueError("NeuMF.from_pretrained: fit on data with the pretrained models' user and item id maps")
        super()._prepare(train)

    def build_module(self) -> nn.Module:
        module = super().build_module()
        pre = self._pretrained
        if pre is None or not hasattr(self, "events_"):  # only when fitting (not when loading saved weights)
            return module
        gmf, mlp, alpha = pre["gmf"], pre["mlp"], pre["alpha"]
        own = module.state_dict()
        with torch.no_grad():
            for key, value in gmf.items():
                if key.startswith(("user_gmf.", "item_gmf.")):
                    own[key].copy_(value)
            for key, value in mlp.items():
                if key.startswith(("user_mlp.", "item_mlp.", "tower.")):
                    own[key].copy_(value)
            # prediction-layer input: [item features (HybridNeuMF); GMF; MLP]; the feature block starts at 0
            start, gmf_end = module.feature_dim, module.feature_dim + self.embedding_dim
            own["predict.weight"][:, :start] = 0.0
            own["predict.weight"][:, start:gmf_end] = alpha * gmf["predict.weight"]
            own["predict.weight"][:, gmf_end:] = (1 - alpha) * mlp["predict.weight"]
            own["predict.bias"].copy_(alpha * gmf["predict.bias"] + (1 - alpha) * mlp["predict.bias"])
        return module


#: the ``item_embeddings`` value that builds the item text profiles of the training reviews instead of reading a file
TEXT_PROFILE = "text"
#: their dimension when ``item_embedding_dim`` is not given
TEXT_PROFILE_DIM = 32


@hyperparameters
class HybridNeuMF(NeuMF):
    __doc__ = (
        r"""NeuMF whose prediction layer also sees a fixed, pretrained item embedding (the Goodreads notebook's hybrid).

    .. math:: \hat y_{ui} = h^\top \left[e_i;\; p^G_u \odot q^G_i;\; \phi_L(\dots \phi_1([p^M_u; q^M_i]))\right] + c

    :math:`e_i` is read from ``item_embeddings`` (a file, see
    :func:`~recforge.data.embeddings.read_item_embeddings`; ``item_id_column`` names its id column) at fit time,
    aligned to the training item id map and kept as a registered buffer on the model's device (gathered by index
    in every batch; never looked up per item in Python). Items without a row in the file use one learned fallback
    vector. ``item_embedding_dim``, when given, must equal the file's dimension. The buffer is part of the saved
    weights, so a saved model loads without the file. It can also start from pretrained GMF and MLP
    (:meth:`NeuMF.from_pretrained`).

    ``item_embeddings="text"`` (:data:`TEXT_PROFILE`) reads no file: :math:`e_i` is then the item's text profile
    built at fit time from the **training** events' reviews only (their ``review_text``;
    :func:`~recforge.data.text.item_text_embeddings`: tf-idf rows of a vocabulary of the training reviews,
    reduced by a truncated SVD seeded with ``seed``, :math:`e_i = U_d[i] S_d`, ``d`` = ``item_embedding_dim`` or
    32). Validation and test reviews never reach it; items without a training review use the fallback vector.
    """
        + _COMMON_DOC
    )

    name: ClassVar[str] = "hybridneumf"
    #: (table, known) of the item embeddings while the module is built (fit or load), else None
    _embedding_table: ClassVar[tuple[torch.Tensor, torch.Tensor] | None] = (
        None  # set per instance, not a hyper-parameter
    )

    item_embeddings: str
    item_id_column: str = "item"
    item_embedding_dim: Annotated[int, pydantic.Field(ge=1)] | None = None

    def _prepare(self, train: Interactions) -> None:
        if self.item_embeddings == TEXT_PROFILE:
            if REVIEW_TEXT not in train.extra:
                raise ValueError(
                    f"HybridNeuMF: item_embeddings='{TEXT_PROFILE}' builds the item profiles from the training "
                    f"reviews, but the events carry no {REVIEW_TEXT!r} column (per-event columns: "
                    f"{', '.join(sorted(train.extra)) or 'none'}); use a review data set (e.g. an Amazon JSON file) "
                    "or give a file of item embeddings"
                )
            dim = self.item_embedding_dim or TEXT_PROFILE_DIM
            table, known, _ = item_text_embeddings(train, dim=dim, seed=self.seed)
        else:
            table, known = read_item_embeddings(
                self.item_embeddings, train.items, id_column=self.item_id_column, dim=self.item_embedding_dim
            )
        self._embedding_table = (torch.from_numpy(table), torch.from_numpy(known))  # the data layer reads numpy
        self.item_embedding_coverage_ = float(known.mean())
        super()._prepare(train)

    def _feature_dim(self) -> int:
        table = self._embedding_table
        if table is None:
            raise RuntimeError("HybridNeuMF: the item embeddings are not loaded")
        return int(table[0].shape[1])

    def build_module(self) -> nn.Module:
        module = super().build_module()  # _feature_dim() has checked that the table is loaded
        assert self._embedding_table is not None
        table, known = self._embedding_table
        module.item_features.copy_(table)
        module.has_features.copy_(known)
        return module

    def _release(self) -> None:
        super()._release()
        self.__dict__.pop("_embedding_table", None)

    def _load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        # the buffer in the weights fixes the dimension: build the module from it, never from the file
        self._embedding_table = (tensors["module.item_features"], tensors["module.has_features"])
        self.item_embedding_coverage_ = float(tensors["module.has_features"].float().mean())
        try:
            super()._load_state(tensors)
        finally:
            self.__dict__.pop("_embedding_table", None)
