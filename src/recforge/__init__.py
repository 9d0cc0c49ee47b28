"""recforge: recommender systems from interaction logs to served models."""

__version__ = "0.1.0"
