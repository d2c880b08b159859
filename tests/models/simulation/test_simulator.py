import numpy as np
import pandas as pd
import rasterio

from models.interpretation.landcover import WORLDCOVER
from models.simulation.simulator import BANDS, SimulationConfig, simulate_study
from tests.conftest import SMALL


def test_files_shapes_and_crs(small_study):
    rct = pd.read_csv(small_study.trial_table("west"))
    assert len(rct) == SMALL.n_units
    assert {"unit_id", "lon", "lat", "treatment", "outcome", "stratum"} <= set(rct.columns)
    assert set(rct["treatment"]) == {0, 1}
    assert "tau" not in rct.columns  # the truth lives in a separate file
    scenes = sorted(small_study.imagery_dir.glob("*.tif"))
    assert len(scenes) == SMALL.n_dates
    with rasterio.open(scenes[0]) as src:
        assert src.count == len(BANDS) and src.crs.to_string() == SMALL.crs
        assert src.res == (SMALL.pixel_size, SMALL.pixel_size)
        assert src.block_shapes[0] == (256, 256) and src.compression is not None
        assert src.descriptions == BANDS and src.nodata == -9999
        assert (src.read(1) == src.nodata).any()  # nodata edges and clouds are present
    with rasterio.open(sorted(small_study.landcover_dir.glob("*.tif"))[0]) as src:
        assert set(np.unique(src.read(1))) <= set(WORLDCOVER)
        assert src.colormap(1)[40][:3] == (240, 150, 255)
    assert len(pd.read_csv(small_study.survey_table)) == SMALL.n_survey


def test_seed_reproduces_and_changes(tmp_path):
    cfg = SimulationConfig(n_units=30, n_survey=30, n_dates=2, region_px=128, chip_size=8, seed=5)
    a, b = simulate_study(cfg, tmp_path / "a"), simulate_study(cfg, tmp_path / "b")
    c = simulate_study(SimulationConfig(**{**cfg.__dict__, "seed": 6}), tmp_path / "c")
    pd.testing.assert_frame_equal(pd.read_csv(a.trial_table("west")), pd.read_csv(b.trial_table("west")))
    with rasterio.open(a.imagery_dir / "scene_2016-07-15.tif") as ra, rasterio.open(b.imagery_dir / "scene_2016-07-15.tif") as rb:
        np.testing.assert_array_equal(ra.read(), rb.read())
    assert not pd.read_csv(a.trial_table("west"))["lon"].equals(pd.read_csv(c.trial_table("west"))["lon"])


def test_each_trial_is_a_strip_of_the_region_with_its_own_randomization(small_study):
    """The demo's trials: one table per trial, side by side west to east, ids unique across trials,
    every trial with both arms; the truth says which trial each unit is in."""
    west, east = (pd.read_csv(small_study.trial_table(t)) for t in SMALL.trials)
    assert sorted(p.stem for p in small_study.trials_dir.iterdir()) == sorted(SMALL.trials)
    assert len(west) == len(east) == SMALL.n_units and west["lon"].max() < east["lon"].min() + 1e-3  # to a pixel
    assert not set(west["unit_id"]) & set(east["unit_id"])
    assert all(set(t["treatment"]) == {0, 1} for t in (west, east))
    truth = pd.read_parquet(small_study.unit_truth).set_index("unit_id")
    assert (truth.loc[west["unit_id"], "trial"] == "west").all() and (truth.loc[east["unit_id"], "trial"] == "east").all()


def test_land_cover_changes_over_time(small_study):
    first, last = (rasterio.open(p).read(1) for p in (sorted(small_study.landcover_dir.glob("*.tif"))[i] for i in (0, -1)))
    assert (last == 50).mean() > (first == 50).mean()  # urban expansion
    assert (last == 10).mean() < (first == 10).mean()  # forest loss


def test_planted_effect_is_present_and_heterogeneous(tmp_path):
    cfg = SimulationConfig(n_units=3000, n_survey=10, n_dates=3, region_px=256, chip_size=16, seed=2, trials=("trial",))
    paths = simulate_study(cfg, tmp_path)
    df = pd.read_csv(paths.trial_table("trial")).merge(pd.read_parquet(paths.unit_truth), on="unit_id")
    dim = df.loc[df.treatment == 1, "outcome"].mean() - df.loc[df.treatment == 0, "outcome"].mean()
    assert abs(dim - df["tau"].mean()) < 0.2
    assert 0.7 < df["tau"].std() < 1.3  # effect_strength sets the heterogeneity scale
    high = df["tau"] > df["tau"].median()
    gaps = [df[m & (df.treatment == 1)]["outcome"].mean() - df[m & (df.treatment == 0)]["outcome"].mean() for m in (high, ~high)]
    assert gaps[0] - gaps[1] > 1.0
    assert np.corrcoef(df["tau"], df["urban_growth"] - df["forest_loss"])[0, 1] > 0.3  # change drives the CATE


