"""One materialization of ingest and representation, shared by the representation, causal and
debiasing asset tests (each then materializes only its own groups on top of it)."""

import pytest

from assets import ingest, representation
from assets.ingest import ChipsConfig, DemoStudyConfig, SurveyChipsConfig
from assets.representation import EncoderConfig, GridConfig, ImageEncoderConfig, MapEncoderConfig
from tests.conftest import materialize_modules

DEMO = DemoStudyConfig(n_units=240, n_survey=900, n_dates=3, region_px=192, chip_size=16, seed=6)
FOLDS = 3
MAX_TRAIN_UNITS = 120  # the sequence encoder trains on a sample of the trial; every unit is embedded
EVIDENCE_OPS = {
    "study_inputs": DEMO,
    "unit_image_sequences": ChipsConfig(chip_size=16),
    "sequence_encoder": EncoderConfig(objective="prognostic", epochs=1, batch_size=32, max_train_units=MAX_TRAIN_UNITS),
    "image_encoder": ImageEncoderConfig(epochs=1, batch_size=32),
    "map_encoder": MapEncoderConfig(epochs=2, batch_size=32),
    "survey_image_sequences": SurveyChipsConfig(chip_size=16),
    "grid_embeddings": GridConfig(step_px=16),
    "map_grid_embeddings": GridConfig(step_px=16),
}


@pytest.fixture(scope="session")
def evidence(tmp_path_factory):
    """(data root, result) of ingest + representation on the shared small demo, on the CPU."""
    root = tmp_path_factory.mktemp("evidence")
    return root, materialize_modules([ingest, representation], root, ops=EVIDENCE_OPS, folds=FOLDS)
