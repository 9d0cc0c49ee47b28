"""Explicit map from model names (as used in configs and the CLI) to classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recforge.models.autoencoders import AE, SVAE, VAE, CMultiVAE, MultiDAE, MultiVAE
from recforge.models.base import BaseRecommender
from recforge.models.cofi import CoFiMF
from recforge.models.linear import EASE
from recforge.models.mf import BiasedMF, ClassicMF
from recforge.models.ncf import GMF, MLP, HybridNeuMF, NeuMF
from recforge.models.neighbors import ItemKNN
from recforge.models.popularity import Popularity

MODELS: dict[str, type[BaseRecommender]] = {
    cls.name: cls
    for cls in (
        Popularity,
        ItemKNN,
        EASE,
        AE,
        VAE,
        MultiDAE,
        MultiVAE,
        CMultiVAE,
        SVAE,
        CoFiMF,
        ClassicMF,
        BiasedMF,
        GMF,
        MLP,
        NeuMF,
        HybridNeuMF,
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
    config_path = Path(path) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{path} is not a saved recforge model: missing config.json")
    return model_class(json.loads(config_path.read_text())["model"]).load(path, device=device)
