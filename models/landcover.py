"""ESA WorldCover land-cover classes: the one code list used everywhere in eotrials."""

from __future__ import annotations

import numpy as np

WORLDCOVER: dict[int, str] = {
    10: "tree cover",
    20: "shrubland",
    30: "grassland",
    40: "cropland",
    50: "built-up",
    60: "bare / sparse vegetation",
    70: "snow and ice",
    80: "permanent water bodies",
    90: "herbaceous wetland",
    95: "mangroves",
    100: "moss and lichen",
}

# Official WorldCover v200 palette (RGB).
PALETTE: dict[int, tuple[int, int, int]] = {
    10: (0, 100, 0),
    20: (255, 187, 34),
    30: (255, 255, 76),
    40: (240, 150, 255),
    50: (250, 0, 0),
    60: (180, 180, 180),
    70: (240, 240, 240),
    80: (0, 100, 200),
    90: (0, 150, 160),
    95: (0, 207, 117),
    100: (250, 230, 160),
}

NODATA_CLASS = 0


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table (RGBA) for a uint8 WorldCover raster."""
    return {code: (*rgb, 255) for code, rgb in PALETTE.items()}


def class_fractions(labels: np.ndarray, classes: list[int], valid: np.ndarray | None = None) -> np.ndarray:
    """Fraction of valid pixels in each class over the last two axes: (..., H, W) -> (..., K)."""
    valid = labels != NODATA_CLASS if valid is None else valid
    n = valid.sum(axis=(-2, -1)).astype(np.float64)
    counts = np.stack([((labels == c) & valid).sum(axis=(-2, -1)) for c in classes], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n[..., None] > 0, counts / n[..., None], np.nan)
