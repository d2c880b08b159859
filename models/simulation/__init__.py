"""Simulation: the seeded demo study simulator and the simulation study of data and model choices."""

from models.simulation.simulator import (
    BANDS,
    CHANGE_PATTERNS,
    COVARIATES,
    HETEROGENEITY_DRIVERS,
    SPECTRA,
    ChangePattern,
    ChangeSetting,
    Heterogeneity,
    SimulationConfig,
    StudyPaths,
    gaussian_field,
    place_windows,
    simulate_study,
    switch_land_cover,
    treatment_gains,
)
from models.simulation.study import EncoderChoice, StudyGrid, compare_choices, run_setting, run_study, summarize

__all__ = [
    "BANDS",
    "CHANGE_PATTERNS",
    "COVARIATES",
    "ChangePattern",
    "ChangeSetting",
    "EncoderChoice",
    "HETEROGENEITY_DRIVERS",
    "Heterogeneity",
    "SPECTRA",
    "SimulationConfig",
    "StudyGrid",
    "StudyPaths",
    "compare_choices",
    "gaussian_field",
    "place_windows",
    "run_setting",
    "run_study",
    "simulate_study",
    "summarize",
    "switch_land_cover",
    "treatment_gains",
]
