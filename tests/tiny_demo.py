"""The tiny demo: one run config small enough for plumbing tests (the CLI, the browser UI, the
production servers), still exercising every step: two trials of 60 units side by side, 300 survey
places, 3 dates, 2 folds, one CATE learner, a one-setting simulation study.

Built once per test session by the ``tiny_demo`` fixture (``tests/conftest.py``) through the
README's main command; the UI and production tests launch their runs with the same config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNITS = 60  # per trial
REGION_PX = 192

CONFIG: dict = {
    "resources": {"cross_fitting": {"config": {"folds": 2}}},
    "ops": {
        "study_inputs": {
            "config": {
                "n_units": UNITS,
                "n_survey": 300,
                "n_dates": 3,
                "region_px": REGION_PX,
                "chip_size": 16,
                "change_patterns": ["ring"],
            }
        },
        "map_encoder": {"config": {"epochs": 1}},
        "survey_image_sequences": {"config": {"chip_size": 16}},
        "unit_image_sequences": {"config": {"chip_size": 16}},
        "sequence_encoder": {"config": {"epochs": 1}},
        "image_encoder": {"config": {"epochs": 1}},
        "cate_estimates": {"config": {"learners": ["t_learner"]}},
        "cate_map": {"config": {"n_estimators": 20}},
        "grid_embeddings": {"config": {"step_px": 32}},
        "trial_outcomes": {"config": {"n_trials": 10, "units_per_trial": 40, "effects": [0.0, 1.0], "calibration_boot": 20}},
        "simulation_study": {
            "config": {
                "seeds": [0],
                "n_units": [100],
                "heterogeneity": ["change"],
                "encoders": [{"capacity": "small", "objective": "random"}],
                "region_px": 96,
                "n_dates": 2,
            }
        },
    },
}


@dataclass(frozen=True)
class TinyDemo:
    """A materialized tiny demo: its Dagster home, its data root and what the command printed."""

    home: Path
    data: Path
    stdout: str


def build(root: Path) -> TinyDemo:
    """Run ``python -m pipelines.demo`` with :data:`CONFIG` into a fresh home and data root under ``root``."""
    home, data = root / "home", root / "data"
    home.mkdir(parents=True)
    env = {**os.environ, "DAGSTER_HOME": str(home), "EOTRIALS_DATA": str(data), "EOTRIALS_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "pipelines.demo", "--config-json", json.dumps(CONFIG)]
    done = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"the tiny demo failed:\n{done.stderr[-4000:]}")
    return TinyDemo(home, data, done.stdout)
