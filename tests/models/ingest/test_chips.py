"""Chip extraction against windows computed by hand, plus the real Landsat scene."""

import numpy as np
import pandas as pd
import pytest
import rasterio
import zarr
from pyproj import Transformer
from rasterio.transform import from_origin

from models.ingest.catalog import CatalogError, build_catalog, date_from_name
from models.ingest.chips import assemble_cubes, open_cube, plan_chunks, scenes_from_catalog, write_sequence_cube
from tests.conftest import GRID, NC_LANDSAT, UTM36, lonlat_of_pixel, ramp, write_raster


def units_at(pixels, crs=UTM36, transform=GRID) -> pd.DataFrame:
    coords = [lonlat_of_pixel(crs, transform, r, c) for r, c in pixels]
    return pd.DataFrame({"unit_id": [f"u{i}" for i in range(len(pixels))], "lon": [c[0] for c in coords], "lat": [c[1] for c in coords]})


def ramp_folder(tmp_path, data):
    """A folder holding one UTM 36N scene with ``data`` (nodata -9999)."""
    folder = tmp_path / "img"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", data, UTM36, GRID, nodata=-9999)
    return folder


def cube_for(units, folder, size=4):
    summary = write_sequence_cube(units, build_catalog(folder), folder.parent / "cube.zarr", size=size)
    return summary, open_cube(folder.parent / "cube.zarr")


def test_interior_chip_matches_hand_window(tmp_path):
    data = ramp()
    _, cube = cube_for(units_at([(10, 20)]), ramp_folder(tmp_path, data))
    chip = cube["reflectance"].sel(unit="u0").isel(time=0).values
    # size 4: the unit's pixel sits at index 2, so rows 8..11 and cols 18..21
    np.testing.assert_array_equal(chip, data[:, 8:12, 18:22])
    assert cube["valid"].values.all()


def test_edge_chip_is_padded_and_masked(tmp_path):
    data = ramp()
    _, cube = cube_for(units_at([(0, 1)]), ramp_folder(tmp_path, data))
    chip = cube["reflectance"].sel(unit="u0").isel(time=0).values
    assert np.isnan(chip[:, :2, :]).all() and np.isnan(chip[:, :, 0]).all()
    np.testing.assert_array_equal(chip[:, 2:, 1:], data[:, 0:2, 0:3])
    valid = cube["valid"].sel(unit="u0").isel(time=0).values
    assert valid.sum() == 2 * 3


def test_nodata_is_masked_per_band(tmp_path):
    data = ramp()
    data[1, 10, 20] = -9999
    _, cube = cube_for(units_at([(10, 20)]), ramp_folder(tmp_path, data))
    assert np.isnan(cube["reflectance"].sel(unit="u0", band="b2").isel(time=0).values[2, 2])
    assert not cube["valid"].sel(unit="u0").isel(time=0).values[2, 2]
    assert cube["valid"].sel(unit="u0").isel(time=0).values.sum() == 15


def test_raster_in_another_crs_reprojects_the_point(tmp_path):
    data = ramp()
    folder = ramp_folder(tmp_path, data)
    units = units_at([(10, 20)])
    # second date: the same pixels on a grid in UTM 35N, placed so the unit falls in pixel (15, 12)
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32635", always_xy=True).transform(units.lon[0], units.lat[0])
    other = from_origin(np.floor(x / 10) * 10 - 12 * 10, np.floor(y / 10) * 10 + 16 * 10, 10, 10)
    write_raster(folder / "scene_2021-01-01.tif", data + 5, "EPSG:32635", other)
    catalog = build_catalog(folder)
    assert list(catalog["crs"]) == [UTM36, "EPSG:32635"]
    with rasterio.open(folder / "scene_2021-01-01.tif") as src:
        assert src.index(x, y) == (15, 12)
    _, cube = cube_for(units, folder)
    np.testing.assert_array_equal(cube["reflectance"].sel(unit="u0").isel(time=1).values, data[:, 13:17, 10:14] + 5)


