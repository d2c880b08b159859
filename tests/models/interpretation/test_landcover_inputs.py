"""Land cover on the real Landsat 7 scene with a user's labelled points, and labels that cannot work."""

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.affinity import translate

from models.ingest.catalog import build_catalog
from models.interpretation.classifier import CLASSIFIERS, classify_scenes
from models.interpretation.landcover import LabelError, labels_for_scenes, scene_features
from tests.conftest import NC_LANDSAT, ramp, write_raster

LABELS = NC_LANDSAT.parent / "nc_landsat7_2000_labels.parquet"  # made by tests/data/make_landsat_labels.py
CROSSWALK = {"water": 80, "forest": 10, "developed": 50, "herbaceous": 30}
HAND_LABELS = NC_LANDSAT.parent / "nc_landsat7_2000_hand_labels.parquet"  # drawn by eye: tests/data/make_hand_labels.py
HAND_CROSSWALK = {"water": 80, "forest": 10, "developed": 50, "grass": 30, "bare": 60}
BANDS = {"blue": "10", "green": "20", "red": "30", "nir": "40", "swir1": "50", "swir2": "70"}


@pytest.fixture(scope="module")
def catalog():
    return build_catalog(NC_LANDSAT, band_names=list(BANDS), band_files=BANDS)


def test_real_scene_classified_from_labelled_points_in_state_plane(catalog, tmp_path):
    labels = labels_for_scenes("vector", catalog, path=str(LABELS), class_column="lc", crosswalk=CROSSWALK)
    assert set(np.unique(labels[0])) == {0, 10, 30, 50, 80}
    result = classify_scenes(catalog, labels, tmp_path / "maps", per_class=1000, min_per_class=10, block_px=32, classifier="forest")
    assert result.accuracy > 0.7 and result.training_pixels <= 160 and result.cv.confusion.to_numpy().sum() == result.training_pixels
    with rasterio.open(result.paths[0]) as src, rasterio.open(catalog.loc[0, "paths"][0]) as scene:
        classes = src.read(1)
        assert src.crs.to_string() == "EPSG:32119" and src.transform == scene.transform and src.shape == scene.shape
        assert src.nodata == 0 and src.colormap(1)[80][:3] == (0, 100, 200)
    # every pixel with at least five of six bands gets a class (the int16 SWIR2 band's wider border
    # included), and the band record says which: all six bands, or all but SWIR2 (bit 32)
    bands = np.isnan(scene_features(catalog.iloc[0])[:6])
    enough = bands.sum(axis=0) <= 1
    assert (classes[~enough] == 0).all() and (classes[enough] != 0).all()
    with rasterio.open(result.band_paths[0]) as src:
        used = src.read(1)
        assert src.tags(1)["bits"].endswith("32=swir2")
    assert set(np.unique(used[enough])) == {0b111111, 0b011111} and (used[bands[5] & enough] == 0b011111).all()
    coverage = result.coverage.iloc[0]
    assert coverage["classified"] == 1.0 and 0.6 < coverage["classified_from_all_bands"] < 0.8


@pytest.fixture(scope="module")
def hand_labels(catalog):
    return labels_for_scenes("vector", catalog, path=str(HAND_LABELS), class_column="cover", crosswalk=HAND_CROSSWALK)


def test_hand_drawn_labels_get_an_honest_blocked_accuracy_and_the_best_classifier(catalog, hand_labels, tmp_path):
    """Polygons drawn by eye on the real scene: every classifier on the same spatial blocks, the
    default within 0.01 of the best, the accuracy pooled over all folds with per-class spread."""
    result = classify_scenes(catalog, hand_labels, tmp_path / "maps", min_per_class=20, block_px=32)
    compared = result.candidates.set_index("classifier")
    assert list(compared.index) == list(CLASSIFIERS) and compared["chosen"].sum() == 1
    assert compared.loc[result.classifier, "accuracy"] >= compared["accuracy"].max() - 0.01
    assert result.accuracy == compared.loc[result.classifier, "accuracy"] > 0.7
    assert result.cv.confusion.to_numpy().sum() == result.training_pixels  # every pixel held out once
    per_class = result.cv.per_class.set_index("class")
    assert set(per_class.index) == {
        "10 tree cover",
        "30 grassland",
        "50 built-up",
        "60 bare / sparse vegetation",
        "80 permanent water bodies",
    }
    assert (per_class["f1_fold_min"] <= per_class["f1_fold_mean"]).all() and (per_class["f1_fold_mean"] <= per_class["f1_fold_max"]).all()
    # grassland is two polygons: some folds hold none of it, and the report says which
    assert per_class.loc["30 grassland", "folds_without_pixels"] != "" and "30 grassland" in result.cv.never_held_out
    again = classify_scenes(catalog, hand_labels, tmp_path / "again", min_per_class=20, block_px=32, seed=1, classifier="logistic")
    assert again.cv.fold_accuracy != result.cv.fold_accuracy  # a new seed is a new split


