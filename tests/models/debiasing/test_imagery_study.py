"""Many trials whose treatment reaches the map through post-treatment imagery the simulator writes."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from scipy import ndimage, stats

from models.debiasing.corrections import LinearCalibrationCorrection, TweedieCorrection
from models.debiasing.imagery_study import PostTreatmentImagery, imagery_trials
from models.debiasing.trial_effects import TrialDesign, evaluate
from models.ingest.catalog import build_catalog
from models.simulation.simulator import (
    BANDS,
    SPECTRA,
    PostTreatmentPlaces,
    SimulationConfig,
    gaussian_field,
    place_windows,
    simulate_study,
    switch_land_cover,
    treatment_gains,
)

CONFIG = SimulationConfig(
    n_units=20, n_survey=40, n_dates=3, region_px=160, chip_size=16, post_treatment_effects=(-0.5, 0.5, 1.0), trial_dates=2
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return simulate_study(CONFIG, tmp_path_factory.mktemp("study"))


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.tags(), src


def _settings(study) -> dict[str, PostTreatmentImagery]:
    return {imagery.setting: imagery for imagery in PostTreatmentImagery.read(study.post_treatment)}


def _places(study, profile, shape):
    survey = pd.read_csv(study.survey_table)
    x, y = Transformer.from_crs("EPSG:4326", profile["crs"], always_xy=True).transform(survey["lon"], survey["lat"])
    rows, cols = rasterio.transform.rowcol(profile["transform"], x, y)
    return np.asarray(rows), np.asarray(cols), place_windows(shape, np.asarray(rows), np.asarray(cols), CONFIG.chip_size)


def test_post_treatment_scenes_change_only_the_surveyed_places_surroundings_on_every_date_after_the_start(study):
    settings = _settings(study)
    assert list(settings) == ["scattered, last date", "scattered, last 2 dates", "patchy, last 2 dates", "ring, last 2 dates"]
    assert settings["scattered, last date"].dates == (pd.Timestamp("2018-07-15"),)
    assert settings["ring, last 2 dates"].dates == (pd.Timestamp("2017-07-15"), pd.Timestamp("2018-07-15"))
    for name, imagery in settings.items():
        assert sorted(imagery.scenes) == [-0.5, 0.5, 1.0], name
        for date in imagery.dates:
            observed, profile, tags, _ = _read(study.imagery_dir / f"scene_{date:%Y-%m-%d}.tif")
            _, _, windows = _places(study, profile, observed.shape[1:])
            assert 0.05 < windows.mean() < 0.95  # the check below has pixels on both sides
            changed_share = {}
            for effect, folder in imagery.scenes.items():
                with rasterio.open(folder / f"scene_{date:%Y-%m-%d}.vrt") as src:
                    scene, scene_profile, named = src.read(), src.profile, (src.descriptions, src.scales)
                assert scene_profile["crs"] == profile["crs"] and scene_profile["transform"] == profile["transform"]
                assert scene.dtype == observed.dtype and named == (BANDS, (1e-4,) * len(BANDS))
                assert _read(folder / "changes" / f"scene_{date:%Y-%m-%d}.tif")[2]["ACQUISITION_DATE"] == tags["ACQUISITION_DATE"]
                differs = (scene != observed).any(axis=0)
                assert not differs[~windows].any(), (name, date)  # outside every window: bit for bit the observed scene
                assert ((scene == profile["nodata"]) == (observed == profile["nodata"])).all()  # same clouds and swath
                changed_share[effect] = differs[windows].mean()
            assert 0 < changed_share[0.5] < changed_share[1.0] < 0.6, (name, date)
    observed = _read(study.imagery_dir / "scene_2018-07-15.tif")[0] * 1e-4
    scene = _read(settings["scattered, last date"].scenes[1.0] / "scene_2018-07-15.vrt")[0] * 1e-4
    differs = (scene != observed).any(axis=0)
    built = np.abs(scene - np.asarray(SPECTRA[50])[:, None, None]).max(axis=0) < 0.05
    assert built[differs].mean() > 0.3  # a wealth gain builds up land


def _changed(study, setting: str) -> tuple[np.ndarray, np.ndarray]:
    observed, profile, _, _ = _read(study.imagery_dir / "scene_2018-07-15.tif")
    scene = _read(_settings(study)[setting].scenes[1.0] / "scene_2018-07-15.vrt")[0]
    rows, cols, _ = _places(study, profile, observed.shape[1:])
    centres = np.ones(observed.shape[1:], bool)
    centres[rows, cols] = False
    return (scene != observed).any(axis=0), ndimage.distance_transform_edt(centres)


def test_the_change_patterns_lay_the_change_out_differently(study):
    def neighbours_changed(changed):  # share of changed pixels whose right-hand neighbour changed too
        return (changed[:, :-1] & changed[:, 1:]).sum() / changed[:, :-1].sum()

    scattered, _ = _changed(study, "scattered, last 2 dates")
    patchy, _ = _changed(study, "patchy, last 2 dates")
    ring, distance = _changed(study, "ring, last 2 dates")
    assert neighbours_changed(patchy) > neighbours_changed(scattered) + 0.2  # blobs, not salt and pepper
    core = CONFIG.chip_size / 6
    assert not ring[distance < core - 1].any()  # the core is left as it was
    assert np.median(distance[ring]) < np.median(distance[scattered])  # the ring hugs the places


def test_the_pattern_orders_are_their_region_wide_definitions_inside_the_windows():
    """The ring from a k-d tree over the places and the patchy field drawn after skipping the
    scattered uniforms (both to spare a large region's memory) are the distance transform's ring and
    the field drawn after the uniforms themselves."""
    rng, shape, size = np.random.default_rng(3), (300, 260), 16
    rows, cols = rng.integers(-5, 305, 60), rng.integers(-5, 265, 60)
    places = PostTreatmentPlaces(rows, cols, size, shape)
    windows = places.windows
    centres = np.ones(shape, bool)
    centres[np.clip(rows, 0, shape[0] - 1), np.clip(cols, 0, shape[1] - 1)] = False
    distance, core = ndimage.distance_transform_edt(centres), size / 6
    ring = np.where(distance < core, 1.0, np.clip(np.pi * (distance**2 - core**2) / size**2, 0.0, 1.0))
    np.testing.assert_array_equal(places.order("ring", 0)[windows], ring[windows])
    stream = np.random.default_rng([0, 1])
    stream.random(shape)
    np.testing.assert_array_equal(places.order("patchy", 0), stats.norm.cdf(gaussian_field(shape, 3, stream)))


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


def test_the_post_treatment_catalog_replaces_the_settings_dates_only(study):
    observed = build_catalog(study.imagery_dir)
    settings = _settings(study)
    last = settings["scattered, last date"].catalog(observed, 0.5)
    assert list(last["date"]) == list(observed["date"])
    assert list(last["paths"].iloc[:-1]) == list(observed["paths"].iloc[:-1])
    assert last["paths"].iloc[-1] == [str(settings["scattered, last date"].scenes[0.5] / "scene_2018-07-15.vrt")]
    ring = settings["ring, last 2 dates"].catalog(observed, 0.5)
    assert ring["paths"].iloc[0] == observed["paths"].iloc[0]
    assert all("ring_2" in p[0] for p in ring["paths"].iloc[1:])
    with pytest.raises(KeyError, match=r"\+2.00"):
        settings["scattered, last date"].catalog(observed, 2.0)
    with pytest.raises(ValueError, match="2018-07-15"):
        settings["ring, last 2 dates"].catalog(observed.iloc[:-1], 0.5)


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
    assert len(observed) > 8 and json.loads(plain.post_treatment.read_text())["settings"] == {}
    for rel in observed:
        if rel.name != "simulation.json":  # records the config, which differs
            assert (study.root / rel).read_bytes() == (plain.root / rel).read_bytes(), rel


def test_bad_change_settings_and_an_old_index_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown change pattern.*spiral"):
        SimulationConfig(change_patterns=("spiral",))
    with pytest.raises(ValueError, match="trial_dates must be at least 1"):
        SimulationConfig(trial_dates=0)
    old = tmp_path / "scenes.json"
    old.write_text(json.dumps({"date": "2018-07-15", "scenes": {"+1.00": "effect_+1.00/scene.tif"}}))
    with pytest.raises(ValueError, match="before change settings: simulate the demo study again"):
        PostTreatmentImagery.read(old)
