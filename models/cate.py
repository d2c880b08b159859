"""CATE learners (econml) with the trial's known propensity, cross-fitted out of fold.

The trial is randomized, so the propensity is the design's assignment probability, never
estimated from features: it reaches econml's first stage as the last column of ``W`` and
``KnownPropensity`` reads it back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from econml.dml import CausalForestDML
from econml.dr import ForestDRLearner
from econml.metalearners import TLearner
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LassoCV
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

Learner = Literal["causal_forest", "dr_learner", "t_learner"]
LEARNERS: tuple[Learner, ...] = ("causal_forest", "dr_learner", "t_learner")


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


@dataclass(frozen=True)
class LearnerConfig:
    """Settings shared by the learners (their speed vs. econml defaults: benchmarks/cate.py)."""

    n_estimators: int = 200
    min_samples_leaf: int = 5
    inner_folds: int = 2
    n_jobs: int = 1
    seed: int = 0


def residual_model(cfg: LearnerConfig) -> Pipeline:
    """The forests' outcome first stage: the lasso on standardized features.

    The causal forest fits a local intercept, which absorbs first-stage error that varies with the
    effect modifiers but not error along the prognostic directions. The lasso recovers a linear
    prognostic signal exactly where boosted trees leave step error, even when the trees predict Y
    better: at N = 50,000 CV-chosen trees cost the causal forest 0.03 PEHE, and the DR learner
    lost 0.002 (benchmarks/cate.py).
    """
    return Pipeline([("scale", StandardScaler()), ("model", LassoCV(alphas=30, cv=3, random_state=cfg.seed))])


def outcome_model(cfg: LearnerConfig) -> GridSearchCV:
    """E[Y | X] chosen by 5-fold CV between the lasso and depth-3 boosted trees, where the
    prediction itself is what counts (the T-learner's arms, the DR scores' mu0 and mu1).

    econml's ``'auto'`` makes the same linear-vs-trees choice (lasso vs. forest) at several times
    the cost: embeddings often carry a sparse, near-linear prognostic signal that deep trees
    overfit, and sometimes a non-linear one that the lasso misses.
    """
    lasso = residual_model(cfg)
    trees = HistGradientBoostingRegressor(max_depth=3, max_iter=500, early_stopping=True, random_state=cfg.seed)
    return GridSearchCV(lasso, {"model": [lasso.named_steps["model"], trees]}, n_jobs=cfg.n_jobs)


def make_learner(name: Learner, cfg: LearnerConfig = LearnerConfig()):
    """An unfitted econml learner (forests get ``n_estimators`` rounded up to econml's multiple of 4)."""
    n_trees = 4 * -(-cfg.n_estimators // 4)
    if name == "causal_forest":
        return CausalForestDML(
            model_y=residual_model(cfg), model_t=KnownPropensity(), discrete_treatment=True, cv=cfg.inner_folds,
            n_estimators=n_trees, min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.seed, n_jobs=cfg.n_jobs,
        )
    if name == "dr_learner":
        return ForestDRLearner(
            model_regression=residual_model(cfg), model_propensity=KnownPropensity(), cv=cfg.inner_folds,
            n_estimators=n_trees, min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.seed, n_jobs=cfg.n_jobs,
        )
    if name == "t_learner":
        return TLearner(models=outcome_model(cfg))
    raise ValueError(f"unknown learner {name!r}; choose from {LEARNERS}")


def check_trial_arrays(X: np.ndarray, T: np.ndarray, Y: np.ndarray, propensity: np.ndarray) -> None:
    """Fail clearly on inputs no learner can use."""
    if not set(np.unique(T)) <= {0, 1} or len(np.unique(T)) < 2:
        raise ValueError(f"treatment must be binary 0/1 with both arms present, got values {np.unique(T)[:5]}")
    for name, arr in (("features", X), ("outcome", Y), ("propensity", propensity)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contain {int((~np.isfinite(arr)).sum())} NaN or infinite values")
    if ((propensity <= 0) | (propensity >= 1)).any():
        raise ValueError("propensity must lie strictly between 0 and 1")


def fit_predict(name: Learner, X_train, T_train, Y_train, p_train, X_test, cfg: LearnerConfig, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit on the training units; CATE and (lower, upper) interval on the test units."""
    model = make_learner(name, cfg)
    if name == "t_learner":
        model.fit(Y_train, T_train, X=X_train)
        tau = model.effect(X_test)
        return tau, np.full_like(tau, np.nan), np.full_like(tau, np.nan)
    model.fit(Y_train, T_train, X=X_train, W=p_train[:, None])
    lower, upper = model.effect_interval(X_test, alpha=alpha)
    return model.effect(X_test), lower, upper


def cross_fit_cate(name: Learner, X: np.ndarray, T: np.ndarray, Y: np.ndarray, propensity: np.ndarray, folds: np.ndarray, cfg: LearnerConfig = LearnerConfig()) -> pd.DataFrame:
    """Out-of-fold CATE per unit: the model that predicts unit i never saw it.

    Returns columns tau, se, lower, upper, fold. The standard error is the interval half-width
    over 1.96 (NaN for the T-learner, which has no inference).
    """
    check_trial_arrays(X, T, Y, propensity)
    out = pd.DataFrame({"tau": np.nan, "lower": np.nan, "upper": np.nan, "fold": folds}, index=range(len(T)))
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        tau, lower, upper = fit_predict(name, X[train], T[train], Y[train], propensity[train], X[test], cfg)
        out.loc[test, ["tau", "lower", "upper"]] = np.column_stack([tau, lower, upper])
    out["se"] = (out["upper"] - out["lower"]) / (2 * 1.959964)
    return out[["tau", "se", "lower", "upper", "fold"]]


def fit_full(name: Learner, X: np.ndarray, T: np.ndarray, Y: np.ndarray, propensity: np.ndarray, cfg: LearnerConfig = LearnerConfig()):
    """One model on every unit, for predicting new places (the CATE map)."""
    check_trial_arrays(X, T, Y, propensity)
    model = make_learner(name, cfg)
    model.fit(Y, T, X=X) if name == "t_learner" else model.fit(Y, T, X=X, W=propensity[:, None])
    return model


def outcome_predictions(X: np.ndarray, T: np.ndarray, Y: np.ndarray, folds: np.ndarray, cfg: LearnerConfig = LearnerConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold mu0(x), mu1(x): per fold, one outcome model per arm fitted on the other folds."""
    mu0, mu1 = np.empty(len(T)), np.empty(len(T))
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        for arm, target in ((0, mu0), (1, mu1)):
            fit_on = train & (T == arm)
            target[test] = clone(outcome_model(cfg)).fit(X[fit_on], Y[fit_on]).predict(X[test])
    return mu0, mu1
