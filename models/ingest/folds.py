"""Sample splits by unit id: cross-fitting folds and the wealth map's train / calibration / test split.

Every split is a pure function of the unit id and a seed, so it is the same across runs, machines,
unit order and subsets of units: the encoder, the CATE learners and any later asset agree on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

# The wealth map's three-way split: folds 0-2 train (60%), 3 calibration (20%), 4 test (20%).
SPLITS = ("train", "train", "train", "calibration", "test")


def fold_of(unit_ids: Iterable, folds: int, seed: int = 0) -> np.ndarray:
    """Deterministic fold per unit id (stable across runs, machines and unit order).

    A cryptographic hash of seed and id, so each seed draws an independent split. CRC32 (used
    before) is affine in its input: changing the seed XORs every checksum with one constant, so with
    2, 4 or 8 folds a new seed only relabelled the same split.
    """
    return np.array(
        [int.from_bytes(hashlib.blake2b(f"{seed}:{u}".encode(), digest_size=8).digest(), "little") % folds for u in unit_ids],
        dtype=np.int64,
    )


def split_of(unit_ids: Iterable, seed: int = 0) -> np.ndarray:
    """'train', 'calibration' or 'test' per unit id (60 / 20 / 20 by id)."""
    return np.asarray(SPLITS)[fold_of(unit_ids, len(SPLITS), seed)]


@dataclass(frozen=True)
class CrossFitting:
    """K folds by unit id, shared by every cross-fitted model of a trial. With ``clusters`` (a
    Series of cluster labels indexed by unit id) whole clusters share a fold: the units of one
    village are never split between a model's training and evaluation data, which would leak
    the village's shared shock into its own predictions (and shrink the RATE's and BLP's intervals)."""

    folds: int = 5
    seed: int = 0

    def assign(self, unit_ids: Iterable, clusters: pd.Series | None = None) -> np.ndarray:
        unit_ids = list(unit_ids)
        if clusters is None:
            return fold_of(unit_ids, self.folds, self.seed)
        missing = pd.Index(unit_ids).difference(clusters.index)
        if len(missing):
            raise ValueError(
                f"{len(missing)} units have no cluster label (e.g. {list(missing[:3])}): every unit of a clustered trial needs one"
            )
        return fold_of((f"cluster:{c}" for c in clusters.loc[unit_ids]), self.folds, self.seed)

    def check(self, unit_ids: Iterable, received: Mapping[str, pd.DataFrame], clusters: pd.Series | None = None) -> np.ndarray:
        """This scheme's folds for ``unit_ids``, after checking every cross-fitted ``fold`` column it
        receives (more than one distinct fold) agrees: a mismatch would let a CATE model see units
        whose embeddings were fitted on its own test units' outcomes."""
        unit_ids = list(unit_ids)
        folds = self.assign(unit_ids, clusters)
        for name, table in received.items():
            if "fold" not in table or table["fold"].nunique() < 2:
                continue
            theirs = table.set_index("unit_id")["fold"].reindex(unit_ids).to_numpy()
            if not np.array_equal(theirs, folds):
                raise ValueError(
                    f"{name}: its fold column disagrees with the cross-fitting scheme {self} for {int((theirs != folds).sum())} units; use one CrossFittingResource for encoders and learners"
                    + (" and the trial's clusters for both" if clusters is not None else "")
                )
        return folds
