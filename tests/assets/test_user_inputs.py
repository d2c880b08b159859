"""A new user's inputs: each case once passed silently or failed with an unclear error (issue 15)."""

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin

from models.ingest.catalog import CatalogError, build_catalog
from models.ingest.chips import check_nodata, open_cube, write_sequence_cube
from models.ingest.units import RCTSpec, RCTValidationError, check_outcomes, covariate_choice, tabular_matrix, validate_rct
from models.io.tables import TableError, read_table
from tests.conftest import GRID, UTM36, lonlat_of_pixel, ramp, toy_trial, write_raster


def test_auto_detected_covariates_leave_out_ids_codes_and_post_treatment_columns():
    table = toy_trial(60).assign(
        consumption_endline=np.arange(60.0),
        village_code=np.repeat(np.arange(6), 10),
        hh_id=np.arange(1000, 1060),
        serial=np.arange(60),
        hh_size=np.tile([3, 4, 5], 20),
        wealth=np.where(np.arange(60) % 3 == 0, np.arange(60.0), np.nan),  # measured for some units: PPI++'s labels
    )
    taken, excluded = covariate_choice(table, RCTSpec())
    assert taken == ["age", "hh_size"]
    assert excluded == {
        "outcome": "a configured outcome",
        "consumption_endline": "its name looks like a post-treatment measurement",
        "village_code": "its name looks like an id or a code",
        "hh_id": "its name looks like an id or a code",
        "serial": "integers, all distinct: looks like an identifier",
        "wealth": "measured wealth: PPI++'s labels for the mapped outcome, not a covariate",
    }
    assert list(tabular_matrix(table).columns) == ["unit_id", "age", "hh_size"]
    assert covariate_choice(table, RCTSpec(covariates=("serial",))) == (["serial"], {})  # a list is taken as it is


def test_balance_check_names_a_post_treatment_covariate():
    from assets.causal import covariates_balanced

    table = toy_trial(200)
    features = pd.DataFrame(
        {
            "unit_id": table["unit_id"],
            "age": table["age"],
            "assets_2024": 2.0 * table["treatment"] + np.random.default_rng(0).normal(0, 0.5, 200),
        }
    )
    units = gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs="EPSG:4326")
    result = covariates_balanced(tabular_features=features, rct_units=units)
    assert not result.passed and result.metadata["imbalanced"].value == "assets_2024"


def test_ids_keep_their_leading_zeros(tmp_path):
    path = tmp_path / "trial.csv"
    toy_trial(40).assign(unit_id=[f"{i:05d}" for i in range(40)]).to_csv(path, index=False)
    table = validate_rct(read_table(path))
    assert table["unit_id"].iloc[:2].tolist() == ["00000", "00001"]


def test_semicolon_csv_with_decimal_commas(tmp_path):
    path = tmp_path / "trial.csv"
    toy_trial(40).to_csv(path, index=False, sep=";", decimal=",")
    table = validate_rct(read_table(path))
    np.testing.assert_allclose(table["lon"], toy_trial(40)["lon"])
    assert table["outcome"].dtype == float


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("trial.csv", b"", "is empty \\(0 bytes\\)"),
        ("trial.xlsx", b"PK\x03\x04" + b"\x00" * 64, "Excel workbook: save the sheet as CSV"),
        ("trial.csv", b"PK\x03\x04" + b"\x00" * 64, "Excel workbook"),
        ("trial.csv", b"unit_id:lon:lat\nu1:33:0.4\n", "single column"),
        ("trial.csv", b"unit_id,lon\n\xff\xfe\x00bad\n", "not UTF-8"),
    ],
)
def test_unreadable_tables_say_what_was_found(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TableError, match=message):
        read_table(path)
    with pytest.raises(TableError, match="StudySource.trials"):
        read_table(tmp_path / "missing.csv")


def test_outcomes_are_checked_at_ingest():
    spec = RCTSpec()
    table = validate_rct(toy_trial(40).assign(outcome=[np.nan] * 2 + list(np.arange(38.0))))
    kept, dropped = check_outcomes(table, spec, max_missing_share=0.1)
    assert len(kept) == 38 and dropped["unit_id"].tolist() == ["u0", "u1"]
    with pytest.raises(RCTValidationError, match="max_missing_outcome_share"):
        check_outcomes(table, spec, max_missing_share=0.01)
    with pytest.raises(RCTValidationError, match="non-numeric value\\(s\\): u3='n/a'"):
        check_outcomes(validate_rct(toy_trial(40).assign(outcome=["1.0"] * 3 + ["n/a"] + ["2.0"] * 36)), spec, 0.1)


def _band_files(folder, names, values, date="2020-01-01"):
    folder.mkdir(exist_ok=True)
    for name, value in zip(names, values, strict=True):
        write_raster(folder / f"scene_{date}_{name}.tif", np.full((1, 40, 50), value, dtype=np.float32), UTM36, GRID)
    return folder


