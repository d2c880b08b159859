"""Do the pre-registered correction diagnostics predict which correction a trial can trust?

Three maps of a standardized wealth Y, each with a calibration split (2,000 places) on which LCC,
Tweedie and ``models.debiasing.trust.correction_diagnostics`` are fitted once, and 21 trials
(4,000 units, true effects -1 to 1) in which treatment raises Y and the map responds as it does
across places. The diagnostics' held-out effect slope is set beside the trials' slope of
estimated on true effect:

* ``gaussian``: Y ~ N(0, 1), map = k (Y + 0.8 e), the Bayes shrinkage k = 0.61 (Tweedie = LCC);
* ``overshoot``: skewed Y (log-normal), map = 0.25 Y + 0.12 e: strongly shrunk, skewed density;
* ``nonlinear``: skewed Y (gamma), map = 0.25 Y + 0.3 tanh(Y) + 0.2 e: shrunk more at the extremes.

    python benchmarks/correction_diagnostics.py            # 5 seeds; results/correction_diagnostics.json
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from harness import write_results
from models.debiasing.corrections import LinearCalibrationCorrection, OutOfSupportWarning, TweedieCorrection
from models.debiasing.trust import correction_diagnostics

EFFECTS = np.linspace(-1, 1, 21)


def expected_map(world: str, y: np.ndarray) -> np.ndarray:
    """E[map | Y]: how the map responds to wealth, across places and to a treatment alike."""
    if world == "gaussian":
        return y / (1 + 0.8**2)
    if world == "overshoot":
        return 0.25 * y
    if world == "nonlinear":
        return 0.25 * y + 0.3 * np.tanh(y)
    raise ValueError(f"unknown world {world!r}")


NOISE = {"gaussian": 0.8 / (1 + 0.8**2), "overshoot": 0.12, "nonlinear": 0.2}


def wealth(world: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if world == "gaussian":
        return rng.standard_normal(n)
    if world == "overshoot":
        return (rng.lognormal(0, 0.8, n) - np.exp(0.32)) / 1.2
    return (rng.gamma(2, 1, n) - 2) / np.sqrt(2)


def trial_slopes(world: str, lcc, tweedie, rng: np.random.Generator, units: int = 4000) -> dict[str, float]:
    """Slope of the estimated on the true effect over trials, per outcome."""
    estimates = {"naive": [], "lcc": [], "tweedie": []}
    for effect in EFFECTS:
        y, t = wealth(world, units, rng), rng.binomial(1, 0.5, units)
        observed = expected_map(world, y + effect * t) + NOISE[world] * rng.standard_normal(units)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfSupportWarning)
            for name, value in (("naive", observed), ("lcc", lcc.transform(observed)), ("tweedie", tweedie.transform(observed))):
                estimates[name].append(value[t == 1].mean() - value[t == 0].mean())
    return {name: float(np.polyfit(EFFECTS, v, 1)[0]) for name, v in estimates.items()}


def run(world: str, seed: int, calibration: int = 2000) -> dict:
    rng = np.random.default_rng(seed)
    y = wealth(world, calibration, rng)
    prediction = expected_map(world, y) + NOISE[world] * rng.standard_normal(calibration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lcc, tweedie = LinearCalibrationCorrection().fit(prediction, y), TweedieCorrection().fit(prediction, y)
    diagnostics = correction_diagnostics(prediction, y, seed=seed)
    trials = trial_slopes(world, lcc, tweedie, rng)
    row = {"world": world, "seed": seed, "slope_b": diagnostics.slope_b, "skewness": diagnostics.skewness}
    for name in ("naive", "lcc", "tweedie"):
        row[f"heldout_{name}"] = diagnostics.heldout_slope[name]
        row[f"trial_{name}"] = trials[name]
    best = min(("lcc", "tweedie"), key=lambda c: abs(trials[c] - 1))
    return row | {
        "favoured": diagnostics.favoured,
        "best_in_trials": best,
        "overshoot_flag": diagnostics.overshoot_risk,
        "agree": diagnostics.agree,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--worlds", nargs="+", default=["gaussian", "overshoot", "nonlinear"])
    parser.add_argument("--out", default="benchmarks/results/correction_diagnostics.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = pd.DataFrame([run(w, s) for w in args.worlds for s in args.seeds])
    summary = rows.groupby("world", sort=False).agg(
        slope_b=("slope_b", "mean"),
        skewness=("skewness", "mean"),
        **{f"{kind}_{m}": (f"{kind}_{m}", "mean") for m in ("lcc", "tweedie") for kind in ("heldout", "trial")},
        favoured_is_best=("favoured", lambda s: float((s == rows.loc[s.index, "best_in_trials"]).mean())),
        overshoot_flag=("overshoot_flag", "mean"),
        agree=("agree", "mean"),
    )
    print(summary.round(3).reset_index().to_markdown(index=False))
    print(f"{len(rows)} runs, {time.perf_counter() - started:.0f} s")
    write_results(args.out, summary.reset_index().to_dict("records"), vars(args), runs=rows.to_dict("records"))


if __name__ == "__main__":
    main()
