"""Carry a fitted CATE model beyond the trial: predictions on a grid, and where they extrapolate."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from models.representation.grid import BLOCK_CELLS, GridEmbedding, GridMap


class TrialSupport:
    """Where the trial's units lie in (standardized) feature space, to tell how far a new point lies
    outside it: the distance to its nearest trial unit over the ``quantile`` of nearest-neighbour
    distances within the trial (``ratio``; above 1: outside the trial's support)."""

    def __init__(self, trial: np.ndarray, quantile: float = 0.95):
        self.mean, self.sd = trial.mean(axis=0), trial.std(axis=0) + 1e-9
        trial_z = (trial - self.mean) / self.sd
        self.nn = NearestNeighbors(n_neighbors=2).fit(trial_z)
        self.scale = np.quantile(self.nn.kneighbors(trial_z)[0][:, 1], quantile)

    def ratio(self, new: np.ndarray) -> np.ndarray:
        return self.nn.kneighbors((new - self.mean) / self.sd, n_neighbors=1)[0][:, 0] / self.scale


def training_sample(n: int, max_units: int, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """Sorted row indices of the units the map's model is fitted on: every unit when the trial has
    at most ``max_units`` (or ``max_units`` <= 0), else a seeded random sample of about that many,
    drawn as whole clusters when ``groups`` are given: a forest's fit time grows faster than
    linearly in units, and a sample trades accuracy for it (benchmarks/cate.py ``--max-fit-units``;
    at 100,000 units 248 s on all, 39 s on 20,000, PEHE 0.167 against 0.239)."""
    if max_units <= 0 or n <= max_units:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if groups is None:
        return np.sort(rng.choice(n, max_units, replace=False))
    labels, codes = np.unique(np.asarray(groups), return_inverse=True)
    order = rng.permutation(len(labels))
    sizes = np.bincount(codes)[order]
    chosen = order[: int(np.searchsorted(np.cumsum(sizes), max_units, side="right")) or 1]
    return np.flatnonzero(np.isin(codes, chosen))


def cate_map(model, X_trial: np.ndarray, grid: GridEmbedding, block_cells: int = BLOCK_CELLS) -> GridMap:
    """Layers ``cate``, ``extrapolation_ratio`` and ``outside_support`` (ratio > 1) over the grid,
    predicted ``block_cells`` cells at a time (``GridEmbedding.blocks``), so a national grid's
    embeddings are never in memory at once.

    Each fold model embeds the cells in its own space, so predictions and ratios are computed per
    fold model and averaged, never the embeddings themselves.
    """
    support, tau, ratio = TrialSupport(X_trial), [], []
    for _, per_model in grid.blocks(block_cells):
        tau.append(np.mean([model.effect(e) for e in per_model], axis=0))
        ratio.append(np.mean([support.ratio(e) for e in per_model], axis=0))
    tau, ratio = np.concatenate(tau), np.concatenate(ratio)
    return grid.to_map({"cate": tau, "extrapolation_ratio": ratio, "outside_support": (ratio > 1).astype(float)})
