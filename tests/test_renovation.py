"""Regression tests for the defects the renovation fixed: each failed on the code before it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import torch

from assets.causal import cate_estimates
from assets.config import values
from models.debiasing.wealth_map import WealthModel
from models.ingest.design import randomization_test
from models.ingest.folds import CrossFitting, fold_of, split_of
from models.representation.encoders import EncoderSpec, SequenceEncoder, parameter_count
from pipelines.automation import imagery_state, new_imagery_sensor, state_digest
from pipelines.definitions import defs
from pipelines.resources import StudySource
from tests.conftest import GRID, UTM36, ramp, write_raster

ROOT = Path(__file__).resolve().parents[1]


def test_gru_stacks_as_many_layers_as_the_capacity_says():
    small, medium = (SequenceEncoder(EncoderSpec(capacity=c, aggregator="gru")) for c in ("small", "medium"))
    assert len(small.temporal.cells) == 1 and len(medium.temporal.cells) == EncoderSpec(capacity="medium").layers == 2
    one_layer = SequenceEncoder(EncoderSpec(capacity="medium", aggregator="gru"))
    one_layer.temporal.cells = one_layer.temporal.cells[:1]
    assert parameter_count(medium) > parameter_count(one_layer)
    torch.manual_seed(0)
    x, valid, years = torch.randn(2, 3, 6, 16, 16), torch.ones(2, 3, 16, 16, dtype=torch.bool), torch.arange(3.0)
    with torch.no_grad():
        before = medium.eval()(x, valid, years)
        medium.temporal.cells[1].weight_hh.mul_(2.0)  # the second layer takes part in the output
        assert not torch.allclose(before, medium(x, valid, years))


def test_every_asset_has_its_own_description():
    graph = defs.resolve_asset_graph()
    descriptions = {key.to_user_string(): graph.get(key).description for key in graph.get_all_asset_keys()}
    assert len(set(descriptions.values())) == len(descriptions)
    assert "GeoTIFF" not in descriptions["unit_wealth_predictions"] and "GeoTIFF" in descriptions["wealth_map"]


def test_sensor_run_key_is_the_same_in_every_process(tmp_path):
    folder = tmp_path / "imagery"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", ramp(), UTM36, GRID)
    code = f"from pipelines.automation import imagery_state, state_digest; print(state_digest(imagery_state({str(folder)!r})))"
    keys = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert keys == {state_digest(imagery_state(str(folder)))}


def test_sensor_watches_the_files_a_catalog_csv_lists(tmp_path):
    scenes = tmp_path / "scenes"
    scenes.mkdir()
    write_raster(scenes / "a.tif", ramp(), UTM36, GRID)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("date,path\n2020-01-01,scenes/a.tif\n")
    source = StudySource(trials=str(tmp_path), imagery=str(catalog))
    first = new_imagery_sensor(dg.build_sensor_context(resources={"source": source}))
    assert isinstance(first, dg.RunRequest) and set(imagery_state(str(catalog))) == {str(catalog), str(scenes / "a.tif")}
    cursor = json.dumps(imagery_state(str(catalog)))
    assert isinstance(new_imagery_sensor(dg.build_sensor_context(resources={"source": source}, cursor=cursor)), dg.SkipReason)
    os.utime(scenes / "a.tif", (1e9, 1e9))  # the listed scene is replaced
    again = new_imagery_sensor(dg.build_sensor_context(resources={"source": source}, cursor=cursor))
    assert isinstance(again, dg.RunRequest) and again.tags["changed_scenes"] == "a.tif" and again.run_key != first.run_key


def _units(treated: int, n: int = 200, **columns) -> pd.DataFrame:
    return pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "treatment": [1] * treated + [0] * (n - treated), **columns})


def test_randomization_test_uses_the_estimators_design_probability():
    """One rule: the check tests against models.ingest.design.assignment_probability, never a fixed 0.5."""
    strata = _units(150, stratum=[0] * 100 + [1] * 100)  # 100% and 50% treated strata: design = stratum share
    test = randomization_test(strata)
    assert not test.tested and test.p_value == 1.0 and test.expected == pytest.approx(150)
    design = randomization_test(_units(150, assignment_probability=0.75))
    assert design.tested and design.p_value > 0.05
    assert randomization_test(_units(150, assignment_probability=0.5)).p_value < 1e-6


def test_treatment_share_check_passes_a_stratified_trial_and_fails_a_broken_one():
    import geopandas as gpd

    from assets.ingest import treatment_share_matches_design

    def check(units: pd.DataFrame) -> dg.AssetCheckResult:
        return treatment_share_matches_design(
            rct_units=gpd.GeoDataFrame(units, geometry=gpd.points_from_xy(np.zeros(len(units)), np.zeros(len(units))))
        )

    assert check(_units(150, stratum=[0] * 100 + [1] * 100)).passed
    assert not check(_units(150, assignment_probability=0.5)).passed


def test_plots_leave_the_matplotlib_backend_alone():
    code = "import matplotlib; matplotlib.use('svg'); import models.analyst.plots, assets.metadata; print(matplotlib.get_backend())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "svg"


def test_cross_fitting_refuses_embeddings_from_other_folds():
    ids = np.array([f"U{i:04d}" for i in range(100)])
    scheme = CrossFitting(5, 0)
    ours = pd.DataFrame({"unit_id": ids, "fold": fold_of(ids, 5, 0)})
    np.testing.assert_array_equal(scheme.check(ids, {"seq": ours, "tab": pd.DataFrame({"unit_id": ids})}), ours["fold"])
    with pytest.raises(ValueError, match="disagrees"):
        scheme.check(ids, {"seq": ours.assign(fold=fold_of(ids, 5, seed=1))})


def test_wealth_model_fits_on_train_only_and_round_trips():
    rng = np.random.default_rng(0)
    ids = np.array([f"S{i:05d}" for i in range(600)])
    X = rng.standard_normal((600, 8))
    y = X @ np.arange(8) + 0.1 * rng.standard_normal(600)
    split = split_of(ids)
    y_poisoned = np.where(split == "train", y, 1e6)  # the model must not look at calibration or test targets
    model = WealthModel().fit(X, y_poisoned, ids)
    assert model.r2_["train"] > 0.99 and abs(model.coef_[7] - 7) < 0.1
    assert np.bincount(pd.factorize(split, sort=True)[0]).tolist() == [
        pytest.approx(120, abs=40),
        pytest.approx(120, abs=40),
        pytest.approx(360, abs=50),
    ]
    again = WealthModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(again.predict(X), model.predict(X))


def test_a_misspelled_learner_is_refused_at_launch():
    job = defs.resolve_job_def("eotrials_job")
    good = {"ops": {"cate_estimates": {"config": {"learners": ["causal_forest"]}}}}
    dg.validate_run_config(job, good)  # cate_estimates is graph-backed: its config mapping hands the config to every fit
    mapped = cate_estimates.node_def.config_mapping.resolve_from_unvalidated_config(good["ops"]["cate_estimates"]["config"])
    assert values(mapped["fit_cate"]["config"]["learners"]) == ("causal_forest",)
    with pytest.raises(dg.DagsterInvalidConfigError, match="causal_forrest"):
        dg.validate_run_config(job, {"ops": {"cate_estimates": {"config": {"learners": ["causal_forrest"]}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="everything"):
        dg.validate_run_config(job, {"ops": {"simulation_study": {"config": {"heterogeneity": ["everything"]}}}})
