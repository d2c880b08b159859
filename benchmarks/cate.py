"""CATE learner fit time, peak memory and PEHE: eotrials settings vs econml's defaults.

    python benchmarks/cate.py                          # N = 1,000, 10,000, 50,000; 64-dim features
    python benchmarks/cate.py --units 1000 --learners causal_forest
    python benchmarks/cate.py --simulator-data data   # after `make demo`: PEHE on the simulator

Data: 64-dimensional Gaussian 'embeddings', randomized treatment (p = 0.5), a CATE that depends
non-linearly on three of the dimensions, outcome noise sd 1; PEHE is measured on 2,000 held-out
units. Each fit runs in its own process (peak RSS is its own) with a wall-clock limit.

eotrials settings: the known propensity instead of an estimated one, HistGradientBoosting outcome
models, 200 trees (forests). econml defaults: the learner with no arguments ('auto' first stages,
estimated propensity); TLearner has no default model, so scikit-learn's GradientBoostingRegressor,
as in econml's documentation.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.cate import LearnerConfig, make_learner


def dgp(n: int, seed: int, dim: int = 64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float64)
    tau = 1.0 + np.tanh(X[:, 0]) + 0.5 * (X[:, 1] > 0) - 0.5 * X[:, 2] ** 2 / 2
    T = rng.binomial(1, 0.5, n)
    Y = X[:, 3] + 0.5 * X[:, 4] + T * tau + rng.standard_normal(n)
    return X, T, Y, tau


def econml_default(name: str):
    from econml.dml import CausalForestDML
    from econml.dr import ForestDRLearner
    from econml.metalearners import TLearner
    from sklearn.ensemble import GradientBoostingRegressor

    return {"causal_forest": lambda: CausalForestDML(discrete_treatment=True), "dr_learner": lambda: ForestDRLearner(), "t_learner": lambda: TLearner(models=GradientBoostingRegressor())}[name]()


def _fit(name: str, variant: str, n: int, queue) -> None:
    X, T, Y, _ = dgp(n, 0)
    Xt, _, _, tau_t = dgp(2000, 1)
    model = make_learner(name, LearnerConfig()) if variant == "eotrials" else econml_default(name)
    started = time.perf_counter()
    if name == "t_learner":
        model.fit(Y, T, X=X)
    elif variant == "eotrials":
        model.fit(Y, T, X=X, W=np.full((n, 1), 0.5))
    else:
        model.fit(Y, T, X=X)
    seconds = time.perf_counter() - started
    pehe = float(np.sqrt(np.mean((model.effect(Xt) - tau_t) ** 2)))
    queue.put({"seconds": round(seconds, 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "pehe": round(pehe, 3)})


def run(name: str, variant: str, n: int, limit: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_fit, args=(name, variant, n, queue))
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.kill()
        return {"seconds": f">{limit:.0f} (stopped)", "peak_rss_mb": None, "pehe": None}
    return queue.get() if not queue.empty() else {"seconds": "failed", "peak_rss_mb": None, "pehe": None}


def simulator_pehe(data: Path, folds: int = 5) -> dict:
    """Causal forest on the materialized demo (image sequence + tabular embeddings), out of fold:
    eotrials settings vs econml's default, PEHE against the simulator's true CATE."""
    import geopandas as gpd
    from econml.dml import CausalForestDML

    from models.cate import cross_fit_cate
    from models.training import fold_of

    emb = pd.read_parquet(data / "embeddings_image_sequence_tabular.parquet")
    units = gpd.read_parquet(data / "rct_units.parquet").set_index("unit_id").loc[emb["unit_id"]]
    tau = pd.read_parquet(data / "demo_study" / "truth" / "units.parquet").set_index("unit_id").loc[emb["unit_id"], "tau"].to_numpy()
    X, T, Y = emb.drop(columns=["unit_id", "fold"]).to_numpy(), units["treatment"].to_numpy(), units["outcome"].to_numpy()
    k = fold_of(emb["unit_id"].to_numpy(), folds)
    started = time.perf_counter()
    ours = cross_fit_cate("causal_forest", X, T, Y, np.full(len(T), 0.5), k, LearnerConfig())["tau"].to_numpy()
    ours_s = time.perf_counter() - started
    default = np.empty(len(T))
    started = time.perf_counter()
    for f in range(folds):
        default[k == f] = CausalForestDML(discrete_treatment=True).fit(Y[k != f], T[k != f], X=X[k != f]).effect(X[k == f])
    default_s = time.perf_counter() - started
    pehe = lambda est: round(float(np.sqrt(np.mean((est - tau) ** 2))), 3)  # noqa: E731
    return {"units": len(T), "eotrials_pehe": pehe(ours), "eotrials_seconds": round(ours_s, 1), "econml_default_pehe": pehe(default), "econml_default_seconds": round(default_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--learners", nargs="+", default=["causal_forest", "dr_learner", "t_learner"])
    parser.add_argument("--limit", type=float, default=600, help="seconds per fit before it is stopped")
    parser.add_argument("--out", default="benchmarks/results/cate.json")
    parser.add_argument("--simulator-data", default=None, help="a materialized demo data folder (make demo): compare PEHE on the simulator instead")
    args = parser.parse_args()
    if args.simulator_data:
        print(simulator_pehe(Path(args.simulator_data)))
        return
    rows = []
    for n in args.units:
        for name in args.learners:
            for variant in ("eotrials", "econml default"):
                rows.append({"units": n, "learner": name, "settings": variant, **run(name, variant, n, args.limit)})
                print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