def test_a_class_whose_labels_lack_a_band_is_still_mapped_or_left_out_by_name(catalog, tmp_path):
    """The lake is the only water polygon here and lies where SWIR2 has no data."""
    frame = gpd.read_parquet(HAND_LABELS)
    lake = frame.geometry.bounds["miny"] == frame[frame["cover"] == "water"].geometry.bounds["miny"].min()
    path = tmp_path / "labels.parquet"
    frame[(frame["cover"] != "water") | lake].to_parquet(path)
    labels = labels_for_scenes("vector", catalog, path=str(path), class_column="cover", crosswalk=HAND_CROSSWALK)
    mapped = classify_scenes(catalog, labels, tmp_path / "maps", min_per_class=20, block_px=32, classifier="forest")
    assert "80 permanent water bodies" in set(mapped.cv.per_class["class"]) and not mapped.left_out
    with rasterio.open(mapped.paths[0]) as src:
        assert (src.read(1) == 80).sum() > 100
    strict = classify_scenes(catalog, labels, tmp_path / "strict", min_per_class=20, block_px=32, classifier="forest", max_missing_bands=0)
    assert strict.left_out == {80: 0}
    assert "80 permanent water bodies" not in set(strict.cv.per_class["class"]) and len(strict.paths) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(frame=lambda f: f.set_geometry(f.geometry.apply(lambda g: translate(g, 1e6, 0)))),
            "label file .*labels.parquet \\(CRS unnamed, bounds \\(1\\.63.*\\)\\) and the scenes \\(CRS EPSG:32119, bounds \\(630534, 215488, 644470, 228114\\)\\) do not overlap",
        ),
        (dict(crosswalk={"water": 80, "forest": 10, "developed": 50}), "\\['herbaceous'\\] are not in the crosswalk"),
        (dict(crosswalk={**CROSSWALK, "water": 81}), "codes \\[81\\] are not WorldCover codes"),
        (dict(class_column="landcover"), "has no column 'landcover'"),
        (dict(min_per_class=100), "fewer than two classes have 100 labelled pixels on valid imagery: .*80 permanent water bodies \\(40\\)"),
    ],
)
def test_unusable_labels_fail_by_name(catalog, tmp_path, change, message):
    frame = gpd.read_parquet(LABELS)
    path = tmp_path / "labels.parquet"
    change.get("frame", lambda f: f)(frame).to_parquet(path)
    with pytest.raises(LabelError, match=message):
        labels = labels_for_scenes(
            "vector", catalog, path=str(path), class_column=change.get("class_column", "lc"), crosswalk=change.get("crosswalk", CROSSWALK)
        )
        classify_scenes(catalog, labels, tmp_path / "maps", min_per_class=change.get("min_per_class", 10))
    assert not (tmp_path / "maps").exists() or not list((tmp_path / "maps").iterdir())


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the raster is made without a CRS on purpose
def test_label_raster_without_crs_is_refused(catalog, tmp_path):
    path = tmp_path / "labels.tif"
    with rasterio.open(path, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8") as dst:
        dst.write(np.full((1, 10, 10), 80, dtype=np.uint8))
    with pytest.raises(LabelError, match="has no CRS"):
        labels_for_scenes("raster", catalog, path=str(path))


def test_label_raster_in_another_crs_is_reprojected_by_nearest_neighbour(tmp_path):
    from rasterio.transform import from_origin

    folder = tmp_path / "img"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", ramp(40, 50, bands=6) / 1e4, "EPSG:32636", from_origin(500_000, 60_000, 10, 10))
    scenes = build_catalog(folder, band_names=["blue", "green", "red", "nir", "swir1", "swir2"])
    codes = np.where(np.arange(50)[None, :] < 25, 40, 80).repeat(40, axis=0).astype(np.uint8)[None]
    # the same ground in UTM 37N (a neighbouring zone), written on its own grid
    with rasterio.open(folder / "scene_2020-01-01.tif") as src:
        from rasterio.warp import calculate_default_transform, reproject

        transform, w, h = calculate_default_transform(src.crs, "EPSG:32637", src.width, src.height, *src.bounds)
        out = np.zeros((1, h, w), dtype=np.uint8)
        reproject(
            codes,
            out,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs="EPSG:32637",
            resampling=rasterio.enums.Resampling.nearest,
        )
    write_raster(tmp_path / "labels.tif", out, "EPSG:32637", transform, nodata=0)
    labels = labels_for_scenes("raster", scenes, path=str(tmp_path / "labels.tif"))[0]
    inner = labels[5:-5, 5:-5]
    assert set(np.unique(inner)) <= {40, 80} and (labels[20, 5] == 40) and (labels[20, 45] == 80)
