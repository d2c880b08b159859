"""Land-cover maps from labelled pixels: one model per band-availability pattern, three classifier
families, spatially blocked cross-validation that reports an honest accuracy and picks among them,
and the classified scenes with a record of the bands behind every pixel."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.interpretation.landcover import NODATA_CLASS, WORLDCOVER, LabelError, scene_reader, write_land_cover

CLASSIFIERS = ("logistic", "forest", "boosting")  # in order of the cost of predicting every pixel of every scene
ACCURACY_TOLERANCE = 0.01  # 'auto' keeps the cheapest family within this much of the best blocked-CV accuracy


def make_estimator(kind: str, seed: int = 0, n_jobs: int = -1):
    """A fresh scikit-learn classifier of one family.

    forest: eight trees, ten pixels per leaf (fast to predict on whole scenes); logistic: standardised
    multinomial logistic regression (often best on few, spectrally clean labels); boosting: histogram
    gradient boosting.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "forest":
        return RandomForestClassifier(8, min_samples_leaf=10, random_state=seed, n_jobs=n_jobs)
    if kind == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    if kind == "boosting":
        return HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    raise ValueError(f"classifier must be one of {CLASSIFIERS} (or 'auto'), got {kind!r}")


def enough_bands(X: np.ndarray, n_bands: int, max_missing_bands: int) -> np.ndarray:
    """Rows of (n, F) features whose first ``n_bands`` columns (the bands) miss at most
    ``max_missing_bands`` values, and not all of them."""
    missing = np.isnan(X[:, :n_bands])
    return (missing.sum(axis=1) <= max_missing_bands) & ~missing.all(axis=1)


class LandCoverClassifier:
    """Per-pixel WorldCover classes from spectral features, with one model per band-availability pattern.

    A pixel missing a band (a stripe, one band's own nodata border) is classified from the features it
    has by a model fitted on the labelled pixels' same features, so one missing band does not blank
    the map. ``n_bands`` leading feature columns are bands; a pixel missing more than
    ``max_missing_bands`` of them stays unclassified. Pattern models are fitted when first needed.
    """

    def __init__(self, kind: str = "forest", n_bands: int | None = None, max_missing_bands: int = 1, seed: int = 0, n_jobs: int = -1):
        self.kind, self.n_bands, self.max_missing_bands, self.seed, self.n_jobs = kind, n_bands, max_missing_bands, seed, n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray) -> LandCoverClassifier:
        unknown = sorted(set(np.unique(y)) - set(WORLDCOVER))
        if unknown:
            raise ValueError(f"labels {unknown} are not WorldCover codes {sorted(WORLDCOVER)}: map them with a crosswalk")
        make_estimator(self.kind)  # fail now on an unknown family, not at the first prediction
        self.X_, self.y_ = np.asarray(X, dtype=np.float32), np.asarray(y)
        self.classes_ = np.unique(self.y_).astype(np.uint8)
        self.models_: dict[int, object] = {}
        return self

    def usable(self, X: np.ndarray) -> np.ndarray:
        """Rows with enough bands to classify."""
        return enough_bands(X, self.n_bands or X.shape[1], self.max_missing_bands)

    def _model(self, present: np.ndarray):
        key = int(np.dot(present, 1 << np.arange(len(present))))
        if key not in self.models_:
            rows = ~np.isnan(self.X_[:, present]).any(axis=1)
            y = self.y_[rows]
            if len(np.unique(y)) < 2:
                self.models_[key] = int(y[0]) if len(y) else NODATA_CLASS
            else:
                self.models_[key] = make_estimator(self.kind, self.seed, self.n_jobs).fit(self.X_[rows][:, present], y)
        return self.models_[key]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, F) features -> (n,) uint8 codes; NODATA_CLASS where too many bands are missing."""
        X = np.asarray(X, dtype=np.float32)
        out = np.full(len(X), NODATA_CLASS, dtype=np.uint8)
        ok = np.flatnonzero(self.usable(X))
        present = ~np.isnan(X[ok])
        keys = present @ (1 << np.arange(X.shape[1]))
        for key in np.unique(keys):
            sel = keys == key
            columns = present[np.argmax(sel)]
            model, rows = self._model(columns), ok[sel]
            out[rows] = model if isinstance(model, int) else model.predict(np.ascontiguousarray(X[np.ix_(rows, np.flatnonzero(columns))]))
        return out

    def predict_image(self, features: np.ndarray) -> np.ndarray:
        """(F, H, W) -> (H, W) uint8 codes; NODATA_CLASS where too many bands are missing."""
        return self.predict(features.reshape(features.shape[0], -1).T).reshape(features.shape[1:])

    def bands_used(self, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(H, W) uint16 bit mask of the bands each classified pixel was classified from (bit i: band i), 0 elsewhere."""
        bands = ~np.isnan(features[: self.n_bands or features.shape[0]])
        mask = np.tensordot(1 << np.arange(len(bands), dtype=np.uint16), bands.astype(np.uint16), axes=1).astype(np.uint16)
        return np.where(classes != NODATA_CLASS, mask, 0).astype(np.uint16)


