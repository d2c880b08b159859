"""The ``cate_estimates`` step at trial scale: the shared DR scores, every data choice x learner
out of fold (with grf's sequential scheme where the settings ask for it) and the cross-fitted RATE
and calibration test (``evaluate_choices``), timed stage by stage, with PEHE against the true CATE.

    python benchmarks/cate_estimates.py --units 1000 10000 100000          # one process, every core
    python benchmarks/cate_estimates.py --units 100000 --workers 2          # the fits spread over 2 processes
    python benchmarks/cate_estimates.py --units 100000 --learner-json '{"max_tree_units": null}'   # without the step's tree cap

Synthetic data with the pipeline's feature widths (tabular 4, image 32, image sequence 32, image
sequence + tabular 36): the true CATE depends on a covariate, on a 'level' dimension every image
choice sees and on a 'change' dimension only the sequences see; a linear prognostic part; outcome
noise sd 1; randomized treatment with p = 0.5; 5 folds by unit id, as ``CrossFitting`` assigns them.

The learners' settings are the step's (``CateConfig``), with ``--learner-json`` overriding fields.

One process (``--workers 1``): the fits one after another, each forest on every core (econml's
threads), as the in-process executor runs them. ``--workers W``: the fits in W processes, one core
each, as the multiprocess and Celery executors run the asset graph's fit steps side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from assets.causal import CateConfig
from harness import measure, write_results
from models.causal.cate import DATA_CHOICES, LEARNERS, SCORE_CHOICE, fit_choice, shared_scores
from models.causal.heterogeneity import evaluate_choices
from models.ingest.folds import CrossFitting

WIDTHS = {"tabular": 4, "image": 32, "image_sequence": 32}


def synthetic_trial(n: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Unit ids, features per data choice, treatment, outcome and the true CATE."""
    rng = np.random.default_rng(seed)
    tabular = rng.standard_normal((n, WIDTHS["tabular"]))
    sequence = rng.standard_normal((n, WIDTHS["image_sequence"]))
    image = np.column_stack([sequence[:, :1], rng.standard_normal((n, 1)), sequence[:, 2:]])  # one date: no change
    tau = 1.0 + np.tanh(sequence[:, 0]) + 0.5 * (sequence[:, 1] > 0) + 0.3 * tabular[:, 0]
    T = rng.binomial(1, 0.5, n)
    Y = sequence[:, 3] + 0.5 * tabular[:, 1] + T * tau + rng.standard_normal(n)
    features = {"tabular": tabular, "image": image, "image_sequence": sequence, SCORE_CHOICE: np.hstack([sequence, tabular])}
    return np.arange(n), features, T, Y, tau


def _fit(job: tuple) -> tuple[pd.DataFrame, dict]:
    choice, learner, X, T, Y, folds, cfg, sequential = job
    est, record = fit_choice(learner, X, T, Y, np.full(len(T), 0.5), folds, cfg, sequential=sequential)
    return est.assign(data_choice=choice, learner=learner), {"data_choice": choice, **record}


def run(n: int, seed: int, workers: int, sequential: bool, overrides: dict) -> dict:
    """Every stage of ``cate_estimates`` and the RATE evaluation on ``n`` units; seconds per stage."""
    ids, features, T, Y, tau = synthetic_trial(n, seed)
    folds = CrossFitting().assign(ids)
    cfg = dataclasses.replace(CateConfig().learner_config(), seed=seed, n_jobs=1 if workers > 1 else -1, **overrides)
    started = time.perf_counter()
    gamma = shared_scores(features[SCORE_CHOICE], T, Y, np.full(n, 0.5), folds, cfg)
    scores_s = time.perf_counter() - started
    jobs = [(c, learner, features[c], T, Y, folds, cfg, sequential) for c in DATA_CHOICES for learner in LEARNERS]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            fitted = list(pool.map(_fit, jobs))
    else:
        fitted = [_fit(job) for job in jobs]
    fits_s = time.perf_counter() - started - scores_s
    estimates = pd.concat([est.assign(unit_id=ids, gamma=gamma) for est, _ in fitted], ignore_index=True)
    evaluation, _ = evaluate_choices(estimates, tau_true=pd.Series(tau, index=ids), seed=seed)
    total = time.perf_counter() - started
    fit_seconds = {f"{r['data_choice']}__{r['learner']}": round(r["seconds"], 1) for _, r in fitted}
    pehe = {f"{r.data_choice}__{r.learner}": round(r.pehe, 3) for r in evaluation.itertuples()}
    return {
        "scores_s": round(scores_s, 1),
        "fits_s": round(fits_s, 1),
        "evaluation_s": round(total - scores_s - fits_s, 1),
        "total_s": round(total, 1),
        "fit_seconds": fit_seconds,
        "pehe": pehe,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--workers", type=int, default=1, help="processes the fits are spread over (1: one process, every core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-sequential", action="store_true", help="without grf's sequential scheme (CateConfig.sequential_rate)")
    parser.add_argument("--learner-json", default="{}", help="LearnerConfig fields to override, as JSON")
    parser.add_argument("--limit", type=float, default=7200)
    parser.add_argument("--out", default="benchmarks/results/cate_estimates.json")
    args = parser.parse_args()
    overrides = json.loads(args.learner_json)
    rows = []
    for n in args.units:
        row = {"units": n, "workers": args.workers, "sequential": not args.no_sequential, **overrides}
        rows.append(row | measure(run, n, args.seed, args.workers, not args.no_sequential, overrides, limit=args.limit))
        print(json.dumps(rows[-1]), flush=True)
        write_results(args.out, rows, vars(args))


if __name__ == "__main__":
    main()
