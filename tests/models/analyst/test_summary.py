"""The report's opening sentences: the verdict comes from the test whose level holds."""

import numpy as np
import pandas as pd

from models.analyst.summary import debiasing_sentence, heterogeneity_sentence
from models.debiasing.trust import TrialDiagnostics


def _evaluation(ratio: float, sequential_t: float | None) -> pd.DataFrame:
    row = {"data_choice": "image_sequence", "learner": "t_learner", "autoc": 0.3, "autoc_lower": 0.1, "autoc_upper": 0.5}
    row["autoc_ratio"] = ratio
    if sequential_t is not None:
        row["autoc_sequential_t"] = sequential_t
    return pd.DataFrame([row])


def test_the_heterogeneity_verdict_uses_the_sequential_rate_when_it_was_computed():
    assert heterogeneity_sentence(_evaluation(3.0, 1.0)).startswith("No heterogeneity detected at 5% (sequential RATE")
    assert heterogeneity_sentence(_evaluation(1.0, 3.0)).startswith("Heterogeneity detected (sequential RATE")
    assert heterogeneity_sentence(_evaluation(3.0, None)).startswith("Heterogeneity detected (RATE,")
    assert heterogeneity_sentence(_evaluation(3.0, np.nan)).startswith("Heterogeneity detected (RATE,")


def test_the_debiasing_sentence_carries_the_trials_recommendation():
    effects = pd.DataFrame({"method": ["naive", "lcc", "tweedie"], "estimate": [0.5, 0.7, 0.8]})
    corrections = {"diagnostics": {"slope_b": 0.7, "slope_se": 0.02, "variance_ratio": 0.6, "correction_warranted": True}}
    diagnostics = TrialDiagnostics(outside_support=0.0, disagreement=0.01, trial_se=0.1, favoured="lcc", labels=0, budget=pd.DataFrame())
    text = debiasing_sentence(effects, corrections, None, diagnostics)
    assert text.startswith("Debiased outcomes are warranted") and text.endswith(diagnostics.verdict)
    assert "Use lcc" in diagnostics.verdict
    assert "Use" not in debiasing_sentence(effects, corrections, None)
