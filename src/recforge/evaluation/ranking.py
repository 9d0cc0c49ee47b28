"""Turning score rows into rankings: remove excluded items, keep the best k."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def exclude_items_(scores: torch.Tensor, exclude: sp.csr_array) -> torch.Tensor:
    """Set ``scores[u, i] = -inf`` in place wherever ``exclude[u, i]`` is stored; returns ``scores``."""
    exclude = sp.csr_array(exclude)
    if exclude.shape != tuple(scores.shape):
        raise ValueError(f"exclusion matrix has shape {exclude.shape}, scores have {tuple(scores.shape)}")
    if exclude.nnz:
        rows = np.repeat(np.arange(exclude.shape[0]), np.diff(exclude.indptr))
        r = torch.from_numpy(rows).to(scores.device)
        c = torch.from_numpy(exclude.indices.astype(np.int64)).to(scores.device)
        scores[r, c] = float("-inf")
    return scores


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` scores and item indices per row, best first; excluded (-inf) items come back as index -1."""
    k = min(k, scores.shape[1])
    values, indices = torch.topk(scores, k, dim=1)
    indices = torch.where(torch.isneginf(values), torch.full_like(indices, -1), indices)
    return values, indices