def spatial_folds(rows: np.ndarray, cols: np.ndarray, block_px: int, folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each pixel by its ``block_px`` square block: neighbouring pixels are near copies, so a
    random split would report the accuracy of memorising the scene. Blocks are dealt to folds in a
    seeded random order, so folds hold equal numbers of blocks and each seed draws a new split."""
    blocks = (np.asarray(rows) // block_px) * 1_000_003 + np.asarray(cols) // block_px
    unique, index = np.unique(blocks, return_inverse=True)
    if len(unique) < folds:
        raise LabelError(
            f"the labels cover {len(unique)} spatial blocks of {block_px} px, fewer than the {folds} cross-validation folds: "
            "label more places or lower LandCoverConfig.block_px / cv_folds"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    return (order % folds)[index]


def cross_validate(X: np.ndarray, y: np.ndarray, folds: np.ndarray, classifier: LandCoverClassifier) -> np.ndarray:
    """Out-of-fold predictions: each fold predicted by the classifier fitted on the others."""
    pred = np.zeros(len(y), dtype=np.uint8)
    for k in np.unique(folds):
        test = folds == k
        pred[test] = copy.copy(classifier).fit(X[~test], y[~test]).predict(X[test])
    return pred


def _name(code: int) -> str:
    return f"{code} {WORLDCOVER.get(int(code), '?')}"


@dataclass
class CrossValidated:
    """Blocked cross-validation of one classifier: pooled accuracy and macro F1 over every held-out
    pixel, per-class F1 with its spread across folds, and the pooled confusion matrix."""

    accuracy: float
    macro_f1: float
    fold_accuracy: list[float]
    per_class: pd.DataFrame
    confusion: pd.DataFrame

    @property
    def never_held_out(self) -> list[str]:
        """Classes with no held-out pixel in at least one fold (their F1 spread covers fewer folds)."""
        return self.per_class.loc[self.per_class["folds_without_pixels"] != "", "class"].tolist()


def cv_report(y: np.ndarray, pred: np.ndarray, folds: np.ndarray) -> CrossValidated:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    classes = sorted(np.unique(y))
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    per_fold = {}
    for k in np.unique(folds):
        sel = folds == k
        scores = f1_score(y[sel], pred[sel], labels=classes, average=None, zero_division=0)
        per_fold[k] = {c: s for c, s in zip(classes, scores, strict=True) if (y[sel] == c).any()}
    spread = pd.DataFrame(per_fold)  # class x fold, NaN where the fold held none of the class
    per_class = pd.DataFrame(
        {
            "class": [_name(c) for c in classes],
            "precision": p, "recall": r, "f1": f, "support": n,
            "f1_fold_mean": spread.mean(axis=1).reindex(classes).to_numpy(),
            "f1_fold_min": spread.min(axis=1).reindex(classes).to_numpy(),
            "f1_fold_max": spread.max(axis=1).reindex(classes).to_numpy(),
            "folds_without_pixels": [", ".join(str(k) for k in spread.columns if np.isnan(spread.loc[c, k])) for c in classes],
        }
    )  # fmt: skip
    labels = sorted(set(classes) | set(np.unique(pred)))
    names = [_name(c) for c in labels]
    confusion = pd.DataFrame(confusion_matrix(y, pred, labels=labels), index=names, columns=names)
    fold_accuracy = [float(np.mean(y[folds == k] == pred[folds == k])) for k in np.unique(folds)]
    macro = float(f1_score(y, pred, labels=classes, average="macro", zero_division=0))
    return CrossValidated(float(np.mean(y == pred)), macro, fold_accuracy, per_class, confusion)


def choose_classifier(
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    kinds: tuple[str, ...],
    n_bands: int,
    max_missing_bands: int = 1,
    seed: int = 0,
    tolerance: float = ACCURACY_TOLERANCE,
) -> tuple[str, dict[str, CrossValidated], pd.DataFrame]:
    """Cross-validate each family on the same blocked folds and keep the cheapest to predict (the
    earliest in ``kinds``) whose pooled accuracy is within ``tolerance`` of the best: on the demo
    boosting wins by 0.0004 but predicts the scenes 10x slower than the others. Returns the choice,
    each family's report and a comparison table."""
    reports, rows = {}, []
    for kind in kinds:
        started = time.perf_counter()
        pred = cross_validate(X, y, folds, LandCoverClassifier(kind, n_bands, max_missing_bands, seed))
        reports[kind] = cv_report(y, pred, folds)
        rows.append(
            {
                "classifier": kind,
                "accuracy": reports[kind].accuracy,
                "macro_f1": reports[kind].macro_f1,
                "fold_accuracy_min": min(reports[kind].fold_accuracy),
                "fold_accuracy_max": max(reports[kind].fold_accuracy),
                "cv_seconds": time.perf_counter() - started,
            }
        )
    table = pd.DataFrame(rows)
    table["behind_best"] = table["accuracy"].max() - table["accuracy"]
    chosen = str(table.loc[table["behind_best"] <= tolerance + 1e-12, "classifier"].iloc[0])
    return chosen, reports, table.assign(chosen=table["classifier"] == chosen)


def _candidates(labels: np.ndarray, k: int, seed: int, window_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniform random sample of up to ``k`` labelled positions per class, found window by window:
    each position gets a random key and the ``k`` smallest keys per class are kept, so memory stays
    O(window + k x classes) however large and densely labelled the scene."""
    rng = np.random.default_rng(seed)
    kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for row0 in range(0, labels.shape[0], window_rows):
        r, c = np.nonzero(labels[row0 : row0 + window_rows] != NODATA_CLASS)
        y, keys = labels[row0 + r, c], rng.random(len(r))
        for code in np.unique(y):
            sel = y == code
            old = kept.get(int(code), (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)))
            rr, cc, kk = np.concatenate([old[0], row0 + r[sel]]), np.concatenate([old[1], c[sel]]), np.concatenate([old[2], keys[sel]])
            best = np.argsort(kk)[:k]
            kept[int(code)] = (rr[best], cc[best], kk[best])
    if not kept:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate([v[0] for v in kept.values()]), np.concatenate([v[1] for v in kept.values()])


def training_pixels(
    labels: np.ndarray,
    features_at: Callable[[int, int], np.ndarray],
    per_class: int,
    usable: Callable[[np.ndarray], np.ndarray],
    seed: int = 0,
    window_rows: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``per_class`` labelled pixels per class with enough bands (``usable``): rows, cols, X, y.

    Candidates are drawn from the labels first and their features read window by window
    (``features_at(row0, height)``), so a large scene is never held in memory whole.
    """
    rows, cols = _candidates(labels, 2 * per_class, seed, window_rows)
    if not len(rows):
        raise LabelError("no labelled pixel falls on the scenes: the labels do not overlap the imagery (check their extent and CRS)")
    X = None
    for row0 in np.unique(rows // window_rows) * window_rows:
        inside = np.flatnonzero((rows >= row0) & (rows < row0 + window_rows))
        block = features_at(int(row0), int(min(window_rows, labels.shape[0] - row0)))
        X = np.zeros((len(rows), block.shape[0]), dtype=np.float32) if X is None else X
        X[inside] = block[:, rows[inside] - row0, cols[inside]].T
    ok = usable(X)
    if not ok.any():
        raise LabelError(
            "no labelled pixel falls on valid imagery: the labels do not overlap the scenes' data (check their extent and CRS)"
        )
    y = labels[rows, cols]
    keep = np.concatenate([np.flatnonzero(ok & (y == code))[:per_class] for code in np.unique(y[ok])])
    return rows[keep], cols[keep], X[keep], y[keep]


def thin_classes(y: np.ndarray, labelled: set[int], min_per_class: int) -> dict[int, int]:
    """Labelled classes with fewer than ``min_per_class`` usable pixels in ``y`` (none at all
    where every label of a class lies on missing bands), and their counts."""
    counts = pd.Series(y).value_counts()
    return {int(c): int(counts.get(c, 0)) for c in sorted(labelled) if counts.get(c, 0) < min_per_class}


@dataclass
class LandCoverMaps:
    """The classified scenes (and per-pixel band records), the chosen classifier and its blocked
    cross-validation, the candidates it beat, the classes left out, and the map's coverage."""

    paths: list[str]
    band_paths: list[str]
    dates: list[str]
    classifier: str
    classes: list[int]  # the WorldCover codes the map uses
    cv: CrossValidated
    candidates: pd.DataFrame
    left_out: dict[int, int]
    coverage: pd.DataFrame
    training_pixels: int
    cv_folds: int
    train_seconds: float = 0.0
    predict_seconds: float = 0.0

    @property
    def accuracy(self) -> float:
        """Pooled accuracy over every held-out pixel of the blocked cross-validation."""
        return self.cv.accuracy


def _rows(scene: pd.Series, window_pixels: int) -> int:
    return max(1, window_pixels // int(scene["width"]))


def classify_scenes(
    catalog: pd.DataFrame,
    labels: dict[int, np.ndarray],
    out_dir: Path,
    per_class: int = 2000,
    min_per_class: int = 20,
    block_px: int = 64,
    window_pixels: int = 2**20,
    seed: int = 0,
    classifier: str = "auto",
    cv_folds: int = 4,
    max_missing_bands: int = 1,
) -> LandCoverMaps:
    """Train on labelled pixels of the scenes in ``labels`` (scene index -> labels on its grid) and
    classify every scene window by window into ``out_dir/land_cover_<date>.tif`` (with
    ``bands_used_<date>.tif``).

    A class with fewer than ``min_per_class`` usable labelled pixels is left out (named in the
    result) rather than stopping the map; fewer than two classes left is an error. ``classifier``
    'auto' cross-validates forest, logistic and boosting on the same spatial blocks and keeps the
    cheapest to predict within 0.01 of the best; the accuracy reported is that blocked
    cross-validation, pooled over all ``cv_folds`` folds.
    """
    n_bands = len(catalog.iloc[0]["band_names"])
    usable = functools.partial(enough_bands, n_bands=n_bands, max_missing_bands=max_missing_bands)
    parts = []
    for i, lab in labels.items():
        with scene_reader(catalog.iloc[i]) as features_at:
            parts.append(training_pixels(lab, features_at, per_class, usable, seed + i, _rows(catalog.iloc[i], window_pixels)))
    rows, cols, X, y = (np.concatenate(p) for p in zip(*parts, strict=True))
    labelled = {int(c) for lab in labels.values() for c in np.unique(lab)} - {NODATA_CLASS}
    left_out = thin_classes(y, labelled, min_per_class)
    if len(labelled) - len(left_out) < 2:
        counts = pd.Series(y).value_counts()
        named = ", ".join(f"{_name(c)} ({int(counts.get(c, 0))})" for c in sorted(labelled))
        raise LabelError(
            f"fewer than two classes have {min_per_class} labelled pixels on valid imagery: {named}. "
            "Add labels, merge classes in the crosswalk, or lower LandCoverConfig.min_pixels_per_class"
        )
    keep = ~np.isin(y, list(left_out))
    rows, cols, X, y = rows[keep], cols[keep], X[keep], y[keep]
    started = time.perf_counter()
    folds = spatial_folds(rows, cols, block_px, cv_folds, seed)
    chosen, reports, candidates = choose_classifier(
        X, y, folds, CLASSIFIERS if classifier == "auto" else (classifier,), n_bands, max_missing_bands, seed
    )
    model = LandCoverClassifier(chosen, n_bands, max_missing_bands, seed).fit(X, y)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    paths, band_paths, dates, coverage = [], [], [], []
    for _, scene in catalog.iterrows():
        date = f"{pd.Timestamp(scene['date']):%Y-%m-%d}"
        counts = np.zeros(3, dtype=np.int64)  # pixels with data, classified, classified from every band
        paths.append(str(Path(out_dir) / f"land_cover_{date}.tif"))
        band_paths.append(str(Path(out_dir) / f"bands_used_{date}.tif"))
        with scene_reader(scene) as features_at:
            write_land_cover(paths[-1], band_paths[-1], _windows(model, features_at, scene, _rows(scene, window_pixels), counts), scene)
        dates.append(date)
        coverage.append(
            {
                "date": date,
                "pixels_with_data": counts[0],
                "classified": counts[1] / max(counts[0], 1),
                "classified_from_all_bands": counts[2] / max(counts[0], 1),
            }
        )
    return LandCoverMaps(
        paths, band_paths, dates, chosen, model.classes_.tolist(), reports[chosen], candidates, left_out, pd.DataFrame(coverage),
        len(y), cv_folds, train_seconds, time.perf_counter() - started,
    )  # fmt: skip


def _windows(model: LandCoverClassifier, features_at, scene: pd.Series, window_rows: int, counts: np.ndarray):
    """(first row, classes, bands used) per window of whole rows, counting coverage as it goes."""
    height, full = int(scene["height"]), (1 << model.n_bands) - 1
    for row0 in range(0, height, window_rows):
        features = features_at(row0, min(window_rows, height - row0))
        classes = model.predict_image(features)
        bands = model.bands_used(features, classes)
        counts += [(~np.isnan(features[: model.n_bands])).any(axis=0).sum(), (classes != NODATA_CLASS).sum(), (bands == full).sum()]
        yield row0, classes, bands
