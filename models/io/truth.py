"""The simulator's ground truth, read back: the one module assets read truth through.

``models.simulation`` writes the truth; estimators never read it. These readers return None for a
real study (no truth), so evaluation and plots can ask unconditionally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd


def read_unit_truth(path: str | Path | None) -> pd.DataFrame | None:
    """The simulator's per-unit truth indexed by unit_id, or None where there is none (real studies)."""
    return pd.read_parquet(path).set_index("unit_id") if path and Path(path).exists() else None


def dominant_landcover(truth: pd.DataFrame, unit_ids, when: Literal["first", "last"] = "last") -> np.ndarray:
    """Each unit's most common true land-cover class in its neighbourhood at the first or last date."""
    cols = [c for c in truth.columns if c.startswith("frac_") and c.endswith(f"_{when}")]
    codes = np.array([int(c.split("_")[1]) for c in cols])
    return codes[np.argmax(truth.loc[list(unit_ids), cols].to_numpy(), axis=1)]
