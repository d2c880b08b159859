"""Carry a fitted CATE model beyond the trial: predictions on a grid, and where they extrapolate."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from models.representation.grid import GridEmbedding, GridMap


def extrapolation_ratio(trial: np.ndarray, new: np.ndarray, quantile: float = 0.95) -> np.ndarray:
    """Distance from each new point to its nearest trial unit (standardized feature space), over the
    ``quantile`` of nearest-neighbour distances within the trial. Above 1: outside the trial's support."""
    mean, sd = trial.mean(axis=0), trial.std(axis=0) + 1e-9
    trial_z, new_z = (trial - mean) / sd, (new - mean) / sd
    nn = NearestNeighbors(n_neighbors=2).fit(trial_z)
    within = nn.kneighbors(trial_z)[0][:, 1]
    return nn.kneighbors(new_z, n_neighbors=1)[0][:, 0] / np.quantile(within, quantile)


def cate_map(model, X_trial: np.ndarray, grid: GridEmbedding) -> GridMap:
    """Layers ``cate``, ``extrapolation_ratio`` and ``outside_support`` (ratio > 1) over the grid.

    Each fold model embeds the cells in its own space, so predictions and ratios are computed per
    fold model and averaged, never the embeddings themselves.
    """
    tau = np.mean([model.effect(e) for e in grid.per_model], axis=0)
    ratio = np.mean([extrapolation_ratio(X_trial, e) for e in grid.per_model], axis=0)
    return grid.to_map({"cate": tau, "extrapolation_ratio": ratio, "outside_support": (ratio > 1).astype(float)})
