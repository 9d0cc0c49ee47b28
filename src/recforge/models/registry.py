"""Explicit map from model names (as used in configs and the CLI) to classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recforge.models.autoencoders import AE, SVAE, VAE, CMultiVAE, MultiDAE, MultiVAE, RecVAE, SongMLP, SongVAE
from recforge.models.base import BaseRecommender, ModelFileError, read_saved_config
from recforge.models.bpr import BPR
from recforge.models.cofi import CoFiMF
from recforge.models.gan import CFGAN
from recforge.models.ials import IALS
from recforge.models.linear import EASE
from recforge.models.mf import BiasedMF, ClassicMF
from recforge.models.ncf import GMF, MLP, HybridNeuMF, NeuMF
from recforge.models.neighbors import ItemKNN
from recforge.models.popularity import Popularity
from recforge.models.slim import ADMMSLIM
from recforge.models.text import TextBiasedMF, TextItem, TextMF

MODELS: dict[str, type[BaseRecommender]] = {
    cls.name: cls
    for cls in (
        Popularity,
        ItemKNN,
        BPR,
        IALS,
        EASE,
        ADMMSLIM,
        AE,
        VAE,
        MultiDAE,
        MultiVAE,
        CMultiVAE,
        RecVAE,
        CFGAN,
        SVAE,
        SongMLP,
        SongVAE,
        CoFiMF,
        ClassicMF,
        BiasedMF,
        GMF,
        MLP,
        NeuMF,
        HybridNeuMF,
        TextItem,
        TextMF,
        TextBiasedMF,
    )
}


def model_class(name: str) -> type[BaseRecommender]:
    """The class registered as ``name`` (case-insensitive); a clear error lists the known names."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None


def create_model(name: str, **params: Any) -> BaseRecommender:
    """Instantiate a registered model with validated hyper-parameters."""
    cls = model_class(name)
    return cls(**cls.validate_params(params))


def load_model(path: str | Path, *, device: str = "auto") -> BaseRecommender:
    """Load any saved model directory, whatever its class, onto ``device`` (wherever it was trained)."""
    name = read_saved_config(path)["model"]
    try:
        cls = model_class(name)
    except ValueError as exc:
        raise ModelFileError(f"{Path(path) / 'config.json'}: {exc}") from None
    return cls.load(path, device=device)