def test_band_order_comes_from_band_names_not_file_name_sorting(tmp_path):
    bands = ["blue", "green", "red", "nir"]
    folder = _band_files(tmp_path / "img", bands, [1.0, 2.0, 3.0, 4.0])  # sorted names would put nir before red
    catalog = build_catalog(folder, band_names=bands)
    assert [p.rsplit("_", 1)[1] for p in catalog.loc[0, "paths"]] == ["blue.tif", "green.tif", "red.tif", "nir.tif"]
    lon, lat = lonlat_of_pixel(UTM36, GRID, 20, 25)
    write_sequence_cube(pd.DataFrame({"unit_id": ["u"], "lon": [lon], "lat": [lat]}), catalog, tmp_path / "c.zarr", size=4)
    assert open_cube(tmp_path / "c.zarr")["reflectance"].sel(unit="u", band="red").values.mean() == 3.0
    with pytest.raises(CatalogError, match="StudySource.band_files"):
        build_catalog(folder)
    with pytest.raises(CatalogError, match="no file for band\\(s\\) \\['swir1'\\]"):
        build_catalog(folder, band_names=[*bands, "swir1"])
    mapped = build_catalog(
        _band_files(tmp_path / "numbered", ["B2", "B3", "B4", "B8"], [1.0, 2.0, 3.0, 4.0]),
        band_files={"blue": "B2", "green": "B3", "red": "B4", "nir": "B8"},
    )
    assert mapped.loc[0, "band_names"] == bands


def test_a_truncated_geotiff_is_named_at_the_catalog(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    path = write_raster(folder / "scene_2020-01-01.tif", np.random.default_rng(0).random((3, 400, 300)).astype(np.float32), UTM36, GRID)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])  # an interrupted download
    with pytest.raises(CatalogError, match="scene_2020-01-01.tif.*Download or export it again"):
        build_catalog(folder)


def test_an_empty_date_and_units_in_the_nodata_border_are_not_silent(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    data = ramp(bands=2)
    write_raster(folder / "scene_2020-01-01.tif", data, UTM36, GRID, nodata=-9999)
    write_raster(folder / "scene_2021-01-01.tif", np.full_like(data, -9999), UTM36, GRID, nodata=-9999)  # entirely nodata
    units = pd.DataFrame([(f"u{i}", *lonlat_of_pixel(UTM36, GRID, 20, 5 + 4 * i)) for i in range(10)], columns=["unit_id", "lon", "lat"])
    summary = write_sequence_cube(units, build_catalog(folder), tmp_path / "c.zarr", size=2)
    assert summary.date_table()["share"].tolist() == [0.0, 1.0]
    with pytest.raises(CatalogError, match="on 2021-01-01 \\(100%\\) more than ChipsConfig.max_date_nodata_share"):
        check_nodata(summary, 0.05, 0.5)
    # one band's nodata border over the left of the scene: 3 of 10 units have no pixel valid in every band
    border = ramp(bands=2)
    border[1, :, :14] = -9999
    write_raster(folder / "scene_2021-01-01.tif", border, UTM36, GRID, nodata=-9999)
    (folder / "scene_2020-01-01.tif").unlink()
    summary = write_sequence_cube(units, build_catalog(folder), tmp_path / "c2.zarr", size=2)
    assert summary.dropped_all_nodata == ["u0", "u1", "u2"]
    with pytest.raises(CatalogError, match="ChipsConfig.max_all_nodata_share"):
        check_nodata(summary, 0.05, 0.5)


def test_tiles_of_one_date_are_mosaicked(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    full = ramp(40, 60, bands=2)
    write_raster(folder / "scene_2020-01-01_west.tif", full[:, :, :30].copy(), UTM36, GRID, nodata=-9999)
    write_raster(
        folder / "scene_2020-01-01_east.tif", full[:, :, 30:].copy(), UTM36, from_origin(500_000 + 300, 60_000, 10, 10), nodata=-9999
    )
    catalog = build_catalog(folder, mosaic_dir=tmp_path / "mosaics")
    assert len(catalog) == 1 and catalog.loc[0, "paths"][0].endswith("mosaic_2020-01-01.vrt") and catalog.loc[0, "width"] == 60
    lon, lat = lonlat_of_pixel(UTM36, GRID, 20, 30)  # on the seam
    write_sequence_cube(pd.DataFrame({"unit_id": ["u"], "lon": [lon], "lat": [lat]}), catalog, tmp_path / "c.zarr", size=8)
    np.testing.assert_array_equal(open_cube(tmp_path / "c.zarr")["reflectance"].sel(unit="u").isel(time=0).values, full[:, 16:24, 26:34])
    with rasterio.open(catalog.loc[0, "paths"][0]) as vrt:
        assert vrt.crs.to_string() == UTM36 and vrt.count == 2
    with pytest.raises(CatalogError, match="mosaic_dir"):
        build_catalog(folder)
    write_raster(
        folder / "scene_2020-01-01_east.tif", full[:, :, 30:].copy(), "EPSG:32637", from_origin(500_000 + 300, 60_000, 10, 10), nodata=-9999
    )
    with pytest.raises(CatalogError, match="reproject the tiles of one date to one CRS"):
        build_catalog(folder, mosaic_dir=tmp_path / "mosaics")
