"""ESA WorldCover land-cover classes: the one code list used everywhere in eotrials."""

from __future__ import annotations

import numpy as np
import pandas as pd

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


INDICES = ("ndvi", "ndwi", "ndbi")


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(a + b) > 1e-6, (a - b) / (a + b), 0.0).astype(np.float32)


def pixel_features(reflectance: np.ndarray, bands: list[str]) -> np.ndarray:
    """(C, H, W) reflectance in physical units -> (C + 3, H, W): the bands, NDVI, NDWI and NDBI.

    The indices need bands named red, green, nir and swir1; NaN (nodata) propagates, so a pixel
    with any band missing has NaN features and is left unclassified.
    """
    missing = {"red", "green", "nir", "swir1"} - set(bands)
    if missing:
        raise ValueError(f"land-cover features need bands {sorted(missing)}; the imagery has {bands} (set StudySource.band_names)")
    b = {name: reflectance[i].astype(np.float32) for i, name in enumerate(bands)}
    indices = [_ratio(b["nir"], b["red"]), _ratio(b["green"], b["nir"]), _ratio(b["swir1"], b["nir"])]
    stack = np.concatenate([reflectance.astype(np.float32), np.stack(indices)])
    stack[:, np.isnan(reflectance).any(axis=0)] = np.nan
    return stack


def block_test_mask(rows: np.ndarray, cols: np.ndarray, block_px: int = 64, test_share: float = 0.25, seed: int = 0) -> np.ndarray:
    """Hold out whole spatial blocks, not random pixels: neighbouring pixels are near copies, so a
    random split would report the accuracy of memorising the scene."""
    from models.folds import fold_of

    blocks = (np.asarray(rows) // block_px) * 1_000_003 + np.asarray(cols) // block_px
    folds = round(1 / test_share)
    return fold_of(blocks, folds, seed) == 0


class LandCoverClassifier:
    """Per-pixel WorldCover classes from spectral features: scikit-learn gradient boosting."""

    def __init__(self, max_iter: int = 200, seed: int = 0):
        self.max_iter, self.seed = max_iter, seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> LandCoverClassifier:
        from sklearn.ensemble import HistGradientBoostingClassifier

        unknown = sorted(set(np.unique(y)) - set(WORLDCOVER))
        if unknown:
            raise ValueError(f"labels {unknown} are not WorldCover codes {sorted(WORLDCOVER)}: map them with a crosswalk")
        self.model_ = HistGradientBoostingClassifier(max_iter=self.max_iter, early_stopping=True, random_state=self.seed).fit(X, y)
        self.classes_ = self.model_.classes_.astype(np.uint8)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X).astype(np.uint8)

    def predict_image(self, features: np.ndarray) -> np.ndarray:
        """(F, H, W) -> (H, W) uint8 codes; NODATA_CLASS where any feature is missing."""
        flat = features.reshape(features.shape[0], -1).T
        ok = ~np.isnan(flat).any(axis=1)
        out = np.full(flat.shape[0], NODATA_CLASS, dtype=np.uint8)
        if ok.any():
            out[ok] = self.predict(flat[ok])
        return out.reshape(features.shape[1:])


def accuracy_report(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, pd.DataFrame, pd.DataFrame]:
    """Overall accuracy, per-class precision / recall / F1 / support, and the confusion matrix
    (rows true, columns predicted), labelled with WorldCover names."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = sorted(set(np.unique(y_true)) | set(np.unique(y_pred)))
    p, r, f, n = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    names = [f"{c} {WORLDCOVER.get(int(c), '?')}" for c in classes]
    per_class = pd.DataFrame({"class": names, "precision": p, "recall": r, "f1": f, "support": n})
    confusion = pd.DataFrame(confusion_matrix(y_true, y_pred, labels=classes), index=names, columns=names)
    return float(np.mean(y_true == y_pred)), per_class, confusion
