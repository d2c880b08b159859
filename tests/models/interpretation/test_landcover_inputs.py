"""Land cover on the real Landsat 7 scene with a user's labelled points, and labels that cannot work."""

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from shapely.affinity import translate

from models.ingest.catalog import build_catalog
from models.interpretation.landcover import LabelError, classify_scenes, labels_for_scenes, scene_features
from tests.conftest import NC_LANDSAT, ramp, write_raster

LABELS = NC_LANDSAT.parent / "nc_landsat7_2000_labels.parquet"  # made by tests/data/make_landsat_labels.py
CROSSWALK = {"water": 80, "forest": 10, "developed": 50, "herbaceous": 30}
BANDS = {"blue": "10", "green": "20", "red": "30", "nir": "40", "swir1": "50", "swir2": "70"}


@pytest.fixture(scope="module")
def catalog():
    return build_catalog(NC_LANDSAT, band_names=list(BANDS), band_files=BANDS)


def test_real_scene_classified_from_labelled_points_in_state_plane(catalog, tmp_path):
    labels = labels_for_scenes("vector", catalog, path=str(LABELS), class_column="lc", crosswalk=CROSSWALK)
    assert set(np.unique(labels[0])) == {0, 10, 30, 50, 80}
    result = classify_scenes(catalog, labels, tmp_path / "maps", per_class=1000, min_per_class=10, block_px=32)
    assert result.accuracy > 0.7 and result.training_pixels + result.test_pixels <= 160
    with rasterio.open(result.paths[0]) as src, rasterio.open(catalog.loc[0, "paths"][0]) as scene:
        classes = src.read(1)
        assert src.crs.to_string() == "EPSG:32119" and src.transform == scene.transform and src.shape == scene.shape
        assert src.nodata == 0 and src.colormap(1)[80][:3] == (0, 100, 200)
    # nodata wherever any band is nodata (the int16 band's border included), a class everywhere else
    missing = np.isnan(scene_features(catalog.iloc[0])).any(axis=0)
    assert set(np.unique(classes)) <= {0, 10, 30, 50, 80} and (classes[missing] == 0).all() and (classes[~missing] != 0).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(frame=lambda f: f.set_geometry(f.geometry.apply(lambda g: translate(g, 1e6, 0)))), "do not overlap"),
        (dict(crosswalk={"water": 80, "forest": 10, "developed": 50}), "\\['herbaceous'\\] are not in the crosswalk"),
        (dict(crosswalk={**CROSSWALK, "water": 81}), "codes \\[81\\] are not WorldCover codes"),
        (dict(class_column="landcover"), "has no column 'landcover'"),
        (dict(min_per_class=100), "fewer than 100 labelled pixels on valid imagery: .*80 permanent water bodies \\(\\d+\\)"),
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
