"""The source study's own simulation: both corrections undo the attenuation; a treated survey
population makes LCC under-correct."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))

from study2_simulation import run, slopes  # noqa: E402

SEEDS = (0, 1, 2, 3)


def _mean_slopes(survey_effect: float) -> tuple[pd.Series, float, pd.DataFrame]:
    parts, fits = zip(*(run(s, 10_000, 2_000, 10_000, 0.3, survey_effect) for s in SEEDS), strict=True)
    per_seed = pd.concat([slopes(p) for p in parts])
    return per_seed.groupby("method")["slope"].mean(), float(np.mean([f["calibration_slope_b"] for f in fits])), pd.DataFrame(fits)


@pytest.mark.slow
def test_corrections_reach_slope_one_and_a_treated_survey_breaks_lcc():
    untreated, b_untreated, fits = _mean_slopes(0.0)
    assert untreated["oracle"] == pytest.approx(1.0, abs=0.02)
    assert untreated["naive"] < 0.7  # the map attenuates the effect
    assert untreated["lcc"] == pytest.approx(1.0, abs=0.08)
    assert untreated["tweedie (scott, calibration density)"] == pytest.approx(1.0, abs=0.08)
    # the diagnostics, from the calibration split alone, predict both corrections' trial slopes and stay quiet
    assert fits["heldout_slope_lcc"].mean() == pytest.approx(untreated["lcc"], abs=0.08)
    assert fits["heldout_slope_tweedie"].mean() == pytest.approx(untreated["tweedie (scott, calibration density)"], abs=0.08)
    assert fits["agree"].all()
    treated, b_treated, _ = _mean_slopes(2.0)
    # a survey shifted up by treatment sees the map's steeper upper range: b grows, LCC under-corrects
    assert b_treated > b_untreated + 0.03
    assert treated["lcc"] < untreated["lcc"] - 0.03
