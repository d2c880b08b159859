"""CATE learner fit time, peak memory and PEHE: eotrials settings vs econml's defaults.

    python benchmarks/cate.py                               # N = 1,000, 10,000, 50,000; 64-dim features
    python benchmarks/cate.py --units 1000 --learners causal_forest --seeds 0 1 2
    python benchmarks/cate.py --simulator-data data        # after `make demo`: PEHE on the simulator
    python benchmarks/cate.py --units 10000 --settings eotrials   # re-fit one side only after a change
    python benchmarks/cate.py --units 50000 --learners causal_forest --settings eotrials --max-fit-units 20000
                                                            # the CATE map's sampled fit: time and PEHE cost
    python benchmarks/cate.py --units 10000 --learners causal_forest --settings eotrials --learner-json '{"max_samples": 0.2}'
                                                            # an econml forest argument changed: time and PEHE

Synthetic data: 64-dimensional Gaussian 'embeddings', randomized treatment (p = 0.5), a CATE that
depends non-linearly on three dimensions, a linear prognostic part, outcome noise sd 1; PEHE on
2,000 held-out units, one row per data seed. Each fit runs in its own process (peak RSS is its
own) with a wall-clock limit.

Simulator: the materialized demo's embeddings and trial, 5-fold out-of-fold CATEs for every
learner and data choice, PEHE against the simulator's true CATE.

eotrials settings: the known propensity instead of an estimated one, the lasso as the forests' first
stage (``models.causal.cate.residual_model``), outcome models chosen by CV between the lasso and depth-3
boosted trees for the T-learner (``models.causal.cate.outcome_model``), 200 trees, 255 quantile bins
above 5,100 units, leaves of at least 0.2% of each tree's units and every core (forests: ``LearnerConfig``).
econml defaults: the learner with no arguments ('auto' first stages, estimated propensity);
TLearner has no default model, so scikit-learn's GradientBoostingRegressor, as in econml's docs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness import measure, write_results
from models.causal.cate import LearnerConfig, fit_learner, make_learner

SETTINGS = ("eotrials", "econml default")


def dgp(n: int, seed: int, dim: int = 64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float64)
    tau = 1.0 + np.tanh(X[:, 0]) + 0.5 * (X[:, 1] > 0) - 0.5 * X[:, 2] ** 2 / 2
    T = rng.binomial(1, 0.5, n)
    Y = X[:, 3] + 0.5 * X[:, 4] + T * tau + rng.standard_normal(n)
    return X, T, Y, tau


def econml_default(name: str, seed: int = 0):
    """The learner as econml ships it; only the random seed is set, for reproducible rows."""
    from econml.dml import CausalForestDML
    from econml.dr import ForestDRLearner
    from econml.metalearners import TLearner
    from sklearn.ensemble import GradientBoostingRegressor

    return {
        "causal_forest": lambda: CausalForestDML(discrete_treatment=True, random_state=seed),
        "dr_learner": lambda: ForestDRLearner(random_state=seed),
        "t_learner": lambda: TLearner(models=GradientBoostingRegressor(random_state=seed)),
    }[name]()


def _fit(name: str, variant: str, n: int, seed: int, fit_units: int = 0, overrides: dict | None = None) -> dict:
    """One fit on ``n`` units, or on the first ``fit_units`` of them (the units are i.i.d., so that
    is a random sample: the CATE map's ``max_fit_units``), with the learner's ``overrides``
    (econml constructor arguments, e.g. ``max_samples``) set before fitting."""
    X, T, Y, _ = dgp(n, seed)
    if 0 < fit_units < n:
        X, T, Y = X[:fit_units], T[:fit_units], Y[:fit_units]
    Xt, _, _, tau_t = dgp(2000, 1000 + seed)
    model = make_learner(name, LearnerConfig(seed=seed).for_data(*X.shape)) if variant == "eotrials" else econml_default(name, seed)
    for key, value in (overrides or {}).items():
        setattr(model, key, value)
    started = time.perf_counter()
    fit_learner(model, X, T, Y, np.full(len(T), 0.5))
    return {"fit_s": round(time.perf_counter() - started, 1), "pehe": round(_pehe(model.effect(Xt), tau_t), 3)}


def _econml_default_factory(name: str, cfg: LearnerConfig):
    return econml_default(name, cfg.seed)


def simulator_pehe(data: Path, learners: list[str], seeds: list[int], settings: list[str]) -> pd.DataFrame:
    """Every learner x data choice on the materialized demo, out of fold with the causal assets' own
    function (``cross_fit_choices``): eotrials settings vs econml's defaults, PEHE against the
    simulator's true CATE, one row per model seed (a forest's PEHE moves by several hundredths
    between seeds at N = 1,000)."""
    import geopandas as gpd

    from models.causal.cate import DATA_CHOICES, cross_fit_choices, feature_matrix
    from models.causal.heterogeneity import evaluate_choices
    from models.ingest.design import trial_frame
    from models.ingest.folds import CrossFitting
    from models.io.truth import read_unit_truth
    from models.simulation.simulator import StudyPaths

    tables = {choice: pd.read_parquet(data / f"embeddings_{choice}.parquet") for choice in DATA_CHOICES}
    ids = tables["image_sequence_tabular"]["unit_id"].to_numpy()
    trial = trial_frame(gpd.read_parquet(data / "rct_units.parquet"), "outcome", ids)
    truth = read_unit_truth(StudyPaths.under(data / "demo_study").unit_truth)["tau"]
    features = {choice: feature_matrix(table, ids) for choice, table in tables.items()}
    T, Y, p = trial["treatment"].to_numpy(), trial["outcome"].to_numpy(), trial["propensity"].to_numpy()
    folds = CrossFitting().check(ids, tables)
    rows = []
    for seed in seeds:
        for variant in settings:
            make = make_learner if variant == "eotrials" else _econml_default_factory
            estimates, fits = cross_fit_choices(ids, features, T, Y, p, folds, learners, LearnerConfig(seed=seed), make)
            scores = evaluate_choices(estimates, tau_true=truth, n_boot=4)[0][["data_choice", "learner", "pehe"]]
            for row in fits.merge(scores, on=["data_choice", "learner"]).to_dict("records"):
                rows.append(
                    {
                        "data_choice": row["data_choice"],
                        "learner": row["learner"],
                        "settings": variant,
                        "seed": seed,
                        "seconds": row["seconds"],
                        "pehe": row["pehe"],
                    }
                )
                print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def _pehe(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((estimate - truth) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--learners", nargs="+", default=["causal_forest", "dr_learner", "t_learner"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="data seeds (synthetic) or model seeds (simulator), one fit each")
    parser.add_argument("--limit", type=float, default=1200, help="seconds per fit before it is stopped")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(SETTINGS),
        choices=SETTINGS,
        help="which settings to fit (re-run one side only after a change)",
    )
    parser.add_argument(
        "--max-fit-units", type=int, default=0, help="also fit on a sample of this many units (the CATE map's max_fit_units)"
    )
    parser.add_argument("--learner-json", default="{}", help="econml constructor arguments to override, as JSON")
    parser.add_argument("--out", default="benchmarks/results/cate.json")
    parser.add_argument(
        "--simulator-data", default=None, help="a materialized demo data folder (make demo): compare PEHE on the simulator instead"
    )
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.simulator_data:
        rows = simulator_pehe(Path(args.simulator_data), args.learners, args.seeds, args.settings)
        keys = ["data_choice", "learner", "settings"]
        table = (
            rows.groupby(keys, sort=False)
            .agg(
                seeds=("seed", "size"),
                seconds=("seconds", "mean"),
                pehe_mean=("pehe", "mean"),
                pehe_min=("pehe", "min"),
                pehe_max=("pehe", "max"),
            )
            .round(3)
            .reset_index()
        )
        print(table.to_markdown(index=False))
        rows.to_csv(Path(args.out).with_name("cate_simulator.csv"), index=False)
        Path(args.out).with_name("cate_simulator.md").write_text(table.to_markdown(index=False) + "\n")
        return
    rows = []
    for n in args.units:
        for seed in args.seeds:
            for name in args.learners:
                samples = [0, *([args.max_fit_units] if 0 < args.max_fit_units < n else [])]
                for variant in args.settings:
                    for fit_units in samples:
                        label = variant if not fit_units else f"{variant}, fitted on {fit_units:,}"
                        rows.append(
                            {
                                "units": n,
                                "seed": seed,
                                "learner": name,
                                "settings": label,
                                **measure(_fit, name, variant, n, seed, fit_units, json.loads(args.learner_json), limit=args.limit),
                            }
                        )
                        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    print(frame.to_markdown(index=False))
    if frame["pehe"].notna().any():
        summary = (
            frame.groupby(["units", "learner", "settings"], sort=False)
            .agg(seeds=("seed", "size"), fit_s=("fit_s", "mean"), peak_rss_mb=("peak_rss_mb", "max"), pehe=("pehe", "mean"))
            .round(3)
            .reset_index()
        )
        print(summary.to_markdown(index=False))
    write_results(args.out, rows, vars(args))


if __name__ == "__main__":
    main()
