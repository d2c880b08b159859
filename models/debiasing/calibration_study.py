"""Do corrected ATEs' intervals cover when the calibration split is small? And what would labels buy?

A world where LCC and Tweedie are both exactly unbiased, so coverage measures the intervals, not a
correction's bias: wealth Y ~ N(0, 1) across places; imagery observes X = Y + N(0, s^2); the map
is the best predictor from X, Y-hat = k X with k = 1 / (1 + s^2), so the calibration slope is k
(Gaussian shrinkage: Tweedie's correction then equals LCC's de-shrinking). A trial draws units,
assigns half (or half the villages) to treatment, and treatment raises Y by ``effect``; the map sees
that through X. The corrections are fitted once per calibration split and every trial drawn
after it reuses them, as many trials reuse one map, so the calibration error is shared.

Each trial's corrected ATE gets two intervals: the trial's own (the difference-in-means interval of
the corrected outcomes, what a user gets without this module) and the calibration-aware one
(``models.debiasing.trial_effects.corrected_ate`` with bootstrap draws of the calibration split). Beside them,
prediction-powered inference (ppi-python's PPI++) with 50, 100 or 300 labelled trial units.

    python -m models.debiasing.calibration_study                 # the table in the README and docs/methods.md
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from models.causal.heterogeneity import difference_in_means
from models.debiasing.corrections import LinearCalibrationCorrection, OutOfSupportWarning, TweedieCorrection
from models.debiasing.trial_effects import CalibrationDraws, corrected_ate, ppi_ate


@dataclass(frozen=True)
class CoverageWorld:
    """The simulated world and trials; ``village_size`` > 1 makes trials cluster-randomized."""

    noise_sd: float = 0.8  # imagery noise s: calibration slope k = 1 / (1 + s^2) = 0.61
    effect: float = 1.0
    units_per_trial: int = 1000
    village_size: int = 1
    village_share: float = 0.3  # share of Y's variance that is between villages, when clustered

    @property
    def slope(self) -> float:
        return 1 / (1 + self.noise_sd**2)

    def places(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Independent places (the calibration split): truth and prediction."""
        y = rng.standard_normal(n)
        return y, self.slope * (y + self.noise_sd * rng.standard_normal(n))

    def trial(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Truth, prediction, treatment and village of one trial (treatment by village if clustered)."""
        n, m = self.units_per_trial, self.village_size
        village = np.arange(n) // m
        if m > 1:
            between = np.sqrt(self.village_share) * rng.standard_normal(village.max() + 1)[village]
            y = between + np.sqrt(1 - self.village_share) * rng.standard_normal(n)
        else:
            y = rng.standard_normal(n)
        t = rng.permutation(np.arange(village.max() + 1) % 2)[village]
        y = y + self.effect * t
        return {"truth": y, "prediction": self.slope * (y + self.noise_sd * rng.standard_normal(n)), "t": t, "village": village}


def _row(size: int, method: str, interval: str, labels: int, est, effect: float) -> dict:
    lower, upper = est.ci
    return {
        "calibration_size": size,
        "method": method,
        "interval": interval,
        "labels": labels,
        "estimate": est.estimate,
        "width": upper - lower,
        "covered": lower <= effect <= upper,
    }


def _trial_rows(world, trial, size, corrections, draws, budgets, rng) -> list[dict]:
    clusters = trial["village"] if world.village_size > 1 else None
    pred, t = trial["prediction"], trial["t"]
    rows = [_row(size, "naive", "trial only", 0, difference_in_means(pred, t, clusters), world.effect)]
    for name, correction in corrections.items():
        transforms = [d.transform for d in getattr(draws, name)]
        rows.append(_row(size, name, "trial only", 0, corrected_ate(pred, t, correction.transform, (), clusters), world.effect))
        rows.append(
            _row(size, name, "calibration-aware", 0, corrected_ate(pred, t, correction.transform, transforms, clusters), world.effect)
        )
    for labels in budgets:
        labeled = np.zeros(len(t), bool)
        labeled[rng.choice(len(t), labels, replace=False)] = True
        est = ppi_ate(trial["truth"], pred, t, labeled, clusters, seed=int(rng.integers(2**31)))
        rows.append(_row(0, "ppi++", "trial only", labels, est, world.effect))
    return rows


def coverage_study(
    world: CoverageWorld = CoverageWorld(),
    calibration_sizes: tuple[int, ...] = (100, 300, 1000),
    calibration_draws: int = 100,
    trials_per_draw: int = 5,
    n_boot: int = 200,
    label_budgets: tuple[int, ...] = (50, 100, 300),
    seed: int = 0,
) -> pd.DataFrame:
    """One row per trial, method and interval. PPI does not use the calibration split: its rows
    (``calibration_size`` 0) come from the trials of the first calibration size only."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in calibration_sizes:
        for _ in range(calibration_draws):
            truth, pred = world.places(size, rng)
            corrections = {"lcc": LinearCalibrationCorrection().fit(pred, truth), "tweedie": TweedieCorrection().fit(pred, truth)}
            draws = CalibrationDraws.fit(pred, truth, n_boot, int(rng.integers(2**31)))
            budgets = label_budgets if size == calibration_sizes[0] else ()
            with warnings.catch_warnings():  # trial predictions beyond a small calibration split's range: expected here
                warnings.simplefilter("ignore", OutOfSupportWarning)
                for _ in range(trials_per_draw):
                    rows += _trial_rows(world, world.trial(rng), size, corrections, draws, budgets, rng)
    return pd.DataFrame(rows)


def summarize(rows: pd.DataFrame, effect: float) -> pd.DataFrame:
    """Bias, RMSE, mean interval width and coverage per method, interval, calibration size and labels."""
    keys = ["method", "interval", "calibration_size", "labels"]
    err = rows["estimate"] - effect
    return (
        rows.assign(err=err, sq=err**2)
        .groupby(keys, sort=False)
        .agg(bias=("err", "mean"), rmse=("sq", lambda s: float(np.sqrt(s.mean()))), width=("width", "mean"), coverage=("covered", "mean"))
        .reset_index()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=100, help="calibration splits per size")
    parser.add_argument("--trials", type=int, default=5, help="trials per calibration split")
    parser.add_argument("--village-size", type=int, default=1)
    parser.add_argument("--out", default=None, help="Parquet of every trial's rows")
    args = parser.parse_args()
    world = CoverageWorld(village_size=args.village_size)
    started = time.perf_counter()
    rows = coverage_study(world, calibration_draws=args.draws, trials_per_draw=args.trials)
    if args.out:
        rows.to_parquet(args.out, index=False)
    print(summarize(rows, world.effect).to_markdown(index=False, floatfmt=".3f"))
    print(f"world: {asdict(world)}; {args.draws} calibration splits x {args.trials} trials per size; {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