def test_no_heterogeneity_gives_constant_effect(tmp_path):
    cfg = SimulationConfig(n_units=50, n_survey=10, n_dates=2, region_px=128, chip_size=8, heterogeneity="none", ate=0.7)
    truth = pd.read_parquet(simulate_study(cfg, tmp_path).unit_truth)
    np.testing.assert_allclose(truth["tau"], 0.7)


def test_stratified_assignment_balances_strata(tmp_path):
    cfg = SimulationConfig(n_units=200, n_survey=10, n_dates=2, region_px=128, chip_size=8, stratified=True, trials=("trial",))
    rct = pd.read_csv(simulate_study(cfg, tmp_path).trial_table("trial"))
    for _, group in rct.groupby("stratum"):
        assert abs(group["treatment"].sum() - 0.5 * len(group)) <= 0.5


def test_a_region_written_in_strips_keeps_its_land_cover_masks_tables_and_replayed_scenes(tmp_path, monkeypatch):
    """Strips change only which pixel gets which noise draw: the same normals in another order."""
    from models.simulation import simulator

    cfg = SimulationConfig(n_units=30, n_survey=30, n_dates=2, region_px=160, chip_size=16, post_treatment_effects=(1.0,), trial_dates=1)
    whole = simulate_study(cfg, tmp_path / "whole")
    monkeypatch.setattr(simulator, "STRIP_PX", 64)  # three strips, the last one short
    strips = simulate_study(cfg, tmp_path / "strips")
    land_cover = "landcover_2017-07-15.tif"
    with rasterio.open(whole.landcover_dir / land_cover) as a, rasterio.open(strips.landcover_dir / land_cover) as b:
        np.testing.assert_array_equal(a.read(), b.read())
    pd.testing.assert_frame_equal(pd.read_parquet(whole.unit_truth), pd.read_parquet(strips.unit_truth))
    pd.testing.assert_frame_equal(pd.read_csv(whole.survey_table), pd.read_csv(strips.survey_table))
    scene = "scene_2017-07-15.tif"
    with rasterio.open(whole.imagery_dir / scene) as a, rasterio.open(strips.imagery_dir / scene) as b:
        ra, rb, nodata = a.read(), b.read(), a.nodata
    np.testing.assert_array_equal(ra == nodata, rb == nodata)
    diff = np.abs(ra.astype(int) - rb.astype(int))[ra != nodata]
    assert 30 < diff.mean() < 300  # other draws of the 0.008 noise (x 1e4), the same spectra under them
    moved = tmp_path / "moved"
    strips.root.rename(moved)  # the post-treatment scenes name their sources relative to themselves
    with rasterio.open(moved / "truth" / "post_treatment" / "scattered_1" / "effect_+1.00" / scene.replace(".tif", ".vrt")) as post:
        changed = (post.read() != rb).any(axis=0)
    assert 0 < changed.mean() < 0.5  # the replayed strips match the observed scene outside the changed places


def test_fields_and_class_shares_filtered_in_blocks_on_threads_are_scipys_whole_filters(monkeypatch):
    from scipy import ndimage

    from models.simulation import simulator

    monkeypatch.setattr(simulator.os, "cpu_count", lambda: 3)  # uneven blocks of whole lines
    field = np.random.default_rng(0).standard_normal((70, 50))
    expected = ndimage.gaussian_filter(field, sigma=6, mode="wrap")
    np.testing.assert_array_equal(simulator._gaussian_filter(field.copy(), 6), expected)
    labels = (field > 0).astype(np.uint8)
    shares = simulator.NeighbourhoodFractions(labels, (0, 1), 5)[1]
    np.testing.assert_array_equal(shares, ndimage.uniform_filter(labels.astype(np.float32), size=5, mode="nearest"))


def test_a_scene_computed_at_some_pixels_is_the_whole_scene_there_bit_for_bit(monkeypatch):
    """The post-treatment overlays are computed in the places' windows only, from the date's noise
    drawn once: the same numbers as replaying the whole scene."""
    from models.simulation import simulator

    monkeypatch.setattr(simulator, "STRIP_PX", 16)  # three strips, the last one short
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array(list(simulator.SPECTRA)), size=(40, 24)).astype(np.uint8)
    texture = rng.standard_normal((40, 24)).astype(np.float32)
    where = rng.random((40, 24)) < 0.2
    state = rng.bit_generator.state
    scene = np.concatenate([refl for _, refl in simulator.reflectance_strips(labels, texture, rng)], axis=1)
    gain, noise = simulator.noise_at(where, state)
    at = simulator.scene_dn(simulator._reflectance(labels[where], texture[where], gain, noise))
    np.testing.assert_array_equal(at, simulator.scene_dn(scene)[:, where])
    strips = dict(simulator._scattered_strips(where, at, simulator.REFLECTANCE_NODATA))
    assert sorted(strips) == [0, 16, 32]
    laid = np.concatenate([strips[row0] for row0 in sorted(strips)], axis=1)
    np.testing.assert_array_equal(laid[:, where], at)
    assert (laid[:, ~where] == simulator.REFLECTANCE_NODATA).all()
