"""CATE learners (econml) with the trial's known propensity, cross-fitted out of fold.

The trial is randomized, so the propensity is the design's assignment probability, never
estimated from features: it reaches econml's first stage as the last column of ``W`` and
``KnownPropensity`` reads it back.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from econml.dml import CausalForestDML
from econml.dr import ForestDRLearner
from econml.metalearners import TLearner
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LassoCV
from sklearn.model_selection import GridSearchCV, ShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

from models.causal.heterogeneity import Z95, dr_scores

Learner = Literal["causal_forest", "dr_learner", "t_learner"]
LEARNERS: tuple[Learner, ...] = ("causal_forest", "dr_learner", "t_learner")
DataChoice = Literal["tabular", "image", "image_sequence", "image_sequence_tabular"]
DATA_CHOICES: tuple[DataChoice, ...] = ("tabular", "image", "image_sequence", "image_sequence_tabular")
SCORE_CHOICE: DataChoice = "image_sequence_tabular"  # the richest features: the DR scores' outcome models
OUTCOME_CV = 5  # the outcome model's CV folds: each arm of every training split needs at least this many units
OUTCOME_HOLDOUT_UNITS = 50_000  # fits on more units choose their outcome model on one 20% holdout instead


class KnownPropensity(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose P(T=1) is the last input column: the design's assignment probability."""

    def fit(self, X, y, sample_weight=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        p = np.asarray(X)[:, -1]
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return (np.asarray(X)[:, -1] > 0.5).astype(int)


class QuantileBins(KBinsDiscretizer):
    """Ordinal quantile bins (``KBinsDiscretizer``), quiet about the bins it merges where a feature
    has fewer distinct values than bins (a binary covariate keeps two, whatever ``n_bins`` asks)."""

    def fit(self, X, y=None, sample_weight=None):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Bins whose width are too small")
            return super().fit(X, y, sample_weight)


HISTOGRAM_MIN_UNITS_PER_BIN = 20  # smaller fits split on the raw values: too few units for bins to save time


@dataclass(frozen=True)
class LearnerConfig:
    """Settings shared by the learners (their speed vs. econml defaults: benchmarks/cate.py; at trial
    scale: benchmarks/cate_estimates.py).

    Tree building is nearly all of a forest's time (first stages and intervals are under 5%; both
    cores busy), and grows as n log n in each tree's subsample and linearly in the features tried
    per split. ``histogram_bins``: the forests' final trees split between quantile bins of each
    feature, as histogram gradient boosting does (econml's ``featurizer``; the first-stage models
    see the raw features); fewer distinct values make econml's sorting and split search cheaper;
    off below ``HISTOGRAM_MIN_UNITS_PER_BIN`` units per bin. With both cores' threads, 50,000 units
    and 64 features: 457 s -> 111 s, PEHE 0.185 -> 0.188 (benchmarks/results/cate_histogram_bins.json).
    ``n_jobs``: the forests' threads (-1: every core of the process; 1 where the executor already
    runs one fit per core). ``max_samples``: each tree's share of the units (econml's default, grf's
    ``sample.fraction``); ``max_tree_units`` caps it in units for large trials, at some accuracy
    (100,000 units, 64 features: 0.45 takes 248 s, PEHE 0.167; 25,000 units per tree 130 s, 0.179).
    ``mtry``: features tried per split (None: all; grf's default is min(ceil(sqrt(p) + 20), p)),
    a speed setting for large trials whose accuracy cost depends on how sparse the signal is: 100,000
    units, 64 features of which 3 carry the effect (64 bins), 28 of them per split halve the time at
    PEHE 0.191 -> 0.221; 27 of 36 denser ones: 63 s -> 50 s, 0.157 -> 0.158. ``outcome_holdout``:
    the outcome model is chosen on one holdout (set by ``for_data`` above ``OUTCOME_HOLDOUT_UNITS``).
    ``leaf_share``: each leaf holds at least this share of its tree's units (``min_samples_leaf``
    stays the floor), so large trials grow shallower trees of the same shape instead of ever deeper
    ones. It binds from 3,000 units per tree (0.45 of a 5-fold training set: trials of 8,400 units
    and more); 0 turns it off. 64 features, 2 cores, mean of 2 seeds: 50,000 units, causal forest
    145 s -> 104 s, PEHE 0.183 -> 0.181; DR learner 112 s -> 82 s, 0.201 -> 0.209; PEHE unchanged at
    1,000 units, within 0.002 at 10,000 (benchmarks/results/cate_leaf_share.json).
    """

    n_estimators: int = 200
    min_samples_leaf: int = 5
    leaf_share: float = 0.002
    inner_folds: int = 2
    n_jobs: int = -1
    max_samples: float = 0.45
    max_tree_units: int | None = None
    histogram_bins: int | None = 255
    mtry: int | None = None
    outcome_holdout: bool = False
    seed: int = 0

    def for_data(self, n_units: int, n_features: int) -> LearnerConfig:
        """These settings for a fit on ``n_units`` x ``n_features``: the per-tree share capped at
        ``max_tree_units``, leaves of at least ``leaf_share`` of each tree's units, no bins where there
        are too few units per bin, at most ``n_features`` tried per split, the outcome model chosen on
        a holdout above ``OUTCOME_HOLDOUT_UNITS``."""
        changes: dict = {}
        if self.max_tree_units is not None and self.max_tree_units < self.max_samples * n_units:
            changes["max_samples"] = self.max_tree_units / n_units
        leaf = int(self.leaf_share * changes.get("max_samples", self.max_samples) * n_units)
        if leaf > self.min_samples_leaf:
            changes["min_samples_leaf"] = leaf
        if self.histogram_bins and n_units < HISTOGRAM_MIN_UNITS_PER_BIN * self.histogram_bins:
            changes["histogram_bins"] = None
        if self.mtry is not None and self.mtry > n_features:
            changes["mtry"] = n_features
        if n_units > OUTCOME_HOLDOUT_UNITS:
            changes["outcome_holdout"] = True
        return dataclasses.replace(self, **changes) if changes else self

    def featurizer(self) -> QuantileBins | None:
        """The forests' final-stage features: quantile bins, or the raw features (None)."""
        if not self.histogram_bins:
            return None
        return QuantileBins(n_bins=self.histogram_bins, encode="ordinal", strategy="quantile", quantile_method="averaged_inverted_cdf")


def residual_model(cfg: LearnerConfig, cv: int | None = None) -> Pipeline:
    """The forests' outcome first stage: the lasso on standardized features.

    The causal forest fits a local intercept, which absorbs first-stage error that varies with the
    effect modifiers but not error along the prognostic directions. The lasso recovers a linear
    prognostic signal exactly where boosted trees leave step error, even when the trees predict Y
    better: at N = 50,000 CV-chosen trees cost the causal forest 0.03 PEHE, and the DR learner
    lost 0.002 (benchmarks/cate.py). ``max_iter`` is raised from scikit-learn's 1,000 so that the
    weakest penalties of the path converge too (on the demo the chosen penalty and the final fit
    are the same either way; only the convergence warnings of the discarded penalties go).

    Inside econml's forests the penalty is chosen on econml's own cross-fitting folds (it replaces
    ``cv``, and warns when ``cv`` was set), so ``cv`` is left unset there; ``outcome_model`` sets it.
    """
    return Pipeline([("scale", StandardScaler()), ("model", LassoCV(alphas=30, cv=cv, max_iter=10_000, random_state=cfg.seed))])


def outcome_model(cfg: LearnerConfig) -> GridSearchCV:
    """E[Y | X] chosen by 5-fold CV between the lasso and depth-3 boosted trees, where the
    prediction itself is what counts (the T-learner's arms, the DR scores' mu0 and mu1).

    econml's ``'auto'`` makes the same linear-vs-trees choice (lasso vs. forest) at several times
    the cost: embeddings often carry a sparse, near-linear prognostic signal that deep trees
    overfit, and sometimes a non-linear one that the lasso misses. With ``outcome_holdout`` (large
    fits) the choice is made on one random 20% of the units, thousands of them: a third of the fits.
    """
    lasso = residual_model(cfg, cv=3)
    trees = HistGradientBoostingRegressor(max_depth=3, max_iter=500, early_stopping=True, random_state=cfg.seed)
    cv = ShuffleSplit(n_splits=1, test_size=0.2, random_state=cfg.seed) if cfg.outcome_holdout else OUTCOME_CV
    return GridSearchCV(lasso, {"model": [lasso.named_steps["model"], trees]}, cv=cv)  # the boosted trees thread already


def make_learner(name: Learner, cfg: LearnerConfig = LearnerConfig()):
    """An unfitted econml learner (forests get ``n_estimators`` rounded up to econml's multiple of 4)."""
    n_trees = 4 * -(-cfg.n_estimators // 4)
    if name == "causal_forest":
        return CausalForestDML(
            model_y=residual_model(cfg),
            model_t=KnownPropensity(),
            discrete_treatment=True,
            max_features=cfg.mtry,
            cv=cfg.inner_folds,
            n_estimators=n_trees,
            min_samples_leaf=cfg.min_samples_leaf,
            max_samples=cfg.max_samples,
            featurizer=cfg.featurizer(),
            random_state=cfg.seed,
            n_jobs=cfg.n_jobs,
        )
    if name == "dr_learner":
        return ForestDRLearner(
            model_regression=residual_model(cfg),
            model_propensity=KnownPropensity(),
            max_features=cfg.mtry,
            cv=cfg.inner_folds,
            n_estimators=n_trees,
            min_samples_leaf=cfg.min_samples_leaf,
            max_samples=cfg.max_samples,
            featurizer=cfg.featurizer(),
            random_state=cfg.seed,
            n_jobs=cfg.n_jobs,
        )
    if name == "t_learner":
        return TLearner(models=outcome_model(cfg))
    raise ValueError(f"unknown learner {name!r}; choose from {LEARNERS}")


MakeLearner = Callable[[Learner, LearnerConfig], object]


def check_arm_sizes(T: np.ndarray, folds: np.ndarray) -> None:
    """Fail before any fit when an arm of some fold's training data is too small for the learners'
    outcome model, naming the smallest arm and the fold counts that would work."""
    k = len(np.unique(folds))
    sizes = {(int(f), arm): int(((folds != f) & (arm == T)).sum()) for f in np.unique(folds) for arm in (0, 1)}
    (fold, arm), smallest = min(sizes.items(), key=lambda item: item[1])
    if smallest >= OUTCOME_CV:
        return
    arm_total = int((arm == T).sum())
    workable = [j for j in range(2, k) if arm_total * (j - 1) // j >= OUTCOME_CV]
    fix = (
        f"use {max(workable)} cross-fitting folds (cross_fitting.folds)"
        if workable
        else f"the trial needs at least {2 * OUTCOME_CV} units per arm"
    )
    raise ValueError(
        f"too few units for the CATE fits: the training data of fold {fold} ({k} folds) holds {smallest} "
        f"{'treated' if arm else 'control'} units of {arm_total}, and the learners' outcome model needs at least "
        f"{OUTCOME_CV} per arm ({OUTCOME_CV}-fold CV): {fix}"
    )


def check_trial_arrays(X: np.ndarray, T: np.ndarray, Y: np.ndarray, propensity: np.ndarray) -> None:
    """Fail clearly on inputs no learner can use."""
    if not set(np.unique(T)) <= {0, 1} or len(np.unique(T)) < 2:
        raise ValueError(f"treatment must be binary 0/1 with both arms present, got values {np.unique(T)[:5]}")
    for name, arr in (("features", X), ("outcome", Y), ("propensity", propensity)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contain {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    if ((propensity <= 0) | (propensity >= 1)).any():
        raise ValueError("propensity must lie strictly between 0 and 1")


def uses_design_propensity(model) -> bool:
    """Does this econml learner read the design propensity (``KnownPropensity``) from ``W``?"""
    first_stage = getattr(model, "model_t", None) or getattr(model, "model_propensity", None)
    return isinstance(first_stage, KnownPropensity)


def fit_learner(model, X: np.ndarray, T: np.ndarray, Y: np.ndarray, propensity: np.ndarray, groups: np.ndarray | None = None):
    """Fit any econml learner; the design propensity reaches those that read it as ``W``'s last
    column. With ``groups`` (the trial's clusters) econml's own nuisance cross-fitting keeps every
    cluster in one of its folds (GroupKFold); the T-learner has no such cross-fitting."""
    kwargs = {"groups": groups} if groups is not None and "groups" in inspect.signature(model.fit).parameters else {}
    if uses_design_propensity(model):
        kwargs["W"] = propensity[:, None]
    return model.fit(Y, T, X=X, **kwargs)


def _fit_rows(name: Learner, make: MakeLearner, cfg: LearnerConfig, rows: np.ndarray, X, T, Y, propensity, groups):
    """``make``'s learner fitted on the units in ``rows``, with settings sized to them (``LearnerConfig.for_data``)."""
    part = None if groups is None else groups[rows]
    return fit_learner(make(name, cfg.for_data(int(rows.sum()), X.shape[1])), X[rows], T[rows], Y[rows], propensity[rows], part)


def effect_with_interval(model, X: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CATE and (lower, upper); NaN bounds for learners without inference (the T-learner)."""
    tau = model.effect(X)
    if isinstance(model, TLearner):
        return tau, np.full_like(tau, np.nan), np.full_like(tau, np.nan)
    lower, upper = model.effect_interval(X, alpha=alpha)
    return tau, lower, upper


def cross_fit_cate(
    name: Learner,
    X: np.ndarray,
    T: np.ndarray,
    Y: np.ndarray,
    propensity: np.ndarray,
    folds: np.ndarray,
    cfg: LearnerConfig = LearnerConfig(),
    make: MakeLearner = make_learner,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """Out-of-fold CATE per unit: the model that predicts unit i never saw it.

    Returns columns tau, se, lower, upper, fold. The standard error is the interval half-width
    over 1.96 (NaN for the T-learner, which has no inference). ``make(name, cfg)`` builds each
    fold's learner (another factory compares against other settings, e.g. econml's defaults).
    """
    check_trial_arrays(X, T, Y, propensity)
    out = pd.DataFrame({"tau": np.nan, "lower": np.nan, "upper": np.nan, "fold": folds}, index=range(len(T)))
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        model = _fit_rows(name, make, cfg, train, X, T, Y, propensity, groups)
        out.loc[test, ["tau", "lower", "upper"]] = np.column_stack(effect_with_interval(model, X[test]))
    out["se"] = (out["upper"] - out["lower"]) / (2 * Z95)
    return out[["tau", "se", "lower", "upper", "fold"]]


def sequential_cate(
    name: Learner,
    X: np.ndarray,
    T: np.ndarray,
    Y: np.ndarray,
    propensity: np.ndarray,
    folds: np.ndarray,
    cfg: LearnerConfig = LearnerConfig(),
    make: MakeLearner = make_learner,
    groups: np.ndarray | None = None,
    cross_fitted: np.ndarray | None = None,
) -> np.ndarray:
    """grf's ``rate_cv`` scheme for small trials: fold k's units are predicted by a model fitted on
    folds 0..k-1 only (NaN for fold 0). Each fold's RATE then tests a model that is independent of
    every later fold, so the fold t-statistics can be pooled (``models.causal.heterogeneity.sequential_rate``).

    ``cross_fitted``: ``cross_fit_cate``'s tau from the same settings. Its last fold's model was fitted
    on exactly folds 0..K-2, so it is that fold's sequential model too: reused, not refitted (the
    largest of the K-1 fits)."""
    tau = np.full(len(T), np.nan)
    ks = np.unique(folds)
    for k in ks[1:]:
        train, test = folds < k, folds == k
        if k == ks[-1] and cross_fitted is not None:
            tau[test] = cross_fitted[test]
        elif len(np.unique(T[train])) == 2:
            model = _fit_rows(name, make, cfg, train, X, T, Y, propensity, groups)
            tau[test] = model.effect(X[test])
    return tau


def fit_full(
    name: Learner,
    X: np.ndarray,
    T: np.ndarray,
    Y: np.ndarray,
    propensity: np.ndarray,
    cfg: LearnerConfig = LearnerConfig(),
    groups: np.ndarray | None = None,
):
    """One model on every unit, for predicting new places (the CATE map); ``groups`` as in ``fit_learner``."""
    check_trial_arrays(X, T, Y, propensity)
    return fit_learner(make_learner(name, cfg.for_data(*X.shape)), X, T, Y, propensity, groups)


def outcome_predictions(
    X: np.ndarray, T: np.ndarray, Y: np.ndarray, folds: np.ndarray, cfg: LearnerConfig = LearnerConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold mu0(x), mu1(x): per fold, one outcome model per arm fitted on the other folds."""
    mu0, mu1 = np.empty(len(T)), np.empty(len(T))
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        sized = cfg.for_data(int(train.sum()), X.shape[1])  # as the T-learner's arms on the same units
        for arm, target in ((0, mu0), (1, mu1)):
            fit_on = train & (arm == T)
            target[test] = outcome_model(sized).fit(X[fit_on], Y[fit_on]).predict(X[test])
    return mu0, mu1


ESTIMATE_COLUMNS = ["unit_id", "data_choice", "learner", "tau", "se", "lower", "upper", "fold", "gamma"]


def shared_scores(X: np.ndarray, T: np.ndarray, Y: np.ndarray, propensity: np.ndarray, folds: np.ndarray, cfg: LearnerConfig) -> np.ndarray:
    """Each unit's doubly robust score from out-of-fold outcome models on ``X`` (the richest
    features, ``SCORE_CHOICE``): one set shared by every data choice, so their RATEs are comparable."""
    mu0, mu1 = outcome_predictions(X, T, Y, folds, cfg)
    return dr_scores(Y, T, mu0, mu1, propensity)


def fit_choice(
    learner: Learner,
    X: np.ndarray,
    T: np.ndarray,
    Y: np.ndarray,
    propensity: np.ndarray,
    folds: np.ndarray,
    cfg: LearnerConfig = LearnerConfig(),
    make: MakeLearner = make_learner,
    sequential: bool = False,
    groups: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """One learner on one data choice, out of fold: its estimates (tau, se, lower, upper, fold, and
    with ``sequential`` the ``sequential_cate`` priorities ``tau_sequential``) and its fit record
    (learner, seconds, mean_tau, sd_tau). Fits are independent: a step each in the asset graph."""
    started = time.perf_counter()
    est = cross_fit_cate(learner, X, T, Y, propensity, folds, cfg, make, groups)
    if sequential:
        est["tau_sequential"] = sequential_cate(learner, X, T, Y, propensity, folds, cfg, make, groups, est["tau"].to_numpy())
    record = {"learner": learner, "seconds": time.perf_counter() - started, "mean_tau": est["tau"].mean(), "sd_tau": est["tau"].std()}
    return est, record


def cross_fit_choices(
    unit_ids: np.ndarray,
    features: Mapping[str, np.ndarray],
    T: np.ndarray,
    Y: np.ndarray,
    propensity: np.ndarray,
    folds: np.ndarray,
    learners: Sequence[Learner] = LEARNERS,
    cfg: LearnerConfig = LearnerConfig(),
    make: MakeLearner = make_learner,
    log: Callable[[str], None] = lambda message: None,
    sequential: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every data choice x learner fitted out of fold on the same units and folds, each unit with its
    doubly robust score ``gamma`` (``shared_scores``).

    Returns the estimates (``ESTIMATE_COLUMNS``, and with ``sequential`` ``tau_sequential``) and the
    fit records (data_choice, learner, seconds, mean_tau, sd_tau).
    """
    unknown = set(features) - set(DATA_CHOICES)
    if unknown or SCORE_CHOICE not in features:
        raise ValueError(f"data choices must come from {DATA_CHOICES} and include {SCORE_CHOICE!r}, got {list(features)}")
    gamma = shared_scores(features[SCORE_CHOICE], T, Y, propensity, folds, cfg)
    parts, records = [], []
    for choice, X in features.items():
        for learner in learners:
            est, record = fit_choice(learner, X, T, Y, propensity, folds, cfg, make, sequential)
            records.append({"data_choice": choice, **record})
            log(f"{choice} x {learner}: {record['seconds']:.1f}s")
            parts.append(est.assign(unit_id=np.asarray(unit_ids), data_choice=choice, learner=learner, gamma=gamma))
    columns = ESTIMATE_COLUMNS + (["tau_sequential"] if sequential else [])
    return pd.concat(parts, ignore_index=True)[columns], pd.DataFrame(records)


def feature_matrix(table: pd.DataFrame, unit_ids) -> np.ndarray:
    """An embedding table's features for ``unit_ids``, in that order (``unit_id`` and ``fold`` dropped)."""
    return table.set_index("unit_id").loc[list(unit_ids)].drop(columns=["fold"], errors="ignore").to_numpy(dtype=float)
