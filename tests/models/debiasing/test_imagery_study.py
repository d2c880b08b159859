"""Many trials whose treatment reaches the map through post-treatment imagery the simulator writes."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer

from models.debiasing.corrections import LinearCalibrationCorrection, TweedieCorrection
from models.debiasing.imagery_study import PostTreatmentImagery, imagery_trials
from models.debiasing.trial_effects import TrialDesign, evaluate
from models.ingest.catalog import build_catalog
from models.simulation.simulator import SPECTRA, SimulationConfig, place_windows, simulate_study, switch_land_cover, treatment_gains

CONFIG = SimulationConfig(n_units=20, n_survey=40, n_dates=3, region_px=160, chip_size=16, post_treatment_effects=(-0.5, 0.5, 1.0))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return simulate_study(CONFIG, tmp_path_factory.mktemp("study"))


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.tags(), src


def test_post_treatment_scenes_change_only_the_surveyed_places_surroundings(study):
    imagery = PostTreatmentImagery.read(study.post_treatment)
    assert sorted(imagery.scenes) == [-0.5, 0.5, 1.0] and imagery.date == pd.Timestamp("2018-07-15")
    observed, profile, tags, src = _read(study.imagery_dir / "scene_2018-07-15.tif")
    survey = pd.read_csv(study.survey_table)
    x, y = Transformer.from_crs("EPSG:4326", profile["crs"], always_xy=True).transform(survey["lon"], survey["lat"])
    rows, cols = rasterio.transform.rowcol(profile["transform"], x, y)
    windows = place_windows(observed.shape[1:], np.asarray(rows), np.asarray(cols), CONFIG.chip_size)
    assert 0.05 < windows.mean() < 0.95  # the check below has pixels on both sides
    changed_share = {}
    for effect, path in imagery.scenes.items():
        scene, scene_profile, scene_tags, _ = _read(path)
        assert scene_profile["crs"] == profile["crs"] and scene_profile["transform"] == profile["transform"]
        assert scene.dtype == observed.dtype and scene_tags["ACQUISITION_DATE"] == tags["ACQUISITION_DATE"]
        differs = (scene != observed).any(axis=0)
        assert not differs[~windows].any()  # outside every window: bit for bit the observed scene
        assert ((scene == profile["nodata"]) == (observed == profile["nodata"])).all()  # same clouds and swath
        changed_share[effect] = differs[windows].mean()
    assert 0 < changed_share[0.5] < changed_share[1.0] < 0.6
    scene = _read(imagery.scenes[1.0])[0] * 1e-4
    differs = (scene != observed * 1e-4).any(axis=0) & windows
    built = np.abs(scene - np.asarray(SPECTRA[50])[:, None, None]).max(axis=0) < 0.05
    assert built[differs].mean() > 0.3  # a wealth gain builds up land


def test_land_cover_switches_by_the_gains_and_nests_across_effects():
    rng = np.random.default_rng(0)
    labels, u = np.full((200, 200), 30, np.uint8), rng.random((200, 200))
    where = np.zeros_like(labels, bool)
    where[50:150, 50:150] = True
    response = {50: 0.2, 40: 0.1, 60: -0.1, 30: -0.2}
    assert treatment_gains(response, 1.0) == pytest.approx({50: 0.2, 40: 0.1})
    assert treatment_gains(response, 20.0) == pytest.approx({50: 2 / 3, 40: 1 / 3})  # never more than the whole window
    small, large = (switch_land_cover(labels, where, u, treatment_gains(response, e)) for e in (0.5, 1.0))
    assert (large[where] == 50).mean() == pytest.approx(0.2, abs=0.02) and not (large[~where] != 30).any()
    assert ((small == 50) <= (large == 50)).all()  # a larger gain contains a smaller one
    poorer = switch_land_cover(labels, where, u, treatment_gains(response, -1.0))
    assert (poorer[where] == 60).mean() == pytest.approx(0.1, abs=0.02)


def test_the_post_treatment_catalog_replaces_only_the_last_date(study):
    observed = build_catalog(study.imagery_dir)
    imagery = PostTreatmentImagery.read(study.post_treatment)
    catalog = imagery.catalog(observed, 0.5)
    assert list(catalog["date"]) == list(observed["date"])
    assert list(catalog["paths"].iloc[:-1]) == list(observed["paths"].iloc[:-1])
    assert catalog["paths"].iloc[-1] == [str(imagery.scenes[0.5])]
    with pytest.raises(KeyError, match=r"\+2.00"):
        imagery.catalog(observed, 2.0)
    with pytest.raises(ValueError, match="2018-07-15"):
        imagery.catalog(observed.iloc[:-1], 0.5)


def test_imagery_trials_take_treated_outcomes_from_post_treatment_predictions():
    rng = np.random.default_rng(2)
    truth = rng.standard_normal(600)
    observed = 0.5 * truth + 0.3 * rng.standard_normal(600)
    post = {1.0: observed + 0.4, -1.0: observed - 0.4}  # the map responds with slope 0.4
    lcc = LinearCalibrationCorrection().fit(observed, truth)
    tweedie = TweedieCorrection().fit(observed, truth)
    design = TrialDesign(n_trials=20, units_per_trial=200, effects=(-1.0, 0.0, 1.0), calibration_boot=0)
    trials = imagery_trials(truth, observed, post, lcc, tweedie, design)
    assert set(trials["response"]) == {"imagery"} and trials["trial"].nunique() == 60
    summary = evaluate(trials).set_index(["method", "true_effect"])
    assert summary.loc[("naive", 1.0), "mean_estimate"] == pytest.approx(0.4, abs=0.03)
    assert summary.loc[("naive", -1.0), "mean_estimate"] == pytest.approx(-0.4, abs=0.03)
    assert summary.loc[("naive", 0.0), "mean_estimate"] == pytest.approx(0.0, abs=0.05)
    assert summary.loc[("oracle", 1.0), "mean_estimate"] == pytest.approx(1.0, abs=0.05)
    with pytest.raises(KeyError, match="0.5"):
        imagery_trials(truth, observed, post, lcc, tweedie, TrialDesign(effects=(0.5,)))


def test_writing_post_treatment_imagery_leaves_the_observed_study_as_it_was(study, tmp_path):
    plain = simulate_study(dataclasses.replace(CONFIG, post_treatment_effects=()), tmp_path)
    observed = [p.relative_to(study.root) for p in sorted(study.root.rglob("*")) if p.is_file() and "post_treatment" not in p.parts]
    assert len(observed) > 8 and json.loads(plain.post_treatment.read_text())["scenes"] == {}
    for rel in observed:
        if rel.name != "simulation.json":  # records the config, which differs
            assert (study.root / rel).read_bytes() == (plain.root / rel).read_bytes(), rel