def test_all_nodata_units_are_dropped_and_listed(tmp_path):
    data = ramp()
    data[:, 25:, :] = -9999
    summary, cube = cube_for(units_at([(10, 20), (35, 30)]), ramp_folder(tmp_path, data))
    assert summary.dropped_all_nodata == ["u1"]
    assert list(cube["unit"].values) == ["u0"]


def test_catalog_rejects_inconsistent_and_corrupt_rasters(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", ramp(), UTM36, GRID)
    write_raster(folder / "scene_2021-01-01.tif", ramp(bands=3), UTM36, GRID)
    with pytest.raises(CatalogError, match="scene_2021-01-01.tif has 3 bands"):
        build_catalog(folder)
    write_raster(folder / "scene_2021-01-01.tif", ramp(), UTM36, from_origin(500_000, 60_000, 20, 20))
    with pytest.raises(CatalogError, match="pixel size"):
        build_catalog(folder)
    (folder / "scene_2021-01-01.tif").write_bytes(b"II*\x00 this is not a tiff")
    with pytest.raises(CatalogError, match="scene_2021-01-01.tif"):
        build_catalog(folder)
    (folder / "scene_2021-01-01.tif").unlink()
    write_raster(folder / "scene_2022-01-01.tif", ramp(), None, GRID)
    with pytest.raises(CatalogError, match="no CRS"):
        build_catalog(folder)


def test_dates_from_file_names():
    assert date_from_name("S2_20210315_T36.tif") == pd.Timestamp(2021, 3, 15)
    assert date_from_name("scene_2019-07-15.tif") == pd.Timestamp(2019, 7, 15)
    assert date_from_name("lsat7_2000_10.tif") == pd.Timestamp(2000, 7, 1)
    with pytest.raises(CatalogError, match="no date"):
        date_from_name("mosaic.tif")


def test_real_landsat_scene_with_mixed_dtypes_and_state_plane_crs(tmp_path):
    bands = {"blue": "10", "green": "20", "red": "30", "nir": "40", "swir1": "50", "swir2": "70"}  # ETM+ band numbers
    catalog = build_catalog(NC_LANDSAT, band_names=list(bands), band_files=bands)
    assert len(catalog) == 1 and catalog.loc[0, "crs"] == "EPSG:32119"
    assert catalog.loc[0, "dtypes"] == ["float32"] * 5 + ["int16"]
    assert catalog.loc[0, "nodata"] == [-99999.0] * 5 + [-32768.0]
    files = catalog.loc[0, "paths"]
    with rasterio.open(files[5]) as src:
        swir2 = src.read(1)
        transform, crs = src.transform, src.crs.to_string()
    with rasterio.open(files[0]) as src:
        blue_all = src.read(1)
    valid_rc = (220, 240)
    # a real quirk: the int16 band has nodata (-32768) where the float32 bands have data
    edge_rc = tuple(np.argwhere((swir2 == -32768) & (blue_all != -99999))[0])
    units = units_at([valid_rc, edge_rc], crs, transform)
    summary = write_sequence_cube(units, catalog, tmp_path / "nc.zarr", size=8)
    cube = open_cube(tmp_path / "nc.zarr")
    with rasterio.open(files[0]) as src:
        blue = src.read(1, window=((valid_rc[0] - 4, valid_rc[0] + 4), (valid_rc[1] - 4, valid_rc[1] + 4)))
    np.testing.assert_array_equal(cube["reflectance"].sel(unit="u0", band="blue").isel(time=0).values, blue)
    np.testing.assert_array_equal(cube["reflectance"].sel(unit="u0", band="swir2").isel(time=0).values, swir2[216:224, 236:244])
    with scenes_from_catalog(catalog)[0] as scene:
        edge = scene.read(edge_rc[0] - 4, edge_rc[1] - 4, 8, 8)
    assert np.isnan(edge[5, 4, 4]) and not np.isnan(edge[0, 4, 4])  # -32768 became NaN, not a reflectance
    # no pixel of u1's chip is valid in every band: the unit is dropped and listed, not kept with an all-False mask
    assert summary.dropped_all_nodata == ["u1"] and list(cube["unit"].values) == ["u0"]
    assert summary.date_table()["units_without_data"].tolist() == [1]


def scaled_int16_folder(tmp_path, scale=1e-4):
    """A scene like an L2 product: int16 digital numbers, scale 1e-4, nodata -32768."""
    data = (ramp() + 100).astype(np.int16)
    data[0, 10, 21] = -32768
    folder = tmp_path / "img"
    folder.mkdir()
    write_raster(folder / "scene_2020-01-01.tif", data, UTM36, GRID, nodata=-32768)
    with rasterio.open(folder / "scene_2020-01-01.tif", "r+") as dst:
        dst.scales = (scale, scale)
    return folder, data


def test_integer_scenes_are_stored_as_scaled_integers_and_decode_to_reflectance(tmp_path):
    folder, data = scaled_int16_folder(tmp_path)
    _, cube = cube_for(units_at([(10, 20)]), folder)
    stored = zarr.open_group(folder.parent / "cube.zarr", mode="r")["reflectance"]
    assert stored.dtype == np.int16 and stored.attrs["scale_factor"] == pytest.approx(1e-4)
    chip = cube["reflectance"].sel(unit="u0").isel(time=0).values
    expected = data[:, 8:12, 18:22] * np.float32(1e-4)
    assert np.isnan(chip[0, 2, 3]) and not np.isnan(chip[1, 2, 3])  # the source's nodata stays missing
    np.testing.assert_allclose(np.nan_to_num(chip), np.where(data[:, 8:12, 18:22] == -32768, 0, expected), rtol=1e-6)


def test_float_scenes_keep_float32(tmp_path):
    _, cube = cube_for(units_at([(10, 20)]), ramp_folder(tmp_path, ramp()))
    assert zarr.open_group(tmp_path / "cube.zarr", mode="r")["reflectance"].dtype == np.float32


@pytest.mark.parametrize("scaled", [True, False])
def test_cube_written_in_several_batches_matches_every_window(tmp_path, scaled):
    """Batches after the first are appended raw: each unit's chip, validity and coordinates match."""
    if scaled:
        folder, data = scaled_int16_folder(tmp_path)
        expected = np.where(data == -32768, np.nan, data * np.float32(1e-4))
    else:
        data = ramp()
        folder, expected = ramp_folder(tmp_path, data), data
    rng = np.random.default_rng(0)
    pixels = [(int(r), int(c)) for r, c in zip(rng.integers(2, 38, 150), rng.integers(2, 48, 150), strict=True)]
    units = units_at(pixels)
    write_sequence_cube(units, build_catalog(folder), tmp_path / "cube.zarr", size=4, flush_units=64)
    cube = open_cube(tmp_path / "cube.zarr")
    assert sorted(cube["unit"].values) == sorted(units["unit_id"])
    for uid, (r, c) in zip(units["unit_id"], pixels, strict=True):
        window = expected[:, r - 2 : r + 2, c - 2 : c + 2]
        np.testing.assert_allclose(cube["reflectance"].sel(unit=uid).isel(time=0).values, window, rtol=1e-6)
        np.testing.assert_array_equal(cube["valid"].sel(unit=uid).isel(time=0).values, ~np.isnan(window).any(axis=0))
        assert cube["lon"].sel(unit=uid).item() == pytest.approx(units.set_index("unit_id").loc[uid, "lon"])


def test_chunked_extraction_assembles_the_same_cube(tmp_path):
    """Chunks of the region extracted separately and concatenated give every unit the chip, mask and
    coordinates of the one-pass cube, and the summaries add up; a chunk without data writes nothing."""
    folder, _ = scaled_int16_folder(tmp_path)
    rng = np.random.default_rng(1)
    pixels = [(int(r), int(c)) for r, c in zip(rng.integers(2, 38, 120), rng.integers(2, 48, 120), strict=True)]
    units = units_at(pixels)
    catalog = build_catalog(folder)
    whole = write_sequence_cube(units, catalog, tmp_path / "whole.zarr", size=4)
    chunks = plan_chunks(units, catalog, chunk_px=16)
    assert len(chunks) == 9 and sum(len(c) for c in chunks.values()) == len(units)
    parts = [(tmp_path / f"{key}.zarr", write_sequence_cube(c, catalog, tmp_path / f"{key}.zarr", size=4)) for key, c in chunks.items()]
    summary = assemble_cubes(parts, tmp_path / "assembled.zarr")
    assert summary.n_units == whole.n_units and summary.nodata_by_date == whole.nodata_by_date
    assert summary.valid_fraction == pytest.approx(whole.valid_fraction)
    a, b = open_cube(tmp_path / "whole.zarr"), open_cube(tmp_path / "assembled.zarr")
    assert sorted(a["unit"].values) == sorted(b["unit"].values)
    b = b.sel(unit=a["unit"].values)
    np.testing.assert_array_equal(a["reflectance"].values, b["reflectance"].values)
    np.testing.assert_array_equal(a["valid"].values, b["valid"].values)
    np.testing.assert_array_equal(a["lon"].values, b["lon"].values)
    assert zarr.open_group(tmp_path / "assembled.zarr")["reflectance"].dtype == np.int16
    outside = units_at([(2, 2)]).assign(lon=0.0, lat=0.0)  # far from the scene: no data
    empty = write_sequence_cube(outside, catalog, tmp_path / "empty.zarr", size=4, require_data=False)
    assert empty.n_units == 0 and empty.dropped_all_nodata == ["u0"] and not (tmp_path / "empty.zarr").exists()
    with pytest.raises(CatalogError, match="no unit has a valid pixel"):
        assemble_cubes([(tmp_path / "empty.zarr", empty)], tmp_path / "none.zarr")


def untagged_landsat(tmp_path, bands: tuple[str, ...] = ("10", "20", "30", "40", "50", "70")):
    """The real NC scene's ``bands`` (ETM+ numbers) with their nodata tags removed, as some exports arrive."""
    import shutil

    folder = tmp_path / "untagged"
    folder.mkdir(parents=True)
    for band in bands:
        path = shutil.copy(NC_LANDSAT / f"lsat7_2000_{band}.tif", folder)
        with rasterio.open(path, "r+") as dst:
            dst.nodata = None
    return folder


def test_untagged_fill_values_are_refused_naming_the_setting(tmp_path):
    """-99999 (float bands) and -32768 (the int16 band) without a tag would pass as reflectance."""
    bands = {"blue": "10", "green": "20", "red": "30", "nir": "40", "swir1": "50", "swir2": "70"}
    folder = untagged_landsat(tmp_path)
    with pytest.raises(
        CatalogError, match=r"lsat7_2000_10.tif band 1 has no nodata tag but \d+ sampled pixels hold -99999.*StudySource.nodata = -99999"
    ):
        build_catalog(folder, band_names=list(bands), band_files=bands)
    swir2 = untagged_landsat(tmp_path / "swir2", ("70",))  # the int16 band's -32768 is caught too
    with pytest.raises(CatalogError, match=r"lsat7_2000_70.tif band 1 has no nodata tag.*hold -32768.*gdal_edit.py -a_nodata -32768"):
        build_catalog(swir2, band_names=["swir2"], band_files={"swir2": "70"})


def test_declared_nodata_masks_untagged_fill_values(tmp_path):
    bands = {"swir2": "70"}
    folder = untagged_landsat(tmp_path, ("70",))
    catalog = build_catalog(folder, band_names=list(bands), band_files=bands, nodata=-32768)
    assert catalog.loc[0, "nodata"] == [-32768.0]
    with rasterio.open(catalog.loc[0, "paths"][0]) as src:
        swir2 = src.read(1)
    fill_rc = tuple(np.argwhere(swir2 == -32768)[0])
    with scenes_from_catalog(catalog)[0] as scene:
        chip = scene.read(fill_rc[0] - 4, fill_rc[1] - 4, 8, 8)
    assert (
        np.isnan(chip[0, 4, 4])
        and np.isnan(chip[0][swir2[fill_rc[0] - 4 : fill_rc[0] + 4, fill_rc[1] - 4 : fill_rc[1] + 4] == -32768]).all()
    )


def _edge_framed(tmp_path, fill: float, dtype: str, scale: float = 1.0):
    """The real scene's blue band framed by a constant the way an export pads a scene, without a tag."""
    with rasterio.open(NC_LANDSAT / "lsat7_2000_10.tif") as src:
        blue, profile = src.read(1, masked=True).filled(fill).astype(dtype), src.profile
    folder = tmp_path / "framed"
    folder.mkdir()
    profile.update(dtype=dtype, nodata=None)
    with rasterio.open(folder / "lsat7_2000_10.tif", "w", **profile) as dst:
        dst.write(blue, 1)
        dst.scales = (scale,)
    return folder


@pytest.mark.parametrize(
    "fill, dtype, scale, why",
    [
        (0, "uint8", 1.0, r"hold 0, covering 100% of the scene's edge and \d+% of its inside"),  # the classic 8-bit DN frame
        (-30000, "int16", 1e-4, r"hold -30000, below any plausible reflectance \(-3 after scale and offset\)"),
    ],
)
def test_edge_frames_and_implausible_values_without_a_tag_are_refused(tmp_path, fill, dtype, scale, why):
    folder = _edge_framed(tmp_path, fill, dtype, scale)
    with pytest.raises(CatalogError, match=why + r": if it is fill, declare it with StudySource.nodata"):
        build_catalog(folder, band_names=["blue"], band_files={"blue": "10"})
    catalog = build_catalog(folder, band_names=["blue"], band_files={"blue": "10"}, nodata=fill)
    assert catalog.loc[0, "nodata"] == [float(fill)]


def test_tiles_of_one_date_with_mixed_band_dtypes_mosaic_per_band(tmp_path):
    """The real scene cut into two tiles per band (five float32 bands, one int16): one VRT per band."""
    bands = {"blue": "10", "green": "20", "red": "30", "nir": "40", "swir1": "50", "swir2": "70"}
    folder = tmp_path / "tiles"
    folder.mkdir()
    for number in bands.values():
        with rasterio.open(NC_LANDSAT / f"lsat7_2000_{number}.tif") as src:
            for name, window in (("west", rasterio.windows.Window(0, 0, 250, 443)), ("east", rasterio.windows.Window(250, 0, 239, 443))):
                profile = src.profile | {"width": window.width, "height": window.height, "transform": src.window_transform(window)}
                with rasterio.open(folder / f"lsat7_2000_{name}_{number}.tif", "w", **profile) as dst:
                    dst.write(src.read(1, window=window), 1)
    tiled = build_catalog(folder, band_names=list(bands), band_files=bands, mosaic_dir=tmp_path / "mosaics")
    whole = build_catalog(NC_LANDSAT, band_names=list(bands), band_files=bands)
    assert tiled.loc[0, "dtypes"] == ["float32"] * 5 + ["int16"] and len(tiled.loc[0, "paths"]) == 6
    with rasterio.open(whole.loc[0, "paths"][0]) as src:
        units = units_at([(220, 248), (100, 300)], src.crs.to_string(), src.transform)  # the first on the seam
    write_sequence_cube(units, tiled, tmp_path / "tiled.zarr", size=8)
    write_sequence_cube(units, whole, tmp_path / "whole.zarr", size=8)
    np.testing.assert_array_equal(
        open_cube(tmp_path / "tiled.zarr")["reflectance"].values, open_cube(tmp_path / "whole.zarr")["reflectance"].values
    )
